package router

import (
	"bufio"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// oneCluster returns a snapshot with one listener whose route sends everything to
// cluster "svc" with eps.
func oneCluster(version uint64, listen string, c model.Cluster) *model.Snapshot {
	c.Name = "svc"
	return &model.Snapshot{Version: version, Clusters: []model.Cluster{c},
		Listeners: []model.Listener{{Name: "ingress", Address: listen,
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "svc"}}}}}
}

func endpointsOf(addrs ...string) []model.Endpoint {
	var out []model.Endpoint
	for _, a := range addrs {
		out = append(out, model.Endpoint{Address: a, Weight: 1})
	}
	return out
}

// TestEndpointOnlyChangeKeepsOtherEndpointsState: a snapshot that adds an endpoint and
// removes another leaves the rest exactly as they were — the same state (ejection,
// health, warm-up clock) and the same pooled upstream connections.
func TestEndpointOnlyChangeKeepsOtherEndpointsState(t *testing.T) {
	good, bad, gone, added := newBackend(t, "good"), newBackend(t, "bad"), newBackend(t, "gone"), newBackend(t, "added")
	bad.status.Store(500)
	addr := freeAddr(t)
	cl := model.Cluster{Warmup: time.Minute, Endpoints: endpointsOf(good.addr, bad.addr, gone.addr),
		Outlier: model.OutlierDetection{ConsecutiveFailures: 1, BaseEjectionTime: time.Hour}}
	r, _ := startRouter(t, oneCluster(1, addr, cl), Options{})
	c := newClient()
	for i := 0; i < 6; i++ {
		get(t, c, "http://"+addr+"/", nil)
	}
	key := func(a string) string { return endpointKey("svc", a) }
	before := r.table.Load().endpoints
	eGood, eBad := before[key(good.addr)], before[key(bad.addr)]
	if eBad.ejectedUntil.Load() == 0 {
		t.Fatal("the failing endpoint was not ejected")
	}
	pooled := eGood.pool.size()
	if pooled == 0 {
		t.Fatal("no pooled connection to the good endpoint")
	}
	eGood.pool.mu.Lock()
	conns := slices.Clone(eGood.pool.idle)
	eGood.pool.mu.Unlock()
	ready := eGood.readySince.Load()

	cl.Endpoints = endpointsOf(good.addr, bad.addr, added.addr)
	if err := r.Apply(oneCluster(2, addr, cl)); err != nil {
		t.Fatal(err)
	}
	after := r.table.Load().endpoints
	if after[key(good.addr)] != eGood || after[key(bad.addr)] != eBad {
		t.Fatal("a kept endpoint got new state")
	}
	if eBad.ejectedUntil.Load() == 0 || eGood.readySince.Load() != ready {
		t.Error("a kept endpoint lost its ejection or its warm-up clock")
	}
	eGood.pool.mu.Lock()
	same := slices.Equal(conns, eGood.pool.idle)
	eGood.pool.mu.Unlock()
	if !same {
		t.Error("a kept endpoint's pooled connections changed")
	}
	eAdded := after[key(added.addr)]
	if eAdded == nil || eAdded.readySince.Load() == 0 {
		t.Fatal("the added endpoint does not warm up")
	}
	if eGone := before[key(gone.addr)]; !eGone.pool.closed {
		t.Error("the removed endpoint's pool is still open")
	}
	hits, goneHits := good.hits.Load()+added.hits.Load(), gone.hits.Load()
	for i := 0; i < 10; i++ {
		if st, _, _ := get(t, c, "http://"+addr+"/", nil); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	if good.hits.Load()+added.hits.Load() != hits+10 || added.hits.Load() == 0 || gone.hits.Load() != goneHits {
		t.Errorf("after the change: good %d added %d gone %d (ejected bad gets nothing, removed gone nothing more)",
			good.hits.Load(), added.hits.Load(), gone.hits.Load())
	}
}

// TestRemovedAndDrainingEndpointsDrain: an endpoint that leaves the table, removed or
// marked draining, gets no new request; a response it is streaming finishes whole; then
// its connection is closed, not pooled.
func TestRemovedAndDrainingEndpointsDrain(t *testing.T) {
	for _, how := range []string{"removed", "draining"} {
		t.Run(how, func(t *testing.T) {
			leaving, staying := newBackend(t, "leaving"), newBackend(t, "staying")
			addr := freeAddr(t)
			cl := model.Cluster{Endpoints: endpointsOf(leaving.addr)}
			r, reg := startRouter(t, oneCluster(1, addr, cl), Options{})
			e := r.table.Load().endpoints[endpointKey("svc", leaving.addr)]

			// A response in flight on the leaving endpoint.
			resp, err := newClient().Get("http://" + addr + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			if line, _ := br.ReadString('\n'); line != "first\n" {
				t.Fatalf("first chunk %q", line)
			}

			cl.Endpoints = endpointsOf(leaving.addr, staying.addr)
			if how == "removed" {
				cl.Endpoints = endpointsOf(staying.addr)
			} else {
				cl.Endpoints[0].Draining = true
			}
			if err := r.Apply(oneCluster(2, addr, cl)); err != nil {
				t.Fatal(err)
			}
			if _, _, total, _ := r.ClusterHealth("svc"); total != 1 {
				t.Errorf("the router reports %d endpoints, want 1: a %s one is not counted", total, how)
			}
			c := newClient()
			for i := 0; i < 20; i++ {
				if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "staying" {
					t.Fatalf("new request %d: %d from %q, want 200 from staying", i, st, who)
				}
			}
			close(leaving.release)
			rest, err := br.ReadString('\n')
			resp.Body.Close()
			if err != nil || rest != "second\n" {
				t.Fatalf("the in-flight response was cut: %q, %v", rest, err)
			}
			eventually(t, "the in-flight request recorded", func() bool {
				return metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "svc", "status_code": "200"}) == 21
			})
			if !e.pool.closed || e.pool.size() != 0 {
				t.Errorf("the %s endpoint keeps %d pooled connections (closed %v)", how, e.pool.size(), e.pool.closed)
			}
			if leaving.hits.Load() != 0 {
				t.Errorf("the %s endpoint got %d new requests", how, leaving.hits.Load())
			}
		})
	}
}

