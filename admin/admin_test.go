package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-mesh/sluice/analyzer"
)

// fakeRollouts is a Rollouts with scripted errors that records every call.
type fakeRollouts struct {
	mu    sync.Mutex
	items map[string]analyzer.RolloutStatus
	err   error
	calls []string
}

func newFake(names ...string) *fakeRollouts {
	f := &fakeRollouts{items: map[string]analyzer.RolloutStatus{}}
	for _, n := range names {
		f.items[n] = analyzer.RolloutStatus{Name: n, Phase: analyzer.PhaseProgressing, Steps: 4, SetWeight: 20, ActualWeight: 20}
	}
	return f
}

func (f *fakeRollouts) List() []analyzer.RolloutStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.items))
	for n := range f.items {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []analyzer.RolloutStatus
	for _, n := range names {
		out = append(out, f.items[n])
	}
	return out
}

func (f *fakeRollouts) Get(name string) (analyzer.RolloutStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.items[name]
	return s, ok
}

func (f *fakeRollouts) record(c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.err
}

func (f *fakeRollouts) set(name string, mut func(*analyzer.RolloutStatus)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.items[name]
	mut(&s)
	f.items[name] = s
}

func (f *fakeRollouts) Start(name string) error { return f.record("start " + name) }
func (f *fakeRollouts) Promote(name string, full bool) error {
	if full {
		return f.record("promote-full " + name)
	}
	return f.record("promote " + name)
}
func (f *fakeRollouts) Abort(name string) error { return f.record("abort " + name) }
func (f *fakeRollouts) Retry(name string) error { return f.record("retry " + name) }

func (f *fakeRollouts) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type codedErr struct{ code int }

func (e codedErr) Error() string   { return "coded" }
func (e codedErr) HTTPStatus() int { return e.code }

func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Address == "" {
		opts.Address = "127.0.0.1:0"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("want a JSON error body, got %q (%v)", body, err)
	}
	return e.Error
}

func TestListAndGet(t *testing.T) {
	f := newFake("api", "web")
	_, ts := newTestServer(t, Options{Rollouts: f})

	code, body := do(t, "GET", ts.URL+"/api/v1/rollouts", "", "")
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	var list []analyzer.RolloutStatus
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.List(), list); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	code, body = do(t, "GET", ts.URL+"/api/v1/rollouts/web", "", "")
	var one analyzer.RolloutStatus
	if code != 200 || json.Unmarshal([]byte(body), &one) != nil || one.Name != "web" || one.SetWeight != 20 {
		t.Fatalf("get: %d %s", code, body)
	}

	code, body = do(t, "GET", ts.URL+"/api/v1/rollouts/nope", "", "")
	if code != 404 || !strings.Contains(errorOf(t, body), "nope") {
		t.Fatalf("unknown rollout: %d %s", code, body)
	}
	code, body = do(t, "GET", ts.URL+"/api/v1/nothing", "", "")
	if code != 404 {
		t.Fatalf("unknown endpoint: %d %s", code, body)
	}
	errorOf(t, body)
}

func TestEmptyListIsArray(t *testing.T) {
	_, ts := newTestServer(t, Options{Rollouts: newFake()})
	code, body := do(t, "GET", ts.URL+"/api/v1/rollouts", "", "")
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("got %d %q, want 200 []", code, body)
	}
}

func TestNoController(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	code, body := do(t, "GET", ts.URL+"/api/v1/rollouts", "", "")
	if code != 503 {
		t.Fatalf("got %d %s", code, body)
	}
	s.SetRollouts(newFake("api"))
	if code, body = do(t, "GET", ts.URL+"/api/v1/rollouts/api", "", ""); code != 200 {
		t.Fatalf("after SetRollouts: %d %s", code, body)
	}
}

