package judge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
)

// backendEvery answers 500 to every n-th request (never when n is 0), else 200.
func backendEvery(t *testing.T, n int64) *httptest.Server {
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if c := count.Add(1); n > 0 && c%n == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRouterBadCanaryFailed sends real requests through Sluice's router, split 50/50
// between a stable backend failing 1 request in 200 and a canary failing 1 in 10, and
// reads the router's own metrics with GathererSource: the judge fails the canary, with
// the clock driven by the test (one "second" per 100 requests).
func TestRouterBadCanaryFailed(t *testing.T) {
	stable, canary := backendEvery(t, 200), backendEvery(t, 10)
	reg := prometheus.NewRegistry()
	r, err := router.New(router.Options{Registerer: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	})
	snap := &model.Snapshot{
		Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: []model.Endpoint{{Address: canary.Listener.Addr().String(), Weight: 1}}},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: stable.Listener.Addr().String(), Weight: 1}}},
		},
		Listeners: []model.Listener{{
			Name: "ingress", Address: "127.0.0.1:0",
			Routes: []model.Route{{
				Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable", Rollout: "demo",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 50}, {Cluster: "canary", Weight: 50}},
			}},
		}},
	}
	if err := r.Apply(snap); err != nil {
		t.Fatal(err)
	}
	url := "http://" + r.Addr("127.0.0.1:0") + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)

	tr := judge.NewTracker(judge.Config{MinSamples: 50}, judge.GathererSource(reg), "stable", "canary")
	ctx := context.Background()
	now := t0
	if _, err := tr.Step(ctx, now); err != nil {
		t.Fatal(err)
	}
	var res judge.Result
	for sec := 1; sec <= 40 && !res.Decision.Final(); sec++ {
		for i := 0; i < 100; i++ {
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		now = now.Add(time.Second)
		if res, err = tr.Step(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	if res.Decision != judge.Fail {
		t.Fatalf("bad canary behind the router: %s: %s", res.Decision, res.Message)
	}
	if res.Details["canaryErrorRate"] < 0.05 || res.Details["baselineErrorRate"] > 0.02 {
		t.Fatalf("rates read from the router: %v", res.Details)
	}
	t.Logf("failed after %.0f simulated s: %s", res.Details["elapsedSeconds"], res.Message)
}
