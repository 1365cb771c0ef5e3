package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

func TestSplitWithinOnePoint(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	r, reg := startRouter(t, twoClusters(addr, stable, canary, 10), Options{})
	c := newClient()
	const n, workers = 10000, 8
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/workers; i++ {
				resp, err := c.Get("http://" + addr + "/x")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	share := float64(canary.hits.Load()) / n * 100
	if math.Abs(share-10) > 1 {
		t.Fatalf("canary share %.2f%%, want 10±1 (stable %d, canary %d)", share, stable.hits.Load(), canary.hits.Load())
	}
	if got := metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "canary", "route": "web", "status_code": "200", "method": "GET"}); got != float64(canary.hits.Load()) {
		t.Fatalf("http_requests_total{cluster=canary} = %v, backend saw %d", got, canary.hits.Load())
	}
	// 0 and 100 are exact.
	for v, w := range []int{0, 100} {
		if err := r.Apply(withWeight(twoClusters(addr, stable, canary, 10), uint64(2+v), w)); err != nil {
			t.Fatal(err)
		}
		s0, c0 := stable.hits.Load(), canary.hits.Load()
		for i := 0; i < 200; i++ {
			get(t, c, "http://"+addr+"/", nil)
		}
		gotCanary := canary.hits.Load() - c0
		if want := int64(200 * w / 100); gotCanary != want || stable.hits.Load()-s0 != 200-want {
			t.Fatalf("weight %d: canary got %d of 200, want %d", w, gotCanary, want)
		}
	}
}

func TestWeightFlipsUnderLoadAndApplyIsInstant(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	base := twoClusters(addr, stable, canary, 0)
	r, _ := startRouter(t, base, Options{})
	c := newClient()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, bad atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/load")
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		w := 100 * (i % 2) // flip 0 <-> 100
		if err := r.Apply(withWeight(base, uint64(i+2), w)); err != nil {
			t.Fatal(err)
		}
		if err := r.WaitApplied(context.Background(), uint64(i+2)); err != nil {
			t.Fatal(err)
		}
		// The very next request follows the new weight.
		_, who, _ := get(t, c, "http://"+addr+"/next", nil)
		want := "stable"
		if w == 100 {
			want = "canary"
		}
		if who != want {
			t.Fatalf("flip %d: next request went to %q, want %q", i, who, want)
		}
		// Let the concurrent load run on this weight for a while before the next flip.
		target := ok.Load() + 20
		eventually(t, "load progressing", func() bool { return ok.Load() >= target || bad.Load() > 0 })
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("under 100 flips: %d ok, %d failed requests", ok.Load(), bad.Load())
	}
	t.Logf("%d concurrent requests during 100 flips, none failed", ok.Load())
}

func headerSnapshot(addr string, stable, canary *backend) *model.Snapshot {
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].Routes[0].HeaderRoutes = []model.HeaderRoute{
		{Name: "exact", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Exact: "always"}}}},
		{Name: "prefix", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-user", Value: model.StringMatch{Prefix: "beta-"}}}},
		{Name: "cookie", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "cookie", Value: model.StringMatch{Regex: `.*\bcanary=yes\b.*`}}}},
	}
	return s
}

func TestHeaderAndCookieOverride(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	startRouter(t, headerSnapshot(addr, stable, canary), Options{})
	c := newClient()
	for _, tc := range []struct {
		hdr  map[string]string
		want string
	}{
		{nil, "stable"},
		{map[string]string{"X-Canary": "always"}, "canary"},
		{map[string]string{"X-Canary": "always-not"}, "stable"},
		{map[string]string{"X-User": "beta-42"}, "canary"},
		{map[string]string{"X-User": "alpha-beta-42"}, "stable"},
		{map[string]string{"Cookie": "a=b; canary=yes; c=d"}, "canary"},
		{map[string]string{"Cookie": "canary=no"}, "stable"},
	} {
		for i := 0; i < 5; i++ {
			if _, who, _ := get(t, c, "http://"+addr+"/", tc.hdr); who != tc.want {
				t.Fatalf("headers %v: went to %q, want %q", tc.hdr, who, tc.want)
			}
		}
	}
}

