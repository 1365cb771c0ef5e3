// Package router is Sluice's native data plane for teams without a mesh: it serves every
// Listener of a model.Snapshot, splits each route between clusters by weight (exactly, with
// a lock-free smooth weighted round robin), honours header routes, internal-traffic markers
// and sticky sessions, mirrors requests, health-checks and ejects endpoints, and measures
// each route and cluster in the series the analyzer queries.
//
// The routing table is immutable: Apply builds and validates a new one and swaps it in
// atomically, so a weight change applies to the very next request and a bad snapshot is
// refused while the old table keeps serving. Endpoint state (health, ejection, warm-up)
// is kept per cluster and address across Apply.
//
// The router faces clients that may be hostile. Every HTTP/1.1 request head is read by a
// strict parser (parse.go, RFC 9112/9110) before anything is forwarded; what it refuses
// is answered (400, 405, 417, 431, 501, 505, 408 on a slow head) and counted in
// sluice_router_client_errors_total{listener,reason}, never in the analysis series. The
// hand-written fast path (fast.go) serves plain requests; the rest go to net/http on the
// same connection after every owed response was written (fast.go explains when). Both
// front ends route and retry with one policy (policy.go) and share its hop-by-hop list;
// the fast path's transport is upstream.go, net/http's is http.Transport.
//
// Routes are chosen as Envoy chooses virtual hosts (match.go): the most specific host
// pattern wins, then the first route of that host whose path prefix matches.
//
// Metrics, registered on Options.Registerer: http_requests_total, http_errors_total and
// http_request_duration_seconds, labelled method, route, status_code and cluster, count
// analysis traffic only — never internal-marked requests from trusted sources, requests
// served by an endpoint in warm-up, or mirror copies; those go to
// sluice_router_excluded_requests_total{route,cluster,reason=internal|warmup|mirror,status_code}.
// Who is to blame decides the status: a client whose request is malformed, short or too
// slow gets a 4xx counted as a client error; a client that hangs up (or stops reading)
// before its answer is recorded with status_code="499" in http_requests_total and the
// histogram but never in http_errors_total; an upstream that fails after the request was
// sent is 502 (504 on a timeout), counted against it — a failed connect, or a reused
// connection that failed before anything was answered, is first retried once (see
// upstream.send); a cluster without endpoints is 503. Also:
// sluice_router_spoofed_marker_total{listener}, sluice_router_endpoint_healthy{cluster,endpoint},
// sluice_router_endpoint_ejections_total, sluice_router_unmatched_requests_total{listener},
// sluice_router_mirror_dropped_total, sluice_router_table_version and
// sluice_router_apply_errors_total. Label children are created with the table (GET 200
// and GET 500 per route and cluster, so error ratios are 0, not absent) and cached per
// (method, status) after first use: no per-request lookups.
package router

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// Options configures a Router. The zero value of every knob picks a sensible default.
type Options struct {
	// Logger receives the router's logs; nil: no logs.
	Logger *zap.Logger
	// Registerer receives the router's metrics; nil: a private registry.
	Registerer prometheus.Registerer
	// Now is the clock used for warm-up and ejection; nil: time.Now. Tests inject one.
	Now func() time.Time
	// MaxIdleConnsPerHost bounds idle upstream keep-alive connections per endpoint
	// (default 1024; never Go's default of 2, which halves throughput).
	MaxIdleConnsPerHost int
	// DrainTimeout bounds how long a removed listener drains in-flight requests
	// before its connections are closed (default 30s).
	DrainTimeout time.Duration
	// MaxMirrorsInFlight bounds concurrent mirror requests; beyond it mirrors are
	// dropped and counted (default 256).
	MaxMirrorsInFlight int
	// DisableFastPath serves every request through net/http and httputil.ReverseProxy
	// instead of the hand-written HTTP/1.1 path (for comparison and debugging).
	DisableFastPath bool
	// MaxMirrorBody is the largest request body copied to a mirror (default 1 MiB);
	// larger requests are forwarded but not mirrored.
	MaxMirrorBody int64
	// UpstreamIdleTimeout closes pooled upstream connections idle for longer
	// (default 60s); a sweeper runs at a quarter of it.
	UpstreamIdleTimeout time.Duration
	// StickyKeys are the HMAC keys of sticky-session cookies: the first signs, all verify
	// (see LoadStickyKeys). Empty: a random key for this process, so cookies do not
	// survive a restart.
	StickyKeys [][]byte
}

