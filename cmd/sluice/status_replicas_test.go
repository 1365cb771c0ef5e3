package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/admin"
	"github.com/sluice-mesh/sluice/ha"
)

// TestStatusShowsReplicas: `sluice status` against a replica lists the replicas, who
// leads, what each serves, a config that differs, a refusal, and says when etcd cannot
// be read.
func TestStatusShowsReplicas(t *testing.T) {
	f := &cliFake{st: sampleStatus()}
	s, err := admin.New(admin.Options{Address: "127.0.0.1:0", Rollouts: f})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	seen := time.Now().Add(-3 * time.Second)
	view := replicasView{Self: "b/10.0.0.2:9900", Leader: "a/10.0.0.1:9900", EtcdReachable: true, ConfigDigest: "d1",
		LeaderConfigDigest: "d1", Replicas: []ha.Info{
			{ID: "a/10.0.0.1:9900", Leader: true, AppliedWeights: map[string]int{"backend-api": 20}, ConfigDigest: "d1", LastSeen: seen},
			{ID: "b/10.0.0.2:9900", AppliedWeights: map[string]int{"backend-api": 20}, ConfigDigest: "d1", LastSeen: seen},
			{ID: "c/10.0.0.3:9900", AppliedWeights: map[string]int{"backend-api": 10}, ConfigDigest: "d2", LastSeen: seen,
				Refused: map[string]ha.Refusal{"backend-api": {Revision: 7, Error: "NACK: unknown cluster"}}},
		}}
	s.SetReplicas(func(context.Context) any { return view })
	code, out, errs := runCLI("status", "--admin", ts.URL)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"replicas: 3 live, leader a/10.0.0.1:9900 (asked b/10.0.0.2:9900)",
		"a/10.0.0.1:9900  leader    backend-api 20%",
		"c/10.0.0.3:9900  follower  backend-api 10% (refused a newer state: NACK: unknown cluster)",
		"config d2 DIFFERS FROM THE LEADER'S",
		"seen 3s ago",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	view.Error, view.EtcdReachable, view.ConfigMismatch, view.ConfigDigest = "etcd: context deadline exceeded", false, true, "d3"
	_, out, _ = runCLI("status", "--admin", ts.URL)
	for _, want := range []string{"ETCD UNREACHABLE from this replica (etcd: context deadline exceeded)",
		"CONFIG MISMATCH: this replica's config digest d3 differs from the leader's d1"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