func internalSnapshot(addr string, stable, canary *backend, trusted string) *model.Snapshot {
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].InternalTraffic = &model.InternalTraffic{
		Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
		TrustedSources: []netip.Prefix{netip.MustParsePrefix(trusted)},
	}
	s.Listeners[0].Routes[0].InternalCluster = "canary"
	return s
}

func TestInternalTrafficExcludedFromAnalysis(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	_, reg := startRouter(t, internalSnapshot(addr, stable, canary, "127.0.0.0/8"), Options{})
	c := newClient()
	for i := 0; i < 20; i++ {
		if _, who, _ := get(t, c, "http://"+addr+"/", map[string]string{"X-Internal-Test": "true"}); who != "canary" {
			t.Fatalf("internal request went to %q", who)
		}
	}
	if got := metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "canary"}); got != 0 {
		t.Fatalf("internal requests counted in analysis series: %v", got)
	}
	if got := metricSum(t, reg, "http_request_duration_seconds", map[string]string{"cluster": "canary"}); got != 0 {
		t.Fatalf("internal requests in latency histogram: %v", got)
	}
	if got := metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "canary", "reason": "internal", "status_code": "200"}); got != 20 {
		t.Fatalf("excluded internal = %v, want 20", got)
	}
	// A trusted proxy forwarding for an untrusted client: not honoured.
	_, who, _ := get(t, c, "http://"+addr+"/", map[string]string{"X-Internal-Test": "true", "X-Forwarded-For": "203.0.113.7"})
	if who != "stable" {
		t.Fatalf("marker forwarded for an untrusted client went to %q", who)
	}
	if got := metricSum(t, reg, "sluice_router_spoofed_marker_total", nil); got != 1 {
		t.Fatalf("spoofed = %v, want 1", got)
	}
}

func TestSpoofedMarkerStrippedAndCounted(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	// Only 10.0.0.0/8 is trusted, so the test client on 127.0.0.1 is an outsider.
	_, reg := startRouter(t, internalSnapshot(addr, stable, canary, "10.0.0.0/8"), Options{})
	c := newClient()
	for i := 0; i < 10; i++ {
		if _, who, _ := get(t, c, "http://"+addr+"/", map[string]string{"X-Internal-Test": "true"}); who != "stable" {
			t.Fatalf("spoofed marker picked %q", who)
		}
		if h := stable.lastHeader(); h.Get("X-Internal-Test") != "" {
			t.Fatalf("marker not stripped: %q", h.Get("X-Internal-Test"))
		}
	}
	if got := metricSum(t, reg, "sluice_router_spoofed_marker_total", map[string]string{"listener": "ingress"}); got != 10 {
		t.Fatalf("spoofed counter %v, want 10", got)
	}
	// Treated as ordinary traffic: counted in analysis.
	if got := metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "stable", "status_code": "200"}); got != 10 {
		t.Fatalf("spoofed requests hidden from analysis: counted %v, want 10", got)
	}
}

func cookieValue(resp *http.Response, name string) (string, bool) {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

func TestMirrorNeverAffectsClient(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	canary.status.Store(500)
	addr := freeAddr(t)
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].Routes[0].Mirrors = []model.Mirror{{Name: "m", Percentage: 50, Cluster: "canary",
		Matches: []model.RequestMatch{{Method: &model.StringMatch{Exact: "POST"}}}}}
	_, reg := startRouter(t, s, Options{})
	c := newClient()
	for i := 0; i < 20; i++ {
		resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "stable" {
			t.Fatalf("client saw %d %q, want stable's 200", resp.StatusCode, body)
		}
	}
	get(t, c, "http://"+addr+"/", nil) // GET does not match the mirror
	eventually(t, "10 mirrored requests counted", func() bool {
		return metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "canary", "reason": "mirror", "status_code": "500"}) == 10
	})
	if got := canary.hits.Load(); got != 10 {
		t.Fatalf("canary got %d mirrored requests, want exactly 10 (50%% of 20)", got)
	}
	if got := metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "canary"}); got != 0 {
		t.Fatalf("mirrored responses counted as analysis traffic: %v", got)
	}
}