// TestClusterWithoutEndpointsAnswers503: a snapshot whose cluster has no endpoint (a
// discovered cluster before its first answer, every pod gone) is served, not refused:
// its requests are answered 503 and counted; an endpoint appearing serves at once.
func TestClusterWithoutEndpointsAnswers503(t *testing.T) {
	b := newBackend(t, "b")
	addr := freeAddr(t)
	r, reg := startRouter(t, oneCluster(1, addr, model.Cluster{}), Options{})
	c := newClient()
	for i := 0; i < 3; i++ {
		if st, _, _ := get(t, c, "http://"+addr+"/", nil); st != http.StatusServiceUnavailable {
			t.Fatalf("no endpoint: %d, want 503", st)
		}
	}
	if got := metricSum(t, reg, "http_errors_total", map[string]string{"cluster": "svc", "status_code": "503"}); got != 3 {
		t.Errorf("503s counted: %v, want 3", got)
	}
	if h, _, n, known := r.ClusterHealth("svc"); h != 0 || n != 0 || !known {
		t.Errorf("health %d/%d %v, want 0/0 known", h, n, known)
	}
	if err := r.Apply(oneCluster(2, addr, model.Cluster{Endpoints: endpointsOf(b.addr)})); err != nil {
		t.Fatal(err)
	}
	if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "b" {
		t.Fatalf("after an endpoint appeared: %d from %q", st, who)
	}
}

// gatedHealth is a backend whose /health answers only once open is closed.
type gatedHealth struct {
	*backend
	open chan struct{}
}

func newGatedHealth(t *testing.T, name string) *gatedHealth {
	g := &gatedHealth{open: make(chan struct{})}
	g.backend = newBackend(t, name, func(s *http.Server) {
		inner := s.Handler
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/health") {
				select {
				case <-g.open:
				case <-r.Context().Done():
					return
				}
			}
			inner.ServeHTTP(w, r)
		})
	})
	return g
}

// TestHealthCheckedEndpointPendingUntilFirstProbe: with a health check, a new endpoint
// takes no traffic (and is not reported healthy) until its first probe passes; that probe
// runs at once, not an interval later. While no endpoint of the cluster is healthy, all
// are used (panic routing), so a cluster whose first probes are still running is never
// blackholed. A first probe that passes keeps the endpoint's warm-up clock: an endpoint
// of the first table stays warm.
func TestHealthCheckedEndpointPendingUntilFirstProbe(t *testing.T) {
	first := newGatedHealth(t, "first")
	later := newGatedHealth(t, "later")
	addr := freeAddr(t)
	// An hour between probes: only the first one, run at once, can make them healthy.
	hc := &model.HealthCheck{Path: "/health", Interval: time.Hour, Timeout: time.Minute, HealthyThreshold: 3, UnhealthyThreshold: 3}
	cl := model.Cluster{HealthCheck: hc, Warmup: time.Minute, Endpoints: endpointsOf(first.addr)}
	r, reg := startRouter(t, oneCluster(1, addr, cl), Options{})
	c := newClient()
	if h, _, n, _ := r.ClusterHealth("svc"); h != 0 || n != 1 {
		t.Fatalf("before its first probe answered: %d/%d healthy, want 0/1", h, n)
	}
	// Panic routing: the only endpoint is pending, so it serves.
	if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "first" {
		t.Fatalf("a cluster whose only endpoint is pending: %d from %q", st, who)
	}
	close(first.open)
	eventually(t, "the first probe passing", func() bool { h, _, _, _ := r.ClusterHealth("svc"); return h == 1 })
	if e := r.table.Load().endpoints[endpointKey("svc", first.addr)]; e.readySince.Load() != 0 {
		t.Error("the first table's endpoint started warming up when its first probe passed")
	}

	cl.Endpoints = endpointsOf(first.addr, later.addr)
	if err := r.Apply(oneCluster(2, addr, cl)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "first" {
			t.Fatalf("while the new endpoint is pending: %d from %q, want first only", st, who)
		}
	}
	if h, _, n, _ := r.ClusterHealth("svc"); h != 1 || n != 2 {
		t.Errorf("while the new endpoint is pending: %d/%d healthy, want 1/2", h, n)
	}
	close(later.open)
	eventually(t, "the new endpoint's first probe passing", func() bool { h, _, _, _ := r.ClusterHealth("svc"); return h == 2 })
	for i := 0; i < 10; i++ {
		get(t, c, "http://"+addr+"/", nil)
	}
	if later.hits.Load() != 5 {
		t.Errorf("the new endpoint served %d of 10 once healthy, want 5", later.hits.Load())
	}
	if got := metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "svc", "reason": "warmup"}); got != 5 {
		t.Errorf("warm-up requests: %v, want the new endpoint's 5 (the first table's endpoint is warm)", got)
	}
}
