package parity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluice-mesh/sluice/router"
	"github.com/sluice-mesh/sluice/xds"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// ---------------------------------------------------------------------------------------
// The router, black box: real HTTP requests from the right peer address to a real
// router, answered by real backends.

type routerPlane struct {
	rt      *router.Router
	reg     *prometheus.Registry
	addr    map[string]string       // listener name → address
	clients map[string]*http.Client // peer address → client bound to it
	counted float64                 // requests the router has recorded so far
}

func newRouterPlane(t *testing.T, listeners map[string]string) *routerPlane {
	t.Helper()
	reg := prometheus.NewRegistry()
	rt, err := router.New(router.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p := &routerPlane{rt: rt, reg: reg, addr: listeners, clients: map[string]*http.Client{}}
	for _, peer := range []string{trustedPeer, untrustedPeer} {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer)}, Timeout: 5 * time.Second}
		p.clients[peer] = &http.Client{
			Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32, DisableCompression: true},
			Timeout:   10 * time.Second,
		}
	}
	return p
}

// send sends r with the case's name and returns the outcome, and the Set-Cookie fields.
func (p *routerPlane) send(r request, name string) (outcome, []string, error) {
	path, query, _ := strings.Cut(r.path, "?")
	req := &http.Request{
		Method: r.method,
		// Opaque carries the target as written: not decoded, not re-encoded.
		URL:    &url.URL{Scheme: "http", Host: p.addr[r.listener], Opaque: path, RawQuery: query},
		Host:   r.host,
		Header: r.header.Clone(),
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set(caseHeader, name)
	resp, err := p.clients[r.peer].Do(req)
	if err != nil {
		return "", nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	b := resp.Header.Get(backendHeader)
	switch {
	case resp.StatusCode == http.StatusOK && b != "":
		return b, resp.Header.Values("Set-Cookie"), nil
	case b == "" && (resp.StatusCode == 404 || resp.StatusCode == 503 || resp.StatusCode == 504):
		return strconv.Itoa(resp.StatusCode), nil, nil
	}
	return fmt.Sprintf("HTTP %d from %q", resp.StatusCode, b), nil, nil
}

// decide sends the case's request n times (at once when concurrent) and reads what
// the router recorded: the share of requests it counted as internal traffic.
func (p *routerPlane) decide(t *testing.T, c parityCase, n int) decision {
	t.Helper()
	before := p.tally(t)
	outcomes, err := repeat(n, c.concurrent, func() (outcome, error) {
		o, _, err := p.send(c.req, c.name)
		return o, err
	})
	d := decision{n: n, shares: tally(outcomes)}
	if err != nil {
		d.detail = err.Error()
		return d
	}
	// The router records a request as its response completes: wait until all are.
	p.counted += float64(n)
	var after routerTally
	deadline := time.Now().Add(10 * time.Second)
	for after = p.tally(t); after.total() < p.counted; after = p.tally(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the router recorded %v of %v requests", c.name, after.total(), p.counted)
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.internal = (after.internal - before.internal) / float64(n)
	return d
}

// routerTally is what the router's metrics count: analysed requests, internal ones (kept
// out of analysis) and unmatched ones (404).
type routerTally struct{ analysed, internal, unmatched float64 }

func (r routerTally) total() float64 { return r.analysed + r.internal + r.unmatched }

func (p *routerPlane) tally(t *testing.T) routerTally {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var r routerTally
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch mf.GetName() {
			case "http_requests_total":
				r.analysed += v
			case "sluice_router_unmatched_requests_total":
				r.unmatched += v
			case "sluice_router_excluded_requests_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "internal" {
						r.internal += v
					}
				}
			}
		}
	}
	return r
}

// signedCookie returns a sticky cookie ("name=value") the router issued on listener for
// a client it sent to cluster.
func (p *routerPlane) signedCookie(t *testing.T, listener, host, cluster string) string {
	t.Helper()
	for range 200 {
		o, cookies, err := p.send(get(host, "/").on(listener), "cookie")
		if err != nil {
			t.Fatal(err)
		}
		p.counted++
		if o == cluster && len(cookies) == 1 {
			v, _, _ := strings.Cut(cookies[0], ";")
			return v
		}
	}
	t.Fatalf("no sticky cookie for %s in 200 requests", cluster)
	return ""
}

// ---------------------------------------------------------------------------------------
// Envoy: Sluice's xDS output for Envoy, received over a real ADS stream by the strict fake
// Envoy (warming, ACKs), deciding each request with Envoy's documented matching.

type envoyPlane struct{ c *xdstest.Client }

// decide asks the fake Envoy once for every value 0..99 of its random draw, which picks
// weighted clusters and runtime fractions: the shares are exact.
func (p *envoyPlane) decide(c parityCase) decision {
	const n = 100
	h := http.Header{}
	for k, vs := range c.req.header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	var sleep time.Duration
	if v := h.Get(sleepHeader); v != "" {
		sleep, _ = time.ParseDuration(v)
	}
	outcomes := make([]outcome, n)
	internal := 0
	mirrors := map[string]bool{}
	for i := range n {
		res := p.c.Match(c.req.listener, xdstest.Request{
			Host: c.req.host, Method: c.req.method, Path: c.req.path, Header: h,
			Peer: netip.MustParseAddr(c.req.peer), Random: uint64(i),
		})
		cluster := res.Cluster
		if strings.HasSuffix(cluster, xds.InternalSuffix) {
			cluster = strings.TrimSuffix(cluster, xds.InternalSuffix)
			internal++
		}
		switch {
		case res.Status != http.StatusOK:
			outcomes[i] = strconv.Itoa(res.Status)
		case sleep > 0 && res.Timeout > 0 && res.Timeout < sleep:
			outcomes[i] = "504"
		default:
			outcomes[i] = cluster
		}
		for _, m := range res.Mirrors {
			mirrors[strings.TrimSuffix(m, xds.MirrorSuffix)] = true
		}
	}
	d := decision{n: n, shares: tally(outcomes), internal: float64(internal) / n, mirrors: []string{}}
	for m := range mirrors {
		d.mirrors = append(d.mirrors, m)
	}
	sort.Strings(d.mirrors)
	return d
}

