package router

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// benchTable builds the table the router benchmark uses: a 90/10 split with header
// routes, an internal-traffic marker and metrics on.
func benchTable(b *testing.B) (*Router, *listenerTable) {
	r, err := New(Options{Logger: zap.NewNop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: []model.Endpoint{{Address: "127.0.0.1:9002", Weight: 1}}},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: "127.0.0.1:9001", Weight: 1}}},
		},
		Listeners: []model.Listener{{Name: "l", Address: "127.0.0.1:8080",
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 90}, {Cluster: "canary", Weight: 10}},
				HeaderRoutes: []model.HeaderRoute{
					{Name: "beta", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-user", Value: model.StringMatch{Prefix: "beta-"}}}},
					{Name: "re", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Regex: "yes|1"}}}},
				},
				InternalCluster: "canary",
			}},
		}},
	}
	t, err := r.build(s)
	if err != nil {
		b.Fatal(err)
	}
	return r, t.listeners["127.0.0.1:8080"]
}

// benchInput is an ordinary request as decide sees it.
func benchInput() *routeInput {
	return &routeInput{host: "example.com", path: "/api/items", peer: netip.MustParseAddr("192.0.2.1"),
		header: http.Header{"User-Agent": {"bench"}, "X-User": {"alpha-1"}}}
}

// BenchmarkDecide measures the routing decision (marker check, route match, header
// routes, weighted split) for an ordinary request that falls through to the split.
func BenchmarkDecide(b *testing.B) {
	_, lt := benchTable(b)
	in := benchInput()
	b.ReportAllocs()
	for b.Loop() {
		d := lt.decide(in)
		if d.up == nil {
			b.Fatal("no cluster")
		}
	}
}

// BenchmarkDecideAndObserve adds recording the request in the analysis series.
func BenchmarkDecideAndObserve(b *testing.B) {
	_, lt := benchTable(b)
	in := benchInput()
	b.ReportAllocs()
	for b.Loop() {
		d := lt.decide(in)
		d.route.metrics[d.up].observe(http.MethodGet, http.StatusOK, reasonNone, 0.0012)
	}
}

// cannedBackend answers every request head with a fixed 128-byte response, doing as
// little as possible itself, so a benchmark measures the router.
func cannedBackend(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 128\r\n\r\n" + strings.Repeat("x", 128))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:have])
						have -= i + 4
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkFastPath proxies keep-alive GETs through the fast path (a 90/10 split, header
// routes, a marker check, metrics) from 4 raw client connections to a canned backend. Its
// allocs/op are the router's per request (the client and backend allocate nothing).
func BenchmarkFastPath(b *testing.B) {
	up := cannedBackend(b)
	addr := "127.0.0.1:0"
	r, err := New(Options{Logger: zap.NewNop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: []model.Endpoint{{Address: up, Weight: 1}}},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: up, Weight: 1}}},
		},
		Listeners: []model.Listener{{Name: "l", Address: addr,
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, Cluster: "stable",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 90}, {Cluster: "canary", Weight: 10}},
				HeaderRoutes: []model.HeaderRoute{
					{Name: "beta", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-user", Value: model.StringMatch{Prefix: "beta-"}}}},
				},
			}},
		}},
	}
	if err := r.Apply(s); err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	target := r.Addr(addr)
	req := []byte("GET /api/items HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	const conns = 4
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range conns {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(c, 4096)
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				// Status line and fields, then the 128-byte body.
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						b.Error(err)
						return
					}
					if len(line) == 2 {
						break
					}
				}
				if _, err := br.Discard(128); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkHangupWatch: what watching for a client hang-up costs a request whose answer
// comes before the first check (the usual case): one timer reset and stop.
func BenchmarkHangupWatch(b *testing.B) {
	fc, uc := &fastConn{}, &upConn{}
	b.ReportAllocs()
	for b.Loop() {
		fc.hangup.arm(fc, uc)
		fc.hangup.disarm()
	}
}