func TestActionsWithToken(t *testing.T) {
	f := newFake("api")
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	const token = "s3cret-token-value"
	_, ts := newTestServer(t, Options{Rollouts: f, Token: token, Logger: zap.New(core), Registerer: reg, Gatherer: reg})

	for _, tok := range []string{"", "wrong", token + "x"} {
		code, body := do(t, "POST", ts.URL+"/api/v1/rollouts/api/abort", tok, "")
		if code != 401 {
			t.Fatalf("token %q: got %d %s, want 401", tok, code, body)
		}
		errorOf(t, body)
	}
	if got := f.recorded(); len(got) != 0 {
		t.Fatalf("refused calls reached the controller: %v", got)
	}
	refused := logs.FilterMessageSnippet("refused").All()
	if len(refused) != 3 {
		t.Fatalf("want 3 refused calls logged, got %d", len(refused))
	}
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		if strings.Contains(e.Message+string(b), token) {
			t.Fatalf("token logged: %s %s", e.Message, b)
		}
	}
	_, metrics := do(t, "GET", ts.URL+"/metrics", "", "")
	if !strings.Contains(metrics, "sluice_admin_refused_total 3") {
		t.Errorf("/metrics lacks sluice_admin_refused_total 3:\n%s", metrics)
	}

	steps := []struct{ path, body, want string }{
		{"start", "", "start api"},
		{"promote", "", "promote api"},
		{"promote", `{"full": true}`, "promote-full api"},
		{"promote", `{"full": false}`, "promote api"},
		{"abort", "", "abort api"},
		{"retry", "{}", "retry api"},
	}
	var want []string
	for _, s := range steps {
		code, body := do(t, "POST", ts.URL+"/api/v1/rollouts/api/"+s.path, token, s.body)
		if code != 200 {
			t.Fatalf("%s: %d %s", s.path, code, body)
		}
		var st analyzer.RolloutStatus
		if err := json.Unmarshal([]byte(body), &st); err != nil || st.Name != "api" {
			t.Fatalf("%s: want the rollout's status back, got %s", s.path, body)
		}
		want = append(want, s.want)
	}
	if diff := cmp.Diff(want, f.recorded()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// A lower-case scheme is accepted too (RFC 9110: case-insensitive).
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/rollouts/api/retry", nil)
	req.Header.Set("Authorization", "bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("lower-case bearer: %d", resp.StatusCode)
	}
}

func TestActionErrors(t *testing.T) {
	f := newFake("api")
	_, ts := newTestServer(t, Options{Rollouts: f})
	cases := []struct {
		name, url, body string
		err             error
		want            int
	}{
		{"unknown rollout", "/api/v1/rollouts/nope/promote", "", nil, 404},
		{"unknown action", "/api/v1/rollouts/api/explode", "", nil, 404},
		{"not allowed now", "/api/v1/rollouts/api/promote", "", errors.New("rollout is Healthy: nothing to promote"), 409},
		{"error with status", "/api/v1/rollouts/api/retry", "", codedErr{422}, 422},
		{"bad body", "/api/v1/rollouts/api/promote", "{full", nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.mu.Lock()
			f.err = c.err
			f.mu.Unlock()
			code, body := do(t, "POST", ts.URL+c.url, "", c.body)
			if code != c.want {
				t.Fatalf("got %d %s, want %d", code, body, c.want)
			}
			msg := errorOf(t, body)
			if c.err != nil && msg != c.err.Error() {
				t.Errorf("error %q, want %q", msg, c.err.Error())
			}
		})
	}
	code, _ := do(t, "GET", ts.URL+"/api/v1/rollouts/api/promote", "", "")
	if code != 405 && code != 404 {
		t.Errorf("GET on an action: %d, want 404/405", code)
	}
}

