package router

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// TestHeaderTimeout: a head that trickles in is cut off after limits.readTimeout (408 on
// the fast path; net/http closes without answering) — not after the idle timeout.
func TestHeaderTimeout(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
		addr := freeAddr(t)
		s := twoClusters(addr, stable, canary, 0)
		s.Listeners[0].Limits = model.Limits{ReadTimeout: 200 * time.Millisecond, IdleTimeout: time.Hour}
		_, reg := startRouter(t, s, opts)
		c, br := rawConn(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// A first request (the net/http path reads the second head itself).
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		resp, err = http.ReadResponse(br, nil)
		switch {
		case opts.DisableFastPath && err != nil:
			// net/http hangs up without a response.
		case err != nil:
			t.Fatalf("no answer to a head that never ends: %v", err)
		case resp.StatusCode != http.StatusRequestTimeout || !resp.Close:
			t.Fatalf("unfinished head: %d (close %v), want 408 and close", resp.StatusCode, resp.Close)
		default:
			io.Copy(io.Discard, resp.Body)
			if got := metricSum(t, reg, "sluice_router_client_errors_total", map[string]string{"reason": reasonHeadTimeout}); got != 1 {
				t.Fatalf("header timeouts counted %v", got)
			}
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("connection still open after the header timeout")
		}
	})
}

// TestSendTimeout: a client that stops reading a large response is dropped after
// limits.sendTimeout, with the upstream connection, and recorded as a hang-up (499),
// not as the upstream's error.
func TestSendTimeout(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		var aborted atomic.Int64
		big := newBackend(t, "big", func(srv *http.Server) {
			srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := make([]byte, 64<<10)
				for i := 0; i < 1024; i++ { // 64 MiB, far more than socket buffers hold
					if _, err := w.Write(chunk); err != nil {
						aborted.Add(1)
						return
					}
				}
			})
		})
		addr := freeAddr(t)
		s := twoClusters(addr, big, big, 0)
		s.Listeners[0].Limits.SendTimeout = 300 * time.Millisecond
		_, reg := startRouter(t, s, opts)
		c, _ := rawConn(t, addr)
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
		eventually(t, "the upstream's write fails (router dropped both connections)", func() bool { return aborted.Load() == 1 })
		eventually(t, "the request recorded as 499", func() bool {
			return metricSum(t, reg, "http_requests_total", map[string]string{"status_code": "499"}) == 1
		})
		if got := metricSum(t, reg, "http_errors_total", nil); got != 0 {
			t.Fatalf("a client not reading counted against the upstream: %v", got)
		}
	})
}

// TestResponseHeaderTimeout: a cluster's responseHeaderTimeout answers 504 when the
// upstream is slow to start its answer, independently of requestTimeout, and does not
// cut a response whose body takes longer.
func TestResponseHeaderTimeout(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		stable, canary := newBackend(t, "stable"), newBackend(t, "canary")
		addr := freeAddr(t)
		s := twoClusters(addr, stable, canary, 0)
		s.Clusters[1].ResponseHeaderTimeout = 200 * time.Millisecond // stable
		_, reg := startRouter(t, s, opts)
		c := newClient()
		if st, _, _ := get(t, c, "http://"+addr+"/sleep?d=5s", nil); st != http.StatusGatewayTimeout {
			t.Fatalf("slow upstream head: %d, want 504", st)
		}
		if got := metricSum(t, reg, "http_errors_total", map[string]string{"status_code": "504"}); got != 1 {
			t.Fatalf("504s recorded %v", got)
		}
		// A streaming body that pauses longer than the header timeout still completes.
		resp, err := c.Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
			t.Fatalf("first chunk %q %v", buf, err)
		}
		time.Sleep(400 * time.Millisecond) // longer than the header timeout, on purpose
		stable.release <- struct{}{}
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(rest) != "second\n" {
			t.Fatalf("rest of the stream %q %v", rest, err)
		}
	})
}

// TestIdleUpstreamConnectionsSwept: once load stops, pooled upstream connections are
// closed when their idle time runs out, not left open until a request finds them.
func TestIdleUpstreamConnectionsSwept(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		be := newRawBackend(t, "stable")
		addr := freeAddr(t)
		s := &model.Snapshot{Version: 1,
			Clusters:  []model.Cluster{{Name: "stable", Endpoints: []model.Endpoint{{Address: be.addr, Weight: 1}}}},
			Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
		}
		opts.UpstreamIdleTimeout = 300 * time.Millisecond
		startRouter(t, s, opts)
		c := newClient()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					resp, err := c.Get("http://" + addr + "/")
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.Fatalf("%d requests failed", failed.Load())
		}
		// The backend never closes a connection itself: only the router's sweeper can.
		be.waitFor(t, "idle upstream connections closed", func(b *rawBackend) bool { return b.open == 0 })
		if be.maxOpen == 0 || be.reqs != 400 {
			t.Fatalf("backend saw %d connections and %d requests", be.maxOpen, be.reqs)
		}
		t.Logf("%d upstream connections for 400 requests, all closed once idle", be.maxOpen)
	})
}

