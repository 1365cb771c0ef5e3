package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// backend is a real HTTP server on 127.0.0.1 that says who it is.
type backend struct {
	name     string
	addr     string
	hits     atomic.Int64
	status   atomic.Int32 // answer for ordinary requests (default 200)
	health   atomic.Int32 // answer for /health (default 200)
	sleeping atomic.Int64 // requests inside /sleep
	delay    atomic.Int64 // nanoseconds every request waits first
	mu       sync.Mutex
	last     http.Header // headers of the last ordinary request
	srv      *http.Server
	// release unblocks /stream's second chunk and /block.
	release chan struct{}
}

func newBackend(t *testing.T, name string, configure ...func(*http.Server)) *backend {
	return newBackendProto(t, name, false, configure...)
}

func newBackendProto(t *testing.T, name string, h2c bool, configure ...func(*http.Server)) *backend {
	t.Helper()
	b := &backend{name: name, release: make(chan struct{})}
	b.status.Store(200)
	b.health.Store(200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		p.SetHTTP1(true)
		b.srv.Protocols = &p
	}
	for _, f := range configure {
		f(b.srv)
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.srv.Shutdown(ctx)
		b.srv.Close()
	})
	return b
}

func (b *backend) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Backend", b.name)
	path := r.URL.Path
	if strings.HasSuffix(path, "/sleep") {
		path = "/sleep"
	}
	if d := b.delay.Load(); d > 0 {
		select {
		case <-time.After(time.Duration(d)):
		case <-r.Context().Done():
			return
		}
	}
	switch path {
	case "/health":
		w.WriteHeader(int(b.health.Load()))
		return
	case "/sleep":
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		b.sleeping.Add(1)
		defer b.sleeping.Add(-1)
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		io.WriteString(w, strconv.FormatInt(n, 10))
		return
	case "/stream":
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
		return
	case "/ws":
		if r.Header.Get("Upgrade") != "websocket" {
			w.WriteHeader(400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 64)
		for {
			n, err := brw.Read(buf)
			if err != nil {
				return
			}
			conn.Write(buf[:n])
		}
	}
	b.hits.Add(1)
	b.mu.Lock()
	b.last = r.Header.Clone()
	b.mu.Unlock()
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	w.Header().Set("X-Proto", r.Proto)
	w.WriteHeader(int(b.status.Load()))
	io.WriteString(w, b.name)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fakeClock is an injected clock tests move by hand.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// forceNetHTTP makes startRouter disable the fast path (see TestNetHTTPPath).
var forceNetHTTP bool

// startRouter builds a router with a private registry, applies s, and shuts it down at
// the end of the test.
func startRouter(t *testing.T, s *model.Snapshot, opts Options) (*Router, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	opts.Logger = zap.NewNop()
	if forceNetHTTP {
		opts.DisableFastPath = true
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	})
	return r, reg
}

// twoClusters returns a snapshot with one listener whose route "web" splits between
// "stable" and "canary" by canaryWeight.
func twoClusters(listen string, stable, canary *backend, canaryWeight int) *model.Snapshot {
	return &model.Snapshot{
		Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: []model.Endpoint{{Address: canary.addr, Weight: 1}}},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: stable.addr, Weight: 1}}},
		},
		Listeners: []model.Listener{{
			Name:    "ingress",
			Address: listen,
			Routes: []model.Route{{
				Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable", Rollout: "demo",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 100 - canaryWeight}, {Cluster: "canary", Weight: canaryWeight}},
			}},
		}},
	}
}

func withWeight(s *model.Snapshot, version uint64, canaryWeight int) *model.Snapshot {
	c := *s
	c.Version = version
	c.Listeners = append([]model.Listener(nil), s.Listeners...)
	c.Listeners[0].Routes = append([]model.Route(nil), s.Listeners[0].Routes...)
	c.Listeners[0].Routes[0].Split = []model.WeightedCluster{{Cluster: "stable", Weight: 100 - canaryWeight}, {Cluster: "canary", Weight: canaryWeight}}
	return &c
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// get sends a GET and returns status, X-Backend and the response.
func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Backend"), resp
}

// metricSum sums the gathered samples of family name whose labels include all of want.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawConn dials addr and returns a buffered reader for responses.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}
