package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// withEtcd adds store.etcd on endpoints to a serveConfig (its stateDir is then ignored).
func withEtcd(cfg string, endpoints []string) string {
	return strings.Replace(cfg, "  stateDir: ",
		"  store:\n    etcd: {endpoints: [\""+strings.Join(endpoints, "\", \"")+"\"], prefix: /"+
			strconv.FormatInt(time.Now().UnixNano(), 36)+"/, leaseTTL: 1s}\n  stateDir: ", 1)
}

// haTroubleshootingMessages produces, from the real code, the replicated control
// plane's messages the troubleshooting table quotes: a replica and a starting `sluice
// serve` with no etcd answering, and on a real etcd a replica with another config than
// the leader's and one with a live replica's ID. Only error-level log entries are taken:
// those are what the table explains.
func haTroubleshootingMessages(t *testing.T) []string {
	t.Helper()
	var msgs []string
	collect := func(logs *observer.ObservedLogs) {
		for _, e := range logs.All() {
			msgs = append(msgs, e.Message)
		}
	}
	run := func(rep *ha.Replica) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = rep.Run(ctx); close(done) }()
		return func() { cancel(); <-done; _ = rep.Close() }
	}
	open := func(eps []string, id, digest string) (*ha.Replica, *observer.ObservedLogs) {
		core, logs := observer.New(zap.ErrorLevel)
		rep, err := ha.Open(&model.EtcdStore{Endpoints: eps, Prefix: "/readme/", LeaseTTL: time.Second},
			ha.Options{ID: id, Admin: "127.0.0.1:1", ConfigDigest: digest, Logger: zap.New(core), DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return rep, logs
	}

	// No etcd answers.
	dead, _ := freeAddr("")
	rep, logs := open([]string{"http://" + dead}, "lonely", "d")
	stop := run(rep)
	waitUntil(t, "etcd unreachable in the log", func() bool { return logs.Len() > 0 })
	stop()
	collect(logs)

	core, logs := observer.New(zap.ErrorLevel)
	p := filepath.Join(t.TempDir(), "c.yaml")
	admin, _ := freeAddr("")
	listen, _ := freeAddr("")
	writeConfig(t, p, withEtcd(serveConfig(listen, admin, "unused", "{}"), []string{"http://" + dead}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, serveOptions{Files: []string{p}, Logger: zap.New(core)}) }()
	waitUntil(t, "serve waiting for etcd", func() bool { return logs.Len() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve stopped while waiting for etcd: %v", err)
	}
	collect(logs)

	// A real etcd: a leader, a replica with another config digest, a replica with the
	// leader's ID.
	etcd := testenv.StartEtcd(t)
	leader, _ := open(etcd.Endpoints(), "a", "d1")
	defer run(leader)()
	waitUntil(t, "a leader", func() bool { return leader.Status().Leading })
	odd, oddLogs := open(etcd.Endpoints(), "b", "d2")
	defer run(odd)()
	twin, twinLogs := open(etcd.Endpoints(), "a", "d1")
	defer run(twin)()
	waitUntil(t, "the mismatch and the taken ID in the logs", func() bool { return oddLogs.Len() > 0 && twinLogs.Len() > 0 })
	collect(oddLogs)
	collect(twinLogs)
	return msgs
}