// TestHostPrecedence: routes are chosen as Envoy chooses virtual hosts — exact host, then
// the longest suffix wildcard, then prefix wildcards, then "*" — and only the chosen
// host's routes are tried. Hosts compare in lower case without the port.
func TestHostPrecedence(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		names := []string{"any", "sub", "apisub", "exact", "prefix", "v6"}
		var clusters []model.Cluster
		for _, n := range names {
			clusters = append(clusters, model.Cluster{Name: n, Endpoints: []model.Endpoint{{Address: newBackend(t, n).addr, Weight: 1}}})
		}
		addr := freeAddr(t)
		s := &model.Snapshot{Version: 1, Clusters: clusters, Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{
			{Name: "any", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "any"},
			{Name: "sub", Hosts: []string{"*.example.com"}, PathPrefix: "/", Cluster: "sub"},
			{Name: "apisub", Hosts: []string{"*.api.example.com"}, PathPrefix: "/", Cluster: "apisub"},
			{Name: "exact", Hosts: []string{"exact.example.com"}, PathPrefix: "/special", Cluster: "exact"},
			{Name: "prefix", Hosts: []string{"api.*"}, PathPrefix: "/", Cluster: "prefix"},
			{Name: "v6", Hosts: []string{"[::1]"}, PathPrefix: "/", Cluster: "v6"},
		}}}}
		startRouter(t, s, opts)
		c := newClient()
		for _, tc := range []struct{ host, path, want string }{
			{"foo.example.com", "/", "sub"},
			{"a.b.example.com", "/", "sub"},
			{"x.api.example.com", "/", "apisub"},
			{"badexample.com", "/", "any"},
			{"example.com", "/", "any"},
			{".example.com", "/", "any"},
			{"EXACT.Example.COM:8080", "/special/x", "exact"},
			{"exact.example.com", "/other", ""}, // the exact host wins; its routes do not match /other
			{"Foo.Example.Com", "/", "sub"},
			{"api.foo", "/", "prefix"},
			{"api.example.com", "/", "sub"}, // a suffix wildcard beats a prefix one
			{"[::1]:80", "/", "v6"},
			{"127.0.0.1:80", "/", "any"},
		} {
			req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
			req.Host = tc.host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := resp.Header.Get("X-Backend")
			if tc.want == "" && resp.StatusCode != http.StatusNotFound || got != tc.want {
				t.Errorf("Host %q path %s: %d from %q, want %q", tc.host, tc.path, resp.StatusCode, got, tc.want)
			}
		}
	})
}

// TestEndpointWeights: endpoint weights above 1 split a cluster's traffic exactly.
func TestEndpointWeights(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		a, b, d := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "d")
		addr := freeAddr(t)
		s := &model.Snapshot{Version: 1,
			Clusters: []model.Cluster{{Name: "stable", Endpoints: []model.Endpoint{
				{Address: a.addr, Weight: 5}, {Address: b.addr, Weight: 3}, {Address: d.addr, Weight: 2}}}},
			Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
		}
		startRouter(t, s, opts)
		c := newClient()
		for i := 0; i < 200; i++ {
			if st, _, _ := get(t, c, "http://"+addr+"/", nil); st != 200 {
				t.Fatalf("request %d: %d", i, st)
			}
		}
		got := []int64{a.hits.Load(), b.hits.Load(), d.hits.Load()}
		if fmt.Sprint(got) != "[100 60 40]" {
			t.Fatalf("weights 5:3:2 over 200 requests gave %v, want [100 60 40]", got)
		}
	})
}

// TestFailedConnectTriesAnotherEndpoint: an endpoint nothing listens on (a pod gone
// before the table knew) costs no client request: the connect failure is tried again on
// another endpoint of the cluster, and counted against the dead one.
func TestFailedConnectTriesAnotherEndpoint(t *testing.T) {
	bothPaths(t, func(t *testing.T, opts Options) {
		live := newBackend(t, "live")
		dead := freeAddr(t)
		addr := freeAddr(t)
		s := &model.Snapshot{Version: 1,
			Clusters: []model.Cluster{{Name: "stable",
				// No outlier detection: the dead endpoint is never ejected, every other pick is it.
				Endpoints: []model.Endpoint{{Address: dead, Weight: 1}, {Address: live.addr, Weight: 1}}}},
			Listeners: []model.Listener{{Name: "l", Address: addr, Routes: []model.Route{{Name: "web", Cluster: "stable"}}}},
		}
		_, reg := startRouter(t, s, opts)
		c := newClient()
		for i := 0; i < 20; i++ {
			if st, who, _ := get(t, c, "http://"+addr+"/", nil); st != 200 || who != "live" {
				t.Fatalf("request %d: %d from %q; want 200 from the live endpoint", i, st, who)
			}
		}
		if got := live.hits.Load(); got != 20 {
			t.Fatalf("the live endpoint served %d of 20", got)
		}
		if got := metricSum(t, reg, "http_errors_total", map[string]string{"cluster": "stable"}); got != 0 {
			t.Fatalf("retried connect failures reached the analysis series as errors: %v", got)
		}
	})
}