func TestNewRefusesOffLoopbackWithoutToken(t *testing.T) {
	cases := []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:9900", "", true},
		{"localhost:9900", "", true},
		{"[::1]:9900", "", true},
		{"127.3.4.5:1", "", true},
		{"0.0.0.0:9900", "", false},
		{":9900", "", false},
		{"10.1.2.3:9900", "", false},
		{"[::]:9900", "", false},
		{"0.0.0.0:9900", "tok", true},
		{"", "tok", false},
	}
	for _, c := range cases {
		_, err := New(Options{Address: c.addr, Token: c.token})
		if (err == nil) != c.ok {
			t.Errorf("New(%q, token=%q): err=%v, want ok=%v", c.addr, c.token, err, c.ok)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/tok"
	if err := writeFile(p, "  abc123\n"); err != nil {
		t.Fatal(err)
	}
	got, err := LoadToken(p)
	if err != nil || got != "abc123" {
		t.Fatalf("LoadToken = %q, %v", got, err)
	}
	if err := writeFile(p, "\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadToken(p); err == nil {
		t.Fatal("empty token file accepted")
	}
	if _, err := LoadToken(dir + "/missing"); err == nil {
		t.Fatal("missing token file accepted")
	}
}

func TestHealthReadyAndShutdown(t *testing.T) {
	s, err := New(Options{Address: "127.0.0.1:0", Rollouts: newFake("api"), EventInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz before Start: %d", rec.Code)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	if code, body := do(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := do(t, "GET", base+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	s.AddReady(func() error { return errors.New("router not bound") })
	if code, body := do(t, "GET", base+"/readyz", "", ""); code != 503 || !strings.Contains(body, "router not bound") {
		t.Fatalf("readyz with a failing check: %d %s", code, body)
	}

	// An open event stream must not hold up Shutdown.
	resp, err := http.Get(base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
}

func TestEventsStreamChanges(t *testing.T) {
	f := newFake("api")
	_, ts := newTestServer(t, Options{Rollouts: f, EventInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	next := func() []analyzer.RolloutStatus {
		t.Helper()
		var event string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if event != "rollouts" {
					t.Fatalf("event %q", event)
				}
				var list []analyzer.RolloutStatus
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &list); err != nil {
					t.Fatal(err)
				}
				return list
			}
		}
	}
	first := next()
	if len(first) != 1 || first[0].SetWeight != 20 {
		t.Fatalf("first event: %+v", first)
	}
	f.set("api", func(s *analyzer.RolloutStatus) { s.SetWeight, s.Step = 50, 2 })
	second := next()
	if len(second) != 1 || second[0].SetWeight != 50 || second[0].Step != 2 {
		t.Fatalf("second event: %+v", second)
	}
}

func TestNodesEndpoint(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	if code, body := do(t, "GET", ts.URL+"/api/v1/xds/nodes", "", ""); code != 200 || strings.TrimSpace(body) != `{"nodes":[]}` {
		t.Fatalf("no xds: %d %q", code, body)
	}
	nodes := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"nodes":[{"id":"envoy-1","appliedVersion":7}]}`))
	})
	_, ts2 := newTestServer(t, Options{Nodes: nodes})
	if code, body := do(t, "GET", ts2.URL+"/api/v1/xds/nodes", "", ""); code != 200 || !strings.Contains(body, "envoy-1") {
		t.Fatalf("with xds: %d %q", code, body)
	}
}

func TestWebViewEmbedded(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	code, body := do(t, "GET", ts.URL+"/", "", "")
	if code != 200 || !strings.Contains(body, "<title>Sluice</title>") || !strings.Contains(body, `src="app.js"`) {
		t.Fatalf("index: %d %.200s", code, body)
	}
	for _, f := range []string{"/app.js", "/style.css"} {
		resp, err := http.Get(ts.URL + f)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) < 500 {
			t.Fatalf("%s: %d, %d bytes", f, resp.StatusCode, len(b))
		}
		// No CDN: nothing is loaded from elsewhere (the SVG namespace is an identifier).
		s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if strings.Contains(s, "http://") || strings.Contains(s, "https://") || strings.Contains(s, "//cdn") {
			t.Errorf("%s refers to an external resource", f)
		}
	}
	if !strings.Contains(func() string { _, b := do(t, "GET", ts.URL+"/app.js", "", ""); return b }(), "/api/v1/events") {
		t.Error("app.js does not follow /api/v1/events")
	}
}

func TestSetTokenRotates(t *testing.T) {
	f := newFake("api")
	s, ts := newTestServer(t, Options{Rollouts: f, Token: "old"})
	if err := s.SetToken("new"); err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, "POST", ts.URL+"/api/v1/rollouts/api/abort", "old", ""); code != 401 {
		t.Fatalf("old token after rotation: %d", code)
	}
	if code, _ := do(t, "POST", ts.URL+"/api/v1/rollouts/api/abort", "new", ""); code != 200 {
		t.Fatalf("new token: %d", code)
	}
	off, err := New(Options{Address: "0.0.0.0:0", Token: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.SetToken(""); err == nil {
		t.Fatal("dropped the token off loopback")
	}
}
