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
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// request sends method url with the given headers ("Host" sets the Host) and body.
func request(t *testing.T, method, url string, hdr map[string]string, body string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestCrossSiteActionsRefused: without a token, on loopback, a page on another site must
// not be able to abort or promote a rollout: not with an HTML form (urlencoded, or
// text/plain, which needs no CORS preflight), not with fetch from another origin.
// curl, the CLI and the web view itself still can.
func TestCrossSiteActionsRefused(t *testing.T) {
	f := newFake("api")
	reg := prometheus.NewRegistry()
	s, ts := newTestServer(t, Options{Rollouts: f, Registerer: reg})
	abort := ts.URL + "/api/v1/rollouts/api/abort"
	self := ts.URL // the web view's own origin
	for _, c := range []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, "a=b", 403},
		{"text/plain form, no browser headers", map[string]string{"Content-Type": "text/plain"}, "{}", 415},
		{"no content type", nil, "", 415},
		{"json from another origin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, "{}", 403},
		{"json from another port", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, "{}", 403},
		{"json from a null origin", map[string]string{"Content-Type": "application/json", "Origin": "null"}, "{}", 403},
		{"json, cross-site fetch metadata", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, "{}", 403},
		{"json, same-site fetch metadata", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, "{}", 403},
	} {
		if got, _ := request(t, "POST", abort, c.hdr, c.body); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if calls := f.recorded(); len(calls) != 0 {
		t.Fatalf("refused calls reached the controller: %v", calls)
	}
	for _, c := range []struct {
		name string
		hdr  map[string]string
	}{
		{"curl or the CLI", map[string]string{"Content-Type": "application/json"}},
		{"the web view", map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": self, "Sec-Fetch-Site": "same-origin"}},
	} {
		if got, _ := request(t, "POST", abort, c.hdr, "{}"); got != 200 {
			t.Errorf("%s: %d, want 200", c.name, got)
		}
	}
	if calls := f.recorded(); len(calls) != 2 {
		t.Fatalf("allowed calls: %v", calls)
	}
	if got := testutil.ToFloat64(s.forbidden.WithLabelValues("origin")); got != 6 {
		t.Errorf("forbidden{origin} %v, want 6", got)
	}
	if got := testutil.ToFloat64(s.forbidden.WithLabelValues("content_type")); got != 2 {
		t.Errorf("forbidden{content_type} %v, want 2", got)
	}
}

// TestDNSRebindingRefused: on a loopback address, a request whose Host is some other
// name (a page whose DNS name was re-pointed at 127.0.0.1) is refused, reads included;
// loopback names and addresses are served. Off loopback (a token is then required) the
// Host is not checked.
func TestDNSRebindingRefused(t *testing.T) {
	_, ts := newTestServer(t, Options{Rollouts: newFake("api")})
	port := ts.URL[strings.LastIndexByte(ts.URL, ':'):]
	for host, want := range map[string]int{
		"evil.example" + port:   403,
		"evil.example":          403,
		"127.0.0.1.nip.io":      403,
		"localhost" + port:      200,
		"LOCALHOST.":            200,
		"app.localhost" + port:  200,
		"127.0.0.1" + port:      200,
		"127.8.9.10":            200,
		"[::1]" + port:          200,
		"[::ffff:127.0.0.1]:80": 200,
	} {
		for _, path := range []string{"/api/v1/rollouts", "/", "/metrics-less"} {
			got, _ := request(t, "GET", ts.URL+path, map[string]string{"Host": host}, "")
			if want == 403 && got != 403 || want == 200 && got == 403 {
				t.Errorf("Host %q %s: %d, want %d", host, path, got, want)
			}
		}
	}
	off, err := New(Options{Address: "0.0.0.0:0", Token: "t", Rollouts: newFake("api")})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	off.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://sluice.internal:9900/api/v1/rollouts", nil))
	if rec.Code != 200 {
		t.Fatalf("off-loopback server refused its own name: %d", rec.Code)
	}
}

// TestNoFraming: no page may frame the web view or the API (clickjacking the buttons).
func TestNoFraming(t *testing.T) {
	_, ts := newTestServer(t, Options{Rollouts: newFake("api")})
	for _, path := range []string{"/", "/api/v1/rollouts", "/nope"} {
		_, h := request(t, "GET", ts.URL+path, nil, "")
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", path, h.Get("Content-Security-Policy"), h.Get("X-Frame-Options"))
		}
	}
}

// TestEventStreamCap: beyond MaxEventStreams, event streams are refused until one closes.
func TestEventStreamCap(t *testing.T) {
	_, ts := newTestServer(t, Options{Rollouts: newFake("api"), MaxEventStreams: 2, EventInterval: 10 * time.Millisecond})
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	r1, c1 := open()
	defer c1()
	r2, c2 := open()
	defer c2()
	if r1.StatusCode != 200 || r2.StatusCode != 200 {
		t.Fatalf("streams within the cap: %d %d", r1.StatusCode, r2.StatusCode)
	}
	r3, c3 := open()
	c3()
	if r3.StatusCode != 503 || r3.Header.Get("Retry-After") == "" {
		t.Fatalf("stream over the cap: %d, Retry-After %q", r3.StatusCode, r3.Header.Get("Retry-After"))
	}
	c1()
	r1.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r4, c4 := open()
		code := r4.StatusCode
		c4()
		r4.Body.Close()
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream never freed its place: %d", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleTimeoutSet: the admin server closes idle keep-alive connections.
func TestIdleTimeoutSet(t *testing.T) {
	s, err := New(Options{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	s.mu.Lock()
	idle := s.srv.IdleTimeout
	s.mu.Unlock()
	if idle <= 0 || idle > 5*time.Minute {
		t.Fatalf("IdleTimeout %v", idle)
	}
}

// TestCrossSiteAttackInChromium is the attack as a browser makes it: a page on another
// origin (another port of 127.0.0.1: same site, other origin) auto-submits a text/plain
// form to abort, fires a no-cors text/plain fetch to promote, and a JSON fetch to retry
// (which needs a CORS preflight this server never grants). Nothing reaches the
// controller, and the requests that did arrive were refused as cross-origin.
func TestCrossSiteAttackInChromium(t *testing.T) {
	f := newFake("api")
	s, ts := newTestServer(t, Options{Rollouts: f})
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" target="sink" action="`+ts.URL+`/api/v1/rollouts/api/abort"><input name='{"a":"' value='"}'></form>
<iframe name="sink"></iframe>
<script>
const admin = "`+ts.URL+`/api/v1/rollouts/api/";
const done = () => { document.body.setAttribute("data-loaded", "1"); };
fetch(admin + "promote", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "{}"})
  .catch(() => {})
  .then(() => fetch(admin + "retry", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}))
  .catch(() => {})
  .then(() => { document.getElementById("f").submit(); setTimeout(done, 500); });
</script></body></html>`)
	}))
	defer evil.Close()
	chromiumDOM(t, evil.URL+"/", "")
	if calls := f.recorded(); len(calls) != 0 {
		t.Fatalf("a cross-site page reached the controller: %v", calls)
	}
	if got := testutil.ToFloat64(s.forbidden.WithLabelValues("origin")); got < 2 {
		t.Fatalf("refused as cross-origin: %v, want the form and the no-cors fetch (2)", got)
	}
}
