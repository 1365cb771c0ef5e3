package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
	"github.com/sluice-mesh/sluice/xds"
)

// TestRouterClusterHealth: the router reports an endpoint of a health-checked cluster as
// healthy only once its checks had time to fail it — never a dead one, not even in its
// first moments (it starts out available) — and a backend that comes up late once its
// checks pass. Without a health check only passive ejection can see a dead endpoint;
// with one, an ejection (requests failing) is reported but the check decides whether
// the endpoint is up.
func TestRouterClusterHealth(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer up.Close()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer flaky.Close()
	dead, late := closedAddr(t), closedAddr(t)
	hc := &model.HealthCheck{Path: "/health", Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond,
		HealthyThreshold: 1, UnhealthyThreshold: 2}
	rt, err := router.New(router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(t.Context())
	if _, _, _, known := rt.ClusterHealth("up"); known {
		t.Fatal("known before any table")
	}
	cluster := func(name string, hc *model.HealthCheck, addrs ...string) model.Cluster {
		c := model.Cluster{Name: name, HealthCheck: hc,
			Outlier: model.OutlierDetection{ConsecutiveFailures: 1, BaseEjectionTime: time.Hour}}
		for _, a := range addrs {
			c.Endpoints = append(c.Endpoints, model.Endpoint{Address: a, Weight: 1})
		}
		return c
	}
	applied := time.Now()
	if err := rt.Apply(&model.Snapshot{Version: 1, Clusters: []model.Cluster{
		cluster("up", hc, up.Listener.Addr().String(), dead), cluster("dead", hc, dead), cluster("late", hc, late),
		cluster("unchecked", nil, dead), cluster("flaky", hc, flaky.Listener.Addr().String())},
		Listeners: []model.Listener{{Name: "l", Address: "127.0.0.1:0", Routes: []model.Route{
			{Name: "unchecked", Hosts: []string{"*"}, PathPrefix: "/unchecked", Cluster: "unchecked"},
			{Name: "flaky", Hosts: []string{"*"}, PathPrefix: "/flaky", Cluster: "flaky"}}}}}); err != nil {
		t.Fatal(err)
	}
	health := func(c string) string {
		h, ej, n, known := rt.ClusterHealth(c)
		if ej > 0 {
			return fmt.Sprintf("%d/%d %d ejected %v", h, n, ej, known)
		}
		return fmt.Sprintf("%d/%d %v", h, n, known)
	}
	if got := health("unchecked"); got != "1/1 true" {
		t.Errorf("an unchecked endpoint: %s (it counts until requests to it fail)", got)
	}
	if got := health("nope"); got != "0/0 false" {
		t.Errorf("a cluster the table lacks: %s", got)
	}
	// Until the live endpoint counts, the dead ones never do.
	deadline := time.Now().Add(30 * time.Second)
	for health("up") != "1/2 true" {
		if got := health("dead"); got != "0/1 true" {
			t.Fatalf("%s after the table was applied, a dead endpoint counts: %s", time.Since(applied), got)
		}
		if got := health("up"); got != "0/2 true" {
			t.Fatalf("up: %s", got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live endpoint never counted: %s", health("up"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(applied); took < 250*time.Millisecond {
		t.Errorf("the live endpoint counted after %s, before its checks could have failed a dead one (2 × 100 ms + 50 ms)", took)
	}
	if got := health("dead"); got != "0/1 true" {
		t.Errorf("dead: %s", got)
	}

	// Requests fail: both endpoints are ejected. Without a health check the dead one is
	// now seen; with one, the flaky endpoint still answers its checks: up, and ejected.
	for _, path := range []string{"/unchecked", "/flaky"} {
		resp, err := http.Get("http://" + rt.Addr("127.0.0.1:0") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := health("unchecked"); got != "0/1 1 ejected true" {
		t.Errorf("unchecked after a failed request: %s", got)
	}
	if got := health("flaky"); got != "1/1 1 ejected true" {
		t.Errorf("flaky after a failed request: %s", got)
	}

	// The late backend starts listening: it counts once its checks pass.
	ln, err := net.Listen("tcp", late)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	deadline = time.Now().Add(30 * time.Second)
	for health("late") != "1/1 true" {
		if time.Now().After(deadline) {
			t.Fatalf("the late endpoint never counted: %s", health("late"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestXDSClusterHealth: the xDS server reports the endpoints it serves for a cluster.
func TestXDSClusterHealth(t *testing.T) {
	s, err := xds.New(xds.Options{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, known := s.ClusterHealth("a"); known {
		t.Fatal("known before any snapshot")
	}
	snap := &model.Snapshot{Version: 1, Clusters: []model.Cluster{{Name: "a", Endpoints: []model.Endpoint{
		{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 2}}}}}
	if err := s.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if h, ej, n, known := s.ClusterHealth("a"); h != 2 || ej != 0 || n != 2 || !known {
		t.Fatalf("a: %d/%d %v", h, n, known)
	}
	if _, _, _, known := s.ClusterHealth("b"); known {
		t.Fatal("b is not served")
	}
}

// closedAddr returns a loopback address nothing listens on (yet).
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