// TestMirrorSlowCanaryDoesNotDelay: the canary holds the mirrored request until the
// client has had stable's answer; a router that waited for its mirror would never answer.
func TestMirrorSlowCanaryDoesNotDelay(t *testing.T) {
	stable := newBackend(t, "stable")
	release := make(chan struct{})
	var held atomic.Int32
	canary := newBackend(t, "canary", func(srv *http.Server) {
		inner := srv.Handler
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			held.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			inner.ServeHTTP(w, r)
		})
	})
	addr := freeAddr(t)
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].Routes[0].Mirrors = []model.Mirror{{Name: "all", Percentage: 100, Cluster: "canary"}}
	_, reg := startRouter(t, s, Options{})
	c := newClient()
	c.Timeout = 30 * time.Second // generous: the answer must come while the mirror is held
	st, who, _ := get(t, c, "http://"+addr+"/", nil)
	if st != 200 || who != "stable" {
		t.Fatalf("client got %d from %q", st, who)
	}
	eventually(t, "the mirror held by the canary", func() bool { return held.Load() == 1 })
	if got := metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "canary", "reason": "mirror"}); got != 0 {
		t.Fatalf("a mirror held by the canary was recorded as finished: %v", got)
	}
	close(release)
	eventually(t, "slow mirror finished", func() bool {
		return metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "canary", "reason": "mirror", "status_code": "200"}) == 1
	})
}

func TestEjectionAndRecovery(t *testing.T) {
	good, flaky := newBackend(t, "good"), newBackend(t, "flaky")
	clock := &fakeClock{}
	addr := freeAddr(t)
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{{Name: "stable",
			Endpoints: []model.Endpoint{{Address: good.addr, Weight: 1}, {Address: flaky.addr, Weight: 1}},
			Outlier:   model.OutlierDetection{ConsecutiveFailures: 3, BaseEjectionTime: time.Minute}}},
		Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
	}
	_, reg := startRouter(t, s, Options{Now: clock.now})
	c := newClient()
	flaky.status.Store(503)
	for i := 0; i < 6; i++ { // flaky fails 3 times in a row and is ejected
		get(t, c, "http://"+addr+"/", nil)
	}
	if got := metricSum(t, reg, "sluice_router_endpoint_ejections_total", map[string]string{"endpoint": flaky.addr}); got != 1 {
		t.Fatalf("ejections = %v, want 1", got)
	}
	if got := metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": flaky.addr}); got != 0 {
		t.Fatalf("ejected endpoint health gauge %v", got)
	}
	before := flaky.hits.Load()
	for i := 0; i < 20; i++ {
		if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "good" {
			t.Fatalf("while ejected: %d from %q", st, who)
		}
	}
	if flaky.hits.Load() != before {
		t.Fatal("ejected endpoint still received traffic")
	}
	// It recovers: after the ejection time it takes traffic again.
	flaky.status.Store(200)
	clock.advance(2 * time.Minute)
	for i := 0; i < 10; i++ {
		if st, _, _ := get(t, c, "http://"+addr+"/", nil); st != 200 {
			t.Fatalf("after recovery: %d", st)
		}
	}
	if flaky.hits.Load()-before < 4 {
		t.Fatalf("recovered endpoint got %d of 10 requests", flaky.hits.Load()-before)
	}
	if got := metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": flaky.addr}); got != 1 {
		t.Fatalf("recovered endpoint health gauge %v", got)
	}
}

