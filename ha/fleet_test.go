package ha

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-mesh/sluice/internal/testenv"
)

// routerRegistry is a router's series: requests to a cluster.
func routerRegistry(n float64) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "requests"}, []string{"cluster"})
	reg.MustRegister(c)
	c.WithLabelValues("api-canary").Add(n)
	return reg
}

// seriesByReplica returns http_requests_total{cluster="api-canary"} by replica label.
func seriesByReplica(t *testing.T, mfs []*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["cluster"] != "api-canary" {
				t.Errorf("series %v", labels)
			}
			out[labels[ReplicaLabel]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// testFleetGatherer: a replica's gatherer merges its own router series with every live
// replica's, read from their admin API with the token, each labelled with its replica;
// a replica that refuses (wrong token) or died is left out.
func testFleetGatherer(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	serve := func(n float64, token string) *httptest.Server {
		h := promhttp.HandlerFor(routerRegistry(n), promhttp.HandlerOpts{})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/series" || r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(ts.Close)
		return ts
	}
	p2, p3 := serve(20, "tok"), serve(30, "other")
	self := g.start("f1", nil)
	g.start("f2", nil, func(o *Options) { o.Admin = strings.TrimPrefix(p2.URL, "http://") })
	f3 := g.start("f3", nil, func(o *Options) { o.Admin = p3.URL })
	testenv.WaitFor(t, 20*time.Second, "three registrations", func() bool {
		v, err := self.View(ctxTimeout(t, 5*time.Second))
		return err == nil && len(v.Replicas) == 3
	})
	fg := self.FleetGatherer(routerRegistry(10), FleetOptions{Path: "/series", Token: func() string { return "tok" }})
	mfs, err := fg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := seriesByReplica(t, mfs)
	if len(got) != 2 || got["f1"] != 10 || got["f2"] != 20 {
		t.Errorf("gathered %v, want f1=10 and f2=20 (f3 refuses the token)", got)
	}

	// A replica that is gone (lease revoked) is no longer asked.
	f3.stop()
	p2.Close()
	testenv.WaitFor(t, 20*time.Second, "the dead replicas left out", func() bool {
		mfs, err := fg.Gather()
		got := seriesByReplica(t, mfs)
		return err == nil && len(got) == 1 && got["f1"] == 10
	})
}

// testRefusal: a replica that reports a refused state ends the leader's wait with a
// RefusedError naming it and its data plane's message.
func testRefusal(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	a := g.start("x1", nil)
	b := g.start("x2", nil)
	l := g.nextLead(30 * time.Second)
	rev, err := l.term.Save(ctxTimeout(t, 5*time.Second), "api", []byte("w30"))
	if err != nil {
		t.Fatal(err)
	}
	a.ReportApplied(map[string]Applied{"api": {Weight: 30, Revision: rev}})
	b.ReportApplied(map[string]Applied{"api": {Weight: 10, Revision: rev - 1, Refused: rev, Error: "NACK: unknown cluster"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = l.n.WaitApplied(ctx, "api", rev)
	var re *RefusedError
	if !errors.As(err, &re) || re.Replica != "x2" || re.Revision != rev || !strings.Contains(err.Error(), "NACK: unknown cluster") {
		t.Fatalf("WaitApplied: %v, want x2's refusal", err)
	}
	v, _ := a.View(ctx)
	for _, in := range v.Replicas {
		if in.ID == "x2" && in.Refused["api"].Error != "NACK: unknown cluster" {
			t.Errorf("registration of x2: %+v", in)
		}
	}
	b.ReportApplied(map[string]Applied{"api": {Weight: 30, Revision: rev}})
	testenv.WaitFor(t, 10*time.Second, "x2's new report", func() bool {
		v, err := a.View(ctx)
		for _, in := range v.Replicas {
			if in.ID == "x2" {
				return err == nil && len(in.Refused) == 0
			}
		}
		return false
	})
	if err := l.n.WaitApplied(ctx, "api", rev); err != nil {
		t.Errorf("once x2 applied it: %v", err)
	}
}