// Router serves the listeners of the latest applied snapshot.
type Router struct {
	opts    Options
	log     *zap.Logger
	now     func() time.Time
	metrics *metrics

	table atomic.Pointer[table]

	applyMu   sync.Mutex // serialises Apply and Shutdown
	servers   map[string]*listenerServer
	endpoints map[string]*endpoint
	closed    bool

	trMu       sync.Mutex
	transports map[string]http.RoundTripper
	hcClient   *http.Client

	mirrorSem chan struct{}
	bg        sync.WaitGroup // mirrors and draining listeners

	stickyKeys [][]byte
	stickyNext atomic.Uint64 // sequence of new sticky buckets

	sweepStop chan struct{}
	sweepDone chan struct{}
	sweepOnce sync.Once

	verMu   sync.Mutex
	applied uint64
	hasVer  bool
	verCh   chan struct{} // closed and replaced on every successful Apply
}

type listenerServer struct {
	addr string
	ln   net.Listener
	srv  *http.Server
	fast *fastListener
	done chan struct{}
}

// New returns a Router that serves nothing until the first Apply.
func New(opts Options) (*Router, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 1024
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.MaxMirrorsInFlight <= 0 {
		opts.MaxMirrorsInFlight = 256
	}
	if opts.MaxMirrorBody <= 0 {
		opts.MaxMirrorBody = 1 << 20
	}
	if opts.UpstreamIdleTimeout <= 0 {
		opts.UpstreamIdleTimeout = 60 * time.Second
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	keys := opts.StickyKeys
	if len(keys) == 0 {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("router sticky key: %w", err)
		}
		keys = [][]byte{k}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("router metrics: %w", err)
	}
	r := &Router{
		opts:       opts,
		log:        opts.Logger,
		now:        now,
		metrics:    m,
		servers:    map[string]*listenerServer{},
		endpoints:  map[string]*endpoint{},
		transports: map[string]http.RoundTripper{},
		hcClient: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		mirrorSem:  make(chan struct{}, opts.MaxMirrorsInFlight),
		verCh:      make(chan struct{}),
		stickyKeys: keys,
		sweepStop:  make(chan struct{}),
		sweepDone:  make(chan struct{}),
	}
	var start [8]byte
	rand.Read(start[:])
	r.stickyNext.Store(binary.LittleEndian.Uint64(start[:]) % 100)
	go r.sweep()
	return r, nil
}

// ErrClosed is returned by Apply after Shutdown.
var ErrClosed = errors.New("router: shut down")

// Apply builds and validates a routing table from s, binds the addresses of new
// listeners, swaps the table in atomically and closes (draining) listeners that s no
// longer declares. On any error nothing changes and the previous table keeps serving.
// A listener's limits are fixed when its address is first bound.
func (r *Router) Apply(s *model.Snapshot) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if r.closed {
		return ErrClosed
	}
	t, err := r.build(s)
	if err != nil {
		r.metrics.applyErr.Inc()
		r.log.Error("snapshot refused, previous table keeps serving", zap.Error(err))
		return fmt.Errorf("router: snapshot refused: %w", err)
	}
	var fresh []*listenerServer
	for addr, lt := range t.listeners {
		if _, ok := r.servers[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, f := range fresh {
				f.ln.Close()
			}
			r.metrics.applyErr.Inc()
			r.log.Error("snapshot refused, previous table keeps serving", zap.Error(err))
			return fmt.Errorf("router: snapshot refused: listener %s: %w", lt.name, err)
		}
		fresh = append(fresh, r.newServer(addr, ln, lt.limits))
	}
	for _, u := range t.upstreams {
		for _, e := range u.eps {
			e.configure(&u.cfg)
			e.startHealthCheck(u.cfg.HealthCheck, r.hcClient)
		}
	}
	r.table.Store(t)
	for _, ls := range fresh {
		r.servers[ls.addr] = ls
		go ls.serve()
		r.log.Info("listener bound", zap.String("address", ls.ln.Addr().String()))
	}
	for key, e := range r.endpoints {
		if _, ok := t.endpoints[key]; !ok {
			e.stopHealthCheck()
			e.pool.closeAll()
			r.metrics.healthy.DeleteLabelValues(e.cluster, e.addr)
		}
	}
	r.endpoints = t.endpoints
	for addr, ls := range r.servers {
		if _, ok := t.listeners[addr]; ok {
			continue
		}
		delete(r.servers, addr)
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), r.opts.DrainTimeout)
			defer cancel()
			ls.shutdown(ctx)
		}()
	}
	r.metrics.version.Set(float64(t.version))
	r.verMu.Lock()
	r.applied, r.hasVer = t.version, true
	close(r.verCh)
	r.verCh = make(chan struct{})
	r.verMu.Unlock()
	r.log.Info("routing table applied", zap.Uint64("version", t.version))
	return nil
}