func TestActiveHealthCheckAndConnectRetry(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dead := freeAddr(t) // nothing listens here
	addr := freeAddr(t)
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{{Name: "stable",
			Endpoints:   []model.Endpoint{{Address: a.addr, Weight: 1}, {Address: b.addr, Weight: 1}, {Address: dead, Weight: 1}},
			HealthCheck: &model.HealthCheck{Path: "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}}},
		Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
	}
	r, reg := startRouter(t, s, Options{})
	c := newClient()
	// Connect failures to the dead endpoint are retried on another one: no client error.
	for i := 0; i < 9; i++ {
		if st, _, _ := get(t, c, "http://"+addr+"/", nil); st != 200 {
			t.Fatalf("request %d: %d despite a healthy endpoint", i, st)
		}
	}
	eventually(t, "dead endpoint marked unhealthy", func() bool {
		return metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": dead}) == 0
	})
	b.health.Store(503)
	eventually(t, "b marked unhealthy", func() bool {
		return metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": b.addr}) == 0
	})
	bBefore := b.hits.Load()
	for i := 0; i < 10; i++ {
		if _, who, _ := get(t, c, "http://"+addr+"/", nil); who != "a" {
			t.Fatalf("unhealthy endpoint not skipped: went to %q", who)
		}
	}
	if b.hits.Load() != bBefore {
		t.Fatal("unhealthy endpoint got traffic")
	}
	b.health.Store(200)
	eventually(t, "b healthy again", func() bool {
		return metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": b.addr}) == 1
	})
	// Health state survives an Apply that keeps the endpoint.
	s2 := *s
	s2.Version = 2
	if err := r.Apply(&s2); err != nil {
		t.Fatal(err)
	}
	if got := metricSum(t, reg, "sluice_router_endpoint_healthy", map[string]string{"endpoint": dead}); got != 0 {
		t.Fatal("dead endpoint's health state lost across Apply")
	}
}

func TestUpstreamErrors502504499(t *testing.T) {
	slow := newBackend(t, "slow")
	dead := freeAddr(t)
	addr := freeAddr(t)
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{
			{Name: "dead", Endpoints: []model.Endpoint{{Address: dead, Weight: 1}}},
			{Name: "slow", Endpoints: []model.Endpoint{{Address: slow.addr, Weight: 1}}},
			{Name: "timeout", Endpoints: []model.Endpoint{{Address: slow.addr, Weight: 1}}, RequestTimeout: 100 * time.Millisecond},
		},
		Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{
			{Name: "dead", PathPrefix: "/dead", Cluster: "dead"},
			{Name: "timeout", PathPrefix: "/timeout", Cluster: "timeout"},
			{Name: "slow", PathPrefix: "/", Cluster: "slow"},
		}}},
	}
	_, reg := startRouter(t, s, Options{})
	c := newClient()
	c.Timeout = 30 * time.Second // generous; the router's own timeouts are what is tested
	if st, _, _ := get(t, c, "http://"+addr+"/dead", nil); st != 502 {
		t.Fatalf("unreachable upstream: %d, want 502", st)
	}
	// The backend would answer after 30 s: a 504 is the route's 100 ms timeout.
	if st, _, _ := get(t, c, "http://"+addr+"/timeout/sleep?d=30s", nil); st != 504 {
		t.Fatalf("upstream timeout: %d, want 504", st)
	}
	// Client hangs up (the backend would answer after 30 s).
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/sleep?d=30s", nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("expected the client to give up")
	}
	eventually(t, "499 recorded", func() bool {
		return metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "slow", "status_code": "499"}) == 1
	})
	// The router let go of the upstream too (it closed the connection, as nginx does): the
	// backend's handler, which would sleep for 30 s, saw its request cancelled.
	eventually(t, "the upstream request cancelled", func() bool { return slow.sleeping.Load() == 0 })
	if got := metricSum(t, reg, "http_errors_total", map[string]string{"cluster": "slow"}); got != 0 {
		t.Fatalf("client hang-up counted as a cluster error: %v", got)
	}
	for cl, code := range map[string]string{"dead": "502", "timeout": "504"} {
		if got := metricSum(t, reg, "http_errors_total", map[string]string{"cluster": cl, "status_code": code}); got != 1 {
			t.Fatalf("http_errors_total{cluster=%s,status_code=%s} = %v", cl, code, got)
		}
	}
}

