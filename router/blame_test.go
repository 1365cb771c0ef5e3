package router

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// bothPaths runs f with the fast path on and with it off (net/http's front end).
func bothPaths(t *testing.T, f func(t *testing.T, opts Options)) {
	t.Run("fast", func(t *testing.T) { f(t, Options{}) })
	t.Run("nethttp", func(t *testing.T) { f(t, Options{DisableFastPath: true}) })
}

// rawStatus writes send on a new connection (then half-closes it when closeWrite) and
// returns the status line of the answer, or "" when the router closed without one.
func rawStatus(t *testing.T, addr, send string, closeWrite bool) string {
	t.Helper()
	c, br := rawConn(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, send)
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return ""
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Proto + " " + resp.Status
}

// TestClientFramingNeverBlamesUpstream: a client pinned to the canary by its cookie sends
// malformed, short and too slow bodies. Each is answered 4xx and counted as a client
// error; the canary's analysis series stay clean and nothing is ejected (issue 16: five
// malformed chunked bodies used to fail a canary).
func TestClientFramingNeverBlamesUpstream(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
		addr := freeAddr(t)
		s := stickySnapshot(addr, stable, canary, 50)
		s.Listeners[0].Limits.BodyTimeout = 200 * time.Millisecond
		for i := range s.Clusters {
			s.Clusters[i].Outlier = model.OutlierDetection{ConsecutiveFailures: 1, BaseEjectionTime: time.Hour}
		}
		_, reg := startRouter(t, s, opts)
		c := newClient()
		var cookie string
		for i := 0; cookie == "" && i < 10; i++ {
			_, who, resp := get(t, c, "http://"+addr+"/", nil)
			if v, _ := cookieValue(resp, "sluice-web"); who == "canary" {
				cookie = v
			}
		}
		head := "POST /upload HTTP/1.1\r\nHost: x\r\nCookie: sluice-web=" + cookie + "\r\n"
		for i := 0; i < 5; i++ {
			if got := rawStatus(t, addr, head+"Transfer-Encoding: chunked\r\n\r\nzz\r\n", false); got != bad400 {
				t.Fatalf("malformed chunk: %q, want %q", got, bad400)
			}
		}
		if got := rawStatus(t, addr, head+"Content-Length: 100\r\n\r\nhello", true); got != bad400 && got != "" {
			t.Fatalf("body cut short: %q, want %q (or a close)", got, bad400)
		}
		if got := rawStatus(t, addr, head+"Content-Length: 100\r\n\r\nhello", false); got != "HTTP/1.1 408 Request Timeout" {
			t.Fatalf("body too slow: %q, want 408", got)
		}
		for reason, n := range map[string]float64{reasonBadBody: 5, reasonBodyIncomplete: 1, reasonBodyTimeout: 1} {
			if got := metricSum(t, reg, "sluice_router_client_errors_total", map[string]string{"reason": reason}); got != n {
				t.Errorf("client errors {reason=%s} %v, want %v", reason, got, n)
			}
		}
		if got := metricSum(t, reg, "http_errors_total", nil); got != 0 {
			t.Errorf("client framing errors counted against the upstream: http_errors_total %v", got)
		}
		if got := metricSum(t, reg, "http_requests_total", map[string]string{"method": "POST"}); got != 0 {
			t.Errorf("refused requests in the analysis series: %v", got)
		}
		if got := metricSum(t, reg, "sluice_router_endpoint_ejections_total", nil); got != 0 {
			t.Errorf("an endpoint was ejected for the client's errors")
		}
		if _, who, _ := get(t, c, "http://"+addr+"/", map[string]string{"Cookie": "sluice-web=" + cookie}); who != "canary" {
			t.Fatalf("canary client then went to %q", who)
		}
	})
}

// TestUpstreamFailuresAre502 (issue 16: a body request on a stale upstream connection was
// recorded as a client hang-up): a reused connection the upstream closed costs no request
// (a GET is sent again on a fresh connection, a POST never goes on a connection found
// closed), and an upstream that takes a request and hangs up is a 502 counted against it,
// never a 499.
func TestUpstreamFailuresAre502(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		be := newRawBackend(t, "stable")
		addr := freeAddr(t)
		s := &model.Snapshot{Version: 1,
			Clusters: []model.Cluster{{Name: "stable", Endpoints: []model.Endpoint{{Address: be.addr, Weight: 1}},
				Outlier: model.OutlierDetection{ConsecutiveFailures: 3, BaseEjectionTime: time.Hour}}},
			Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
		}
		_, reg := startRouter(t, s, opts)
		c := newClient()
		send := func(method string) (int, string) {
			req, _ := http.NewRequest(method, "http://"+addr+"/"+strings.ToLower(method), strings.NewReader("hello"))
			if method == "GET" {
				req.Body, req.ContentLength = nil, 0
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		be.setMode(rawCloseIdle) // every pooled connection is stale when used again
		for i := 0; i < 4; i++ {
			for _, m := range []string{"GET", "POST"} {
				be.waitFor(t, "no connection open", func(b *rawBackend) bool { return b.open == 0 })
				if st, body := send(m); st != 200 || body != "stable "+m+" /"+strings.ToLower(m) {
					t.Fatalf("%s %d on a stale connection: %d %q", m, i, st, body)
				}
			}
		}
		if got := metricSum(t, reg, "http_errors_total", nil); got != 0 {
			t.Fatalf("stale connections cost %v errors", got)
		}
		be.setMode(rawHangUp)
		for _, m := range []string{"GET", "POST"} {
			if st, _ := send(m); st != http.StatusBadGateway {
				t.Fatalf("%s to an upstream that hangs up: %d, want 502", m, st)
			}
			if got := metricSum(t, reg, "http_errors_total", map[string]string{"method": m, "status_code": "502"}); got != 1 {
				t.Fatalf("%s: http_errors_total{502} %v, want 1", m, got)
			}
		}
		if got := metricSum(t, reg, "http_requests_total", map[string]string{"status_code": "499"}); got != 0 {
			t.Fatalf("upstream failures recorded as client hang-ups: %v", got)
		}

	})
}