// WaitApplied returns nil once a snapshot with Version >= version serves traffic (the
// router applies synchronously, so after a successful Apply this returns at once).
func (r *Router) WaitApplied(ctx context.Context, version uint64) error {
	for {
		r.verMu.Lock()
		ok := r.hasVer && r.applied >= version
		ch := r.verCh
		r.verMu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Ready reports whether a snapshot is applied and every listener is bound.
func (r *Router) Ready() bool {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	t := r.table.Load()
	if t == nil || r.closed {
		return false
	}
	for addr := range t.listeners {
		if r.servers[addr] == nil {
			return false
		}
	}
	return true
}

// Addr returns the bound address of the listener configured with address addr (useful
// when addr has port 0), or "" when no such listener is bound.
func (r *Router) Addr(addr string) string {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if ls := r.servers[addr]; ls != nil {
		return ls.ln.Addr().String()
	}
	return ""
}

// HealthHandler serves /healthz (200 while the process runs) and /readyz (200 once Ready,
// else 503), for the admin server.
func (r *Router) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Ready() {
			http.Error(w, "not ready: no snapshot applied or a listener is not bound", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// Shutdown stops accepting connections on every listener and waits for in-flight
// requests (and mirrors) to finish, or for ctx to end, after which remaining
// connections are closed. Apply fails afterwards.
func (r *Router) Shutdown(ctx context.Context) error {
	r.applyMu.Lock()
	r.closed = true
	servers := r.servers
	r.servers = map[string]*listenerServer{}
	eps := r.endpoints
	r.applyMu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, len(servers))
	for _, ls := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ls.shutdown(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	r.stopSweeper()
	for _, e := range eps {
		e.stopHealthCheck()
		e.pool.closeAll()
	}
	done := make(chan struct{})
	go func() { r.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	r.trMu.Lock()
	for _, t := range r.transports {
		if c, ok := t.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
	r.trMu.Unlock()
	r.hcClient.CloseIdleConnections()
	close(errs)
	return errors.Join(<-errs, ctx.Err())
}

func (r *Router) newServer(addr string, ln net.Listener, lim limits) *listenerServer {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true) // gRPC clients speak h2c with prior knowledge
	ls := &listenerServer{addr: addr, ln: ln, done: make(chan struct{})}
	ls.fast = &fastListener{r: r, addr: addr, ln: ln, handoff: newChanListener(ln.Addr()), conns: map[*fastConn]struct{}{}}
	ls.srv = &http.Server{
		Handler:           &listenerHandler{r: r, addr: addr, proxy: r.newProxy()},
		MaxHeaderBytes:    lim.maxHead,
		IdleTimeout:       lim.idle,
		ReadHeaderTimeout: lim.header,
		Protocols:         &p,
		ErrorLog:          zap.NewStdLog(r.log.Named("http")),
		ConnContext:       handedOffContext,
	}
	return ls
}

// serve accepts on the fast path, which hands net/http the connections it needs to.
func (ls *listenerServer) serve() {
	defer close(ls.done)
	go ls.fast.serve()
	ls.srv.Serve(ls.fast.handoff)
}

func (ls *listenerServer) shutdown(ctx context.Context) error {
	ls.fast.shutdown(ctx.Done())
	err := ls.srv.Shutdown(ctx)
	if err != nil {
		ls.srv.Close()
	}
	<-ls.done
	return err
}