// TestWarmupExcludedFromAnalysis: an endpoint of the router's first table is taken as
// already running (Sluice started next to it): its requests count at once. One that
// appears later (discovery, a scale-up) warms up from when it appears: its requests are
// served but kept out of analysis until warmup has passed.
func TestWarmupExcludedFromAnalysis(t *testing.T) {
	stable, canary, scaled := newBackend(t, "stable"), newBackend(t, "canary"), newBackend(t, "scaled")
	clock := &fakeClock{}
	addr := freeAddr(t)
	s := twoClusters(addr, stable, canary, 100)
	s.Clusters[0].Warmup = time.Minute // canary
	r, reg := startRouter(t, s, Options{Now: clock.now})
	c := newClient()
	counted := func() float64 {
		return metricSum(t, reg, "http_requests_total", map[string]string{"cluster": "canary"})
	}
	warming := func() float64 {
		return metricSum(t, reg, "sluice_router_excluded_requests_total", map[string]string{"cluster": "canary", "reason": "warmup"})
	}
	for i := 0; i < 4; i++ {
		get(t, c, "http://"+addr+"/", nil)
	}
	if counted() != 4 || warming() != 0 {
		t.Fatalf("first table's endpoint: counted %v, warm-up %v; want 4 and 0 (it was running before Sluice)", counted(), warming())
	}

	// A second endpoint appears (scale-up): it warms up, the first one stays warm.
	s2 := withWeight(s, 2, 100)
	s2.Clusters = slices.Clone(s.Clusters)
	s2.Clusters[0].Endpoints = []model.Endpoint{{Address: canary.addr, Weight: 1}, {Address: scaled.addr, Weight: 1}}
	if err := r.Apply(s2); err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	for i := 0; i < 10; i++ {
		get(t, c, "http://"+addr+"/", nil)
	}
	if scaled.hits.Load() != 5 || canary.hits.Load() != 9 {
		t.Fatalf("hits: scaled %d canary %d; a warming endpoint still serves its share", scaled.hits.Load(), canary.hits.Load())
	}
	if counted() != 9 || warming() != 5 {
		t.Fatalf("30 s after the scale-up: counted %v, warm-up %v; want 9 and 5", counted(), warming())
	}
	clock.advance(31 * time.Second)
	for i := 0; i < 4; i++ {
		get(t, c, "http://"+addr+"/", nil)
	}
	if counted() != 13 || warming() != 5 {
		t.Fatalf("after warm-up: counted %v, warm-up %v; want 13 and 5", counted(), warming())
	}
}

func TestWebSocketPassThrough(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	_, reg := startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	conn, br := rawConn(t, addr)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "world"} {
		conn.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, buf, err)
		}
	}
	conn.Close()
	eventually(t, "upgrade recorded as 101", func() bool {
		return metricSum(t, reg, "http_requests_total", map[string]string{"status_code": "101", "cluster": "stable"}) == 1
	})
}

func TestStreamingBodies(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	c := newClient()
	// Streaming response: the first chunk arrives before the backend finishes.
	resp, err := c.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(stable.release)
	if line, err := br.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second chunk %q, %v", line, err)
	}
	resp.Body.Close()

	// A 256 MiB upload streams through in bounded memory.
	const size = 256 << 20
	var peak atomic.Uint64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	done := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/upload", io.LimitReader(zeros{}, size))
	req.ContentLength = -1 // chunked: the proxy cannot know the size up front
	resp, err = c.Do(req)
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprint(size) {
		t.Fatalf("backend received %s bytes, want %d", body, size)
	}
	if p := peak.Load(); p > base && p-base > 64<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 256 MiB", (p-base)>>20)
	}
	t.Logf("heap in use grew by at most %d KiB while streaming 256 MiB", (max(peak.Load(), base)-base)>>10)

	// A Content-Length upload stays on the fast path and streams too.
	const sized = 32 << 20
	req, _ = http.NewRequest("POST", "http://"+addr+"/upload", io.LimitReader(zeros{}, sized))
	req.ContentLength = sized
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprint(sized) {
		t.Fatalf("backend received %s bytes, want %d", body, sized)
	}
}

