package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplicaEndpoints: both answer 404 on a Sluice that runs alone; the replicas view is
// served as given; the router series need the token when one is set.
func TestReplicaEndpoints(t *testing.T) {
	s, err := New(Options{Address: "127.0.0.1:0", Token: "s3cret", Rollouts: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, p := range []string{"/api/v1/replicas", RouterMetricsPath} {
		if code, body := get(t, ts.URL+p, "s3cret"); code != http.StatusNotFound || !strings.Contains(body, "error") {
			t.Errorf("GET %s alone: %d %s", p, code, body)
		}
	}

	s.SetReplicas(func(context.Context) any { return map[string]string{"self": "r1"} })
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "h"}, []string{"cluster"})
	reg.MustRegister(c)
	c.WithLabelValues("api-canary").Add(7)
	s.SetRouterMetrics(reg)

	if code, body := get(t, ts.URL+"/api/v1/replicas", ""); code != http.StatusOK || strings.TrimSpace(body) != `{"self":"r1"}` {
		t.Errorf("GET /api/v1/replicas: %d %s", code, body)
	}
	for _, tok := range []string{"", "wrong"} {
		if code, _ := get(t, ts.URL+RouterMetricsPath, tok); code != http.StatusUnauthorized {
			t.Errorf("router series with token %q: %d, want 401", tok, code)
		}
	}
	code, body := get(t, ts.URL+RouterMetricsPath, "s3cret")
	if code != http.StatusOK || !strings.Contains(body, `http_requests_total{cluster="api-canary"} 7`) {
		t.Errorf("router series: %d %s", code, body)
	}
	if s.Token() != "s3cret" {
		t.Errorf("Token() = %q", s.Token())
	}
}

// TestWebViewShowsReplicas renders the web view of a replica in headless Chromium: the
// replicas, who leads, what each serves, a config that differs from the leader's.
func TestWebViewShowsReplicas(t *testing.T) {
	f := newFake()
	f.items["checkout"] = richStatus(time.Now().Add(-time.Minute))
	s, err := New(Options{Address: "127.0.0.1:0", Rollouts: f, EventInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	s.SetReplicas(func(context.Context) any {
		return map[string]any{"self": "node2/10.0.0.2:9900", "leader": "node1/10.0.0.1:9900", "leaderConfigDigest": "aaaa",
			"etcdReachable": true, "configDigest": "aaaa", "replicas": []map[string]any{
				{"id": "node1/10.0.0.1:9900", "admin": "10.0.0.1:9900", "leader": true, "appliedWeights": map[string]int{"checkout": 20},
					"configDigest": "aaaa", "lastSeen": now},
				{"id": "node2/10.0.0.2:9900", "admin": "10.0.0.2:9900", "appliedWeights": map[string]int{"checkout": 20},
					"configDigest": "aaaa", "lastSeen": now},
				{"id": "node3/10.0.0.3:9900", "admin": "10.0.0.3:9900", "appliedWeights": map[string]int{"checkout": 10},
					"refused":      map[string]any{"checkout": map[string]any{"revision": 9, "error": "NACK: no such cluster"}},
					"configDigest": "bbbb", "lastSeen": now},
			}}
	})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	dom := chromiumDOM(t, ts.URL+"/?poll=200", "")
	for _, want := range []string{
		`data-replicas="1"`, ">Replicas<", "node1/10.0.0.1:9900", ">leader<", ">follower<", "node3/10.0.0.3:9900",
		"<b>10%</b>", "<b>20%</b>", "differs from the leader's", "refused a newer state: NACK: no such cluster", "3 live",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	// Alone: no replicas panel.
	alone, err := New(Options{Address: "127.0.0.1:0", Rollouts: f})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(alone.Handler())
	defer ts2.Close()
	if dom := chromiumDOM(t, ts2.URL+"/?poll=200", ""); strings.Contains(dom, ">Replicas<") {
		t.Error("a Sluice that runs alone shows a replicas panel")
	}
}