// ---------------------------------------------------------------------------------------
// Proxyless gRPC: real grpc-go clients with grpc-go's own xDS resolver (target
// xds:///NAME) against Sluice's xDS server, calling the same backends.

type grpcPlane struct {
	resolver resolver.Builder
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn // by target and authority
}

func newGRPCPlane(t *testing.T, xdsAddr string) *grpcPlane {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "parity-grpc", "cluster": "parity"}
	}`, xdsAddr)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	p := &grpcPlane{resolver: rb, conns: map[string]*grpc.ClientConn{}}
	t.Cleanup(p.close)
	return p
}

// conn returns the client of xds:///target, with the given :authority ("" : the target).
func (p *grpcPlane) conn(target, authority string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := target + " " + authority
	if cc := p.conns[key]; cc != nil {
		return cc, nil
	}
	opts := []grpc.DialOption{grpc.WithResolvers(p.resolver), grpc.WithTransportCredentials(insecure.NewCredentials())}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	cc, err := grpc.NewClient("xds:///"+target, opts...)
	if err != nil {
		return nil, err
	}
	p.conns[key] = cc
	return cc, nil
}

func (p *grpcPlane) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		_ = cc.Close()
	}
}

// call makes one RPC of the case and returns its outcome.
func (p *grpcPlane) call(c parityCase, g grpcCall) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, g.md)
	cc, err := p.conn(g.target, g.authority)
	if err != nil {
		return "", err
	}
	var hdr metadata.MD
	err = cc.Invoke(ctx, c.req.path, &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&hdr))
	st := status.Convert(err)
	switch {
	case err == nil && len(hdr.Get(backendHeader)) == 1:
		return hdr.Get(backendHeader)[0], nil
	case st.Code() == codes.DeadlineExceeded:
		return "504", nil
	case st.Code() == codes.Unavailable && (strings.Contains(st.Message(), "no matched route") || strings.Contains(st.Message(), "name resolver error")):
		// No route for the path, or none for the name: no virtual host for the
		// :authority, or no listener of that name, fails the channel's resolver, and RPCs
		// carry its error ("could not find VirtualHost …", or "produced zero addresses").
		return "404", nil
	case st.Code() == codes.Unavailable:
		return "503", nil
	}
	return "", fmt.Errorf("%v (header %v)", err, hdr)
}

func (p *grpcPlane) decide(c parityCase, g grpcCall, n int) decision {
	outcomes, err := repeat(n, c.concurrent, func() (outcome, error) { return p.call(c, g) })
	d := decision{n: n, shares: tally(outcomes), internal: -1}
	if err != nil {
		d.detail = err.Error()
	}
	return d
}

// repeat runs one n times, one after the other or all at once, and returns the outcomes
// and the errors.
func repeat(n int, concurrent bool, one func() (outcome, error)) ([]outcome, error) {
	outcomes := make([]outcome, n)
	errs := make([]error, n)
	if !concurrent {
		for i := range n {
			outcomes[i], errs[i] = one()
		}
		return outcomes, errors.Join(errs...)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); outcomes[i], errs[i] = one() }()
	}
	wg.Wait()
	return outcomes, errors.Join(errs...)
}

// grpcCall is a case's request as a proxyless client makes it.
type grpcCall struct {
	target, authority string
	md                metadata.MD
}

// servedNames are the xds:/// names Sluice serves proxyless clients: the Listeners' names
// and their exact route hosts.
var servedNames = map[string]bool{"web": true, "shop": true, "api.example.com": true, "down.example.com": true,
	"aborted.example.com": true, "shop.example.com": true}

// asGRPC is the case's request as a proxyless client makes it: it dials the host when
// Sluice serves that name (with the port when the request has one), else the
// Listener's name with the host as :authority; the header fields are metadata; and a
// client on the trusted peer is a tester that marks itself internal (x-envoy-internal:
// true), since a proxyless client is its own peer.
func asGRPC(r request) grpcCall {
	g := grpcCall{target: r.host, md: metadata.MD{}}
	if h, _, err := net.SplitHostPort(r.host); (err == nil && !servedNames[h]) || (err != nil && !servedNames[r.host]) {
		g.target, g.authority = r.listener, r.host
	}
	for k, vs := range r.header {
		g.md[strings.ToLower(k)] = append(g.md[strings.ToLower(k)], vs...)
	}
	if r.peer == trustedPeer {
		g.md.Set("x-envoy-internal", "true")
	}
	return g
}

// waitEnvoy waits until the fake Envoy node holds version v of everything, and that it
// saw no 503 window and sent no NACK on the way.
func waitEnvoy(t *testing.T, s *xds.Server, c *xdstest.Client, node string, v uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		applied := false
		for _, n := range s.Nodes() {
			if n.ID == node && n.Connected && n.AppliedVersion == v {
				applied = true
			}
		}
		if applied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake Envoy %s did not apply version %d: %+v", node, v, c.Stats())
		}
		select {
		case <-c.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if st := c.Stats(); len(st.Violations) > 0 || st.NACKs > 0 || len(st.Warming) > 0 {
		t.Fatalf("fake Envoy: violations %q, %d NACKs (%s), warming %v", st.Violations, st.NACKs, st.LastNACK, st.Warming)
	}
}

func envoyNode(id string) *corev3.Node { return &corev3.Node{Id: id, Cluster: "edge"} }