// TestStalePooledConnectionRetried: an upstream that closed an idle pooled connection
// does not cost the client an error.
func TestStalePooledConnectionRetried(t *testing.T) {
	var closed atomic.Int64
	stable := newBackend(t, "stable", func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
		srv.IdleTimeout = 30 * time.Millisecond
	})
	canary := newBackend(t, "canary")
	addr := freeAddr(t)
	startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	c := newClient()
	for i := 0; i < 3; i++ {
		before := closed.Load()
		if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "stable" {
			t.Fatalf("request %d: %d from %q", i, st, who)
		}
		eventually(t, "backend closed the idle upstream connection", func() bool { return closed.Load() > before })
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestForwardedAndHopByHopHeaders(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	c := newClient()
	get(t, c, "http://"+addr+"/", map[string]string{"Connection": "X-Drop", "X-Drop": "1", "X-Keep": "1", "X-Forwarded-For": "198.51.100.1"})
	h := stable.lastHeader()
	if h.Get("X-Drop") != "" || h.Get("X-Keep") != "1" {
		t.Fatalf("hop-by-hop handling: %v", h)
	}
	if got := h.Get("X-Forwarded-For"); got != "198.51.100.1, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != addr {
		t.Fatalf("X-Forwarded-Proto/Host: %v", h)
	}
}

func TestH2CUpstream(t *testing.T) {
	stable := newBackendProto(t, "grpc-like", true)
	addr := freeAddr(t)
	s := &model.Snapshot{Version: 1,
		Clusters:  []model.Cluster{{Name: "g", Protocol: model.ProtocolH2C, Endpoints: []model.Endpoint{{Address: stable.addr, Weight: 1}}}},
		Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "g", Cluster: "g"}}}},
	}
	startRouter(t, s, Options{})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	st, who, resp := get(t, c, "http://"+addr+"/", nil)
	if st != 200 || who != "grpc-like" || resp.Header.Get("X-Proto") != "HTTP/2.0" || resp.Proto != "HTTP/2.0" {
		t.Fatalf("h2c: %d %q upstream proto %q client proto %q", st, who, resp.Header.Get("X-Proto"), resp.Proto)
	}
}

func TestGracefulDrain(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	r, _ := startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	c := newClient()
	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/sleep?d=400ms")
		if err != nil {
			res <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode}
	}()
	eventually(t, "request in flight", func() bool {
		return stable.sleeping.Load() > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	got := <-res
	if got.err != nil || got.status != 200 {
		t.Fatalf("in-flight request during shutdown: %d, %v", got.status, got.err)
	}
	if _, err := (&http.Client{}).Get("http://" + addr + "/"); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
	if r.Ready() {
		t.Fatal("ready after shutdown")
	}
	if err := r.Apply(twoClusters(addr, stable, canary, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after shutdown: %v", err)
	}
}

func TestBadApplyRefused(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	good := twoClusters(addr, stable, canary, 0)
	r, reg := startRouter(t, good, Options{})
	if !r.Ready() {
		t.Fatal("not ready after Apply")
	}
	c := newClient()
	busy := freeAddr(t)
	holder, err := net.Listen("tcp", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	bad := map[string]func(s *model.Snapshot){
		"unknown cluster": func(s *model.Snapshot) { s.Listeners[0].Routes[0].Split[1].Cluster = "nope" },
		"weights sum 90": func(s *model.Snapshot) {
			s.Listeners[0].Routes[0].Split[1].Weight = 0
			s.Listeners[0].Routes[0].Split[0].Weight = 90
		},
		"bad regex": func(s *model.Snapshot) {
			s.Listeners[0].Routes[0].HeaderRoutes = []model.HeaderRoute{{Name: "h", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x", Value: model.StringMatch{Regex: "("}}}}}
		},
		"address in use": func(s *model.Snapshot) {
			s.Listeners = append(s.Listeners, model.Listener{Name: "second", Address: busy, Routes: []model.Route{{Name: "r", Cluster: "stable"}}})
		},
	}
	for name, mutate := range bad {
		s := withWeight(good, 99, 100) // would send everything to canary
		mutate(s)
		if err := r.Apply(s); err == nil {
			t.Fatalf("%s: Apply accepted a bad snapshot", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
		if _, who, _ := get(t, c, "http://"+addr+"/", nil); who != "stable" {
			t.Fatalf("%s: old table not serving, went to %q", name, who)
		}
	}
	if got := metricSum(t, reg, "sluice_router_apply_errors_total", nil); got != float64(len(bad)) {
		t.Fatalf("apply errors %v", got)
	}
	if got := metricSum(t, reg, "sluice_router_table_version", nil); got != 1 {
		t.Fatalf("version %v after refused applies", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.WaitApplied(ctx, 99); err == nil {
		t.Fatal("WaitApplied(99) returned nil though 99 was refused")
	}
	rec := httptest.NewRecorder()
	r.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("/readyz %d", rec.Code)
	}
}

// TestNetHTTPPath runs the behaviour tests again with the fast path off, so the
// net/http + ReverseProxy path (used for handed-off connections, mirrors and h2c)
// keeps every feature too.
func TestNetHTTPPath(t *testing.T) {
	forceNetHTTP = true
	defer func() { forceNetHTTP = false }()
	for name, f := range map[string]func(*testing.T){
		"flips":    TestWeightFlipsUnderLoadAndApplyIsInstant,
		"headers":  TestHeaderAndCookieOverride,
		"internal": TestInternalTrafficExcludedFromAnalysis,
		"spoofed":  TestSpoofedMarkerStrippedAndCounted,
		"sticky":   TestStickySharesFollowTheWeight,
		"eject":    TestEjectionAndRecovery,
		"health":   TestActiveHealthCheckAndConnectRetry,
		"errors":   TestUpstreamErrors502504499,
		"warmup":   TestWarmupExcludedFromAnalysis,
		"forward":  TestForwardedAndHopByHopHeaders,
		"drain":    TestGracefulDrain,
	} {
		t.Run(name, f)
	}
}

// TestKeepAliveThenUpgradeOnSameConnection: a connection served on the fast path is
// handed to net/http intact when a later request on it needs net/http.
func TestKeepAliveThenUpgradeOnSameConnection(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	startRouter(t, twoClusters(addr, stable, canary, 0), Options{})
	conn, br := rawConn(t, addr)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(conn, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "stable" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade after keep-alive requests: %v %v", resp, err)
	}
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

func TestListenerLimits(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].Limits = model.Limits{MaxHeaderBytes: 4096, IdleTimeout: 100 * time.Millisecond}
	startRouter(t, s, Options{})
	c := newClient()
	if st, _, _ := get(t, c, "http://"+addr+"/", map[string]string{"X-Big": strings.Repeat("a", 32<<10)}); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized head answered %d, want 431", st)
	}
	if st, _, _ := get(t, c, "http://"+addr+"/", map[string]string{"X-Small": "a"}); st != 200 {
		t.Fatalf("normal request after an oversized one: %d", st)
	}
	// An idle keep-alive connection is closed by the router after IdleTimeout.
	conn, br := rawConn(t, addr)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	// IdleTimeout is 100 ms; without it the router would keep the connection 120 s.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF from the router closing it", err)
	}
}

// TestRefusalSurvivesAClientStillSending: after refusing a head (431 here) the router
// half-closes and reads what the client still sends for a while, so a client that is
// still writing a large head or body gets no reset: its writes go on succeeding, and it
// reads the refusal and then EOF. Closing at once would reset the connection, fail the
// client's next write and, with many clients (Go's among them), lose the answer (nginx's
// lingering close and net/http's closeWriteAndWait exist for this).
func TestRefusalSurvivesAClientStillSending(t *testing.T) {
	stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
	addr := freeAddr(t)
	s := twoClusters(addr, stable, canary, 0)
	s.Listeners[0].Limits = model.Limits{MaxHeaderBytes: 4096}
	startRouter(t, s, Options{})
	conn, br := rawConn(t, addr)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s", strings.Repeat("a", 8<<10))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%v %v, want 431", resp, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("after the refusal: %v, want EOF (the router's FIN)", err)
	}
	chunk := []byte(strings.Repeat("a", 4<<10))
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := conn.Write(chunk); err != nil {
			t.Fatalf("the client's write after the refusal failed: %v (the router reset the connection instead of lingering)", err)
		}
	}
}
