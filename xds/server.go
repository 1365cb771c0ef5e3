// Package xds is Sluice's xDS control plane for Envoy fleets and proxyless gRPC clients.
//
// Translate turns a model.Snapshot into Envoy resources (pure, sorted, deterministic);
// Check runs Sluice's own consistency checks plus every resource's ValidateAll; Server
// serves the result over state-of-the-world ADS to every node that connects (ads.go),
// make-before-break and ACK-gated per stream: clusters and their endpoints are ACKed
// before any route names them, and routes stop naming a cluster (ACKed) before it goes.
// A NACK, matched to its push by nonce, holds the stream on what it has ACKed until the
// next snapshot, so no resend loop starts.
//
// Versions: a response's version_info is a hash of what it carries (of the endpoints and
// their clusters' definitions, for EDS), so unchanged resources are never sent again: a
// weight change is one RDS response per node, and an endpoint change (discovery) one EDS
// response per node (counted in sluice_xds_eds_only_pushes_total), with the CDS, LDS and
// RDS versions unchanged. Streams with the same subscription share one marshalled copy
// of every response.
//
// Shapes: a node is proxyless gRPC (ShapeGRPC) when its metadata field
// "sluice.dev/shape" is "grpc", or, with no such field, when its user_agent_name contains
// "grpc" (grpc-go sends "gRPC Go"); "sluice.dev/shape": "envoy" forces Envoy. Everything
// else is Envoy (ShapeEnvoy). Nodes are keyed "<shape>/<node id>".
package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/sluice-mesh/sluice/model"
)

// ShapeMetadataKey is the node metadata field that names a node's shape ("grpc" or
// "envoy"), overriding the user-agent guess.
const ShapeMetadataKey = "sluice.dev/shape"

// Options configures a Server.
type Options struct {
	// Logger receives the server's logs; nil: no logs.
	Logger *zap.Logger
	// Registerer receives the server's metrics; nil: a private registry.
	Registerer prometheus.Registerer
	// Address is the host:port to listen on ("127.0.0.1:0" picks a free port).
	Address string
	// TLS, when set, serves TLS (and mTLS with ClientCAFile) from files reloaded when
	// they change.
	TLS *model.TLS
	// Keepalive is the gRPC server keepalive ping interval (0: gRPC's default, 2 h).
	Keepalive time.Duration
	// AckTimeout bounds WaitApplied when its context has no deadline (0: 10 s).
	AckTimeout time.Duration
	// ShapeOf classifies nodes; nil: ShapeOf.
	ShapeOf func(*corev3.Node) Shape
}

// ShapeOf is the default node classification (see the package comment).
func ShapeOf(n *corev3.Node) Shape {
	if f, ok := n.GetMetadata().GetFields()[ShapeMetadataKey]; ok {
		switch strings.ToLower(f.GetStringValue()) {
		case "grpc", "proxyless":
			return ShapeGRPC
		case "envoy":
			return ShapeEnvoy
		}
	}
	if strings.Contains(strings.ToLower(n.GetUserAgentName()), "grpc") {
		return ShapeGRPC
	}
	return ShapeEnvoy
}

// typeNames are the short names of the four resource types served, by type URL.
var typeNames = map[string]string{
	resourcev3.ListenerType: "LDS",
	resourcev3.RouteType:    "RDS",
	resourcev3.ClusterType:  "CDS",
	resourcev3.EndpointType: "EDS",
}

// node is every stream sharing one node key ("<shape>/<node id>").
type node struct {
	key, id, cluster, userAgent string
	shape                       Shape
	streams                     map[*adsStream]struct{}
	responses                   atomic.Uint64
	// gone is when the node's last stream closed (zero while connected).
	gone time.Time
	// unknown holds the listener names the node asked for that were not served, logged once.
	unknown map[string]bool
	// last holds the state of the node's most recently closed stream, for status.
	last *adsStream
}

// Server is Sluice's xDS server. Create it with New, then Start; Apply pushes snapshots.
type Server struct {
	opts    Options
	log     *zap.Logger
	metrics *metrics
	shapeOf func(*corev3.Node) Shape

	applyMu sync.Mutex // serialises Apply
	mu      sync.Mutex
	// fleets holds each shape's current generation (read without s.mu: stream code
	// holds its own lock, which is taken after s.mu, never before).
	fleets    [2]atomic.Pointer[gen]
	unknownMu sync.Mutex
	nodes     map[string]*node
	streams   map[*adsStream]struct{}
	waiters   map[*waiter]struct{}
	// waiting counts WaitApplied calls in progress, so that streams skip s.mu when
	// nobody waits. It is raised before a call reads any stream's state.
	waiting atomic.Int64
	nextID  int64

	grpc *grpc.Server
	lis  net.Listener
	done chan struct{}
}

// New creates a Server; it does not listen until Start.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 10 * time.Second
	}
	if opts.ShapeOf == nil {
		opts.ShapeOf = ShapeOf
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		opts:    opts,
		log:     opts.Logger.Named("xds"),
		metrics: m,
		shapeOf: opts.ShapeOf,
		nodes:   map[string]*node{},
		streams: map[*adsStream]struct{}{},
		waiters: map[*waiter]struct{}{},
	}, nil
}

// Start listens on Options.Address and serves ADS until Stop or ctx ends.
func (s *Server) Start(ctx context.Context) error {
	var sopts []grpc.ServerOption
	if s.opts.TLS != nil {
		cfg, err := serverTLS(s.opts.TLS, s.log)
		if err != nil {
			return err
		}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	if s.opts.Keepalive > 0 {
		sopts = append(sopts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    s.opts.Keepalive,
			Timeout: max(s.opts.Keepalive/2, time.Second),
		}))
	}
	sopts = append(sopts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             5 * time.Second,
		PermitWithoutStream: true,
	}))
	lis, err := net.Listen("tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("xds: listen: %w", err)
	}
	gs := grpc.NewServer(sopts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, s)
	s.mu.Lock()
	s.grpc, s.lis, s.done = gs, lis, make(chan struct{})
	done := s.done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("xds server stopped", zap.Error(err))
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-done:
		}
	}()
	s.log.Info("xds server listening", zap.String("address", lis.Addr().String()), zap.Bool("tls", s.opts.TLS != nil))
	return nil
}

// Addr is the address the server listens on (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Stop closes every stream and the listener and waits for the serving goroutine. Proxies
// keep their last configuration and reconnect. Safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	gs, done := s.grpc, s.done
	s.mu.Unlock()
	if gs == nil {
		return
	}
	gs.Stop() // ADS streams never end on their own, so GracefulStop would only wait
	<-done
}

// Apply translates snap for every client shape, checks the result (Check), and pushes
// it to every connected node, make-before-break (see ads.go). An invalid snapshot is
// never sent: Apply logs it, counts it and returns the error. A snapshot whose version is
// older than the last applied one is refused; the same version again is a no-op. Apply
// does not wait for the nodes: WaitApplied does.
func (s *Server) Apply(snap *model.Snapshot) error {
	if snap == nil {
		return errors.New("xds: nil snapshot")
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if last := s.target(ShapeEnvoy); last != nil {
		if snap.Version < last.version {
			return fmt.Errorf("xds: snapshot version %d is older than the applied %d", snap.Version, last.version)
		}
		if snap.Version == last.version {
			return nil
		}
	}
	built := map[Shape]*gen{}
	var errs []error
	for _, shape := range []Shape{ShapeEnvoy, ShapeGRPC} {
		res, err := Translate(snap, shape)
		if err == nil {
			if cerr := Check(res); cerr != nil {
				err = fmt.Errorf("xds: %s resources of snapshot %d are invalid: %w", shape, snap.Version, cerr)
			}
		}
		var g *gen
		if err == nil {
			g, err = newGen(snap.Version, res, s.target(shape))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[shape] = g
	}
	if err := errors.Join(errs...); err != nil {
		s.metrics.invalid.Inc()
		s.log.Error("refusing invalid snapshot", zap.Uint64("version", snap.Version), zap.Error(err))
		return err
	}
	if endpointsOnly(built, s.target) {
		s.metrics.edsOnly.Inc()
	}
	s.mu.Lock()
	for shape, g := range built {
		s.fleets[shapeIndex(shape)].Store(g)
	}
	s.pruneLocked(time.Now())
	streams := make([]*adsStream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.metrics.version.Set(float64(snap.Version))
	s.mu.Unlock()
	// Each stream's own goroutine computes and sends its next step (or finds it already
	// holds everything, when nothing changed for it), so the fleet is served in
	// parallel and a slow node holds up nobody.
	for _, st := range streams {
		st.poke()
	}
	s.log.Debug("applied snapshot", zap.Uint64("version", snap.Version), zap.Int("streams", len(streams)))
	return nil
}

// endpointsOnly reports whether the generations built differ from the current ones in
// their endpoints alone: the push is EDS only (newGen keeps the other kinds' content, and
// so their versions, when they are unchanged).
func endpointsOnly(built map[Shape]*gen, current func(Shape) *gen) bool {
	changed := false
	for shape, g := range built {
		prev := current(shape)
		if prev == nil {
			return false
		}
		for _, k := range []kind{kindCDS, kindLDS, kindRDS} {
			if g.c[k] != prev.c[k] {
				return false
			}
		}
		changed = changed || g.c[kindEDS] != prev.c[kindEDS]
	}
	return changed
}

// target returns the current generation of a shape (nil before the first Apply).
func (s *Server) target(shape Shape) *gen { return s.fleets[shapeIndex(shape)].Load() }

func shapeIndex(shape Shape) int {
	if shape == ShapeGRPC {
		return 1
	}
	return 0
}

// forgetAfter is how long a disconnected node stays in Nodes().
const forgetAfter = 10 * time.Minute

// pruneLocked forgets nodes disconnected for longer than forgetAfter, so that a churning
// fleet does not grow the node table without bound.
func (s *Server) pruneLocked(now time.Time) {
	for key, n := range s.nodes {
		if len(n.streams) == 0 && !n.gone.IsZero() && now.Sub(n.gone) > forgetAfter {
			delete(s.nodes, key)
		}
	}
}

func (s *Server) openStream(st *adsStream, nd *corev3.Node) {
	key := string(st.shape) + "/" + nd.GetId()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	st.id = s.nextID
	n := s.nodes[key]
	if n == nil {
		n = &node{key: key, id: nd.GetId(), cluster: nd.GetCluster(), userAgent: nd.GetUserAgentName(),
			shape: st.shape, streams: map[*adsStream]struct{}{}}
		s.nodes[key] = n
	}
	st.node = n
	n.streams[st] = struct{}{}
	n.gone = time.Time{}
	s.streams[st] = struct{}{}
	if len(n.streams) == 1 {
		s.metrics.connected.Inc()
		s.log.Info("xds node connected", zap.String("node", key), zap.String("user_agent", n.userAgent))
	}
}

func (s *Server) closeStream(st *adsStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, st)
	n := st.node
	delete(n.streams, st)
	n.last = st
	if len(n.streams) == 0 {
		s.metrics.connected.Dec()
		n.gone = time.Now()
	}
	s.streamChangedLocked(st)
}

func (s *Server) firstUnknown(n *node, name string) bool {
	s.unknownMu.Lock()
	defer s.unknownMu.Unlock()
	if n.unknown[name] {
		return false
	}
	if n.unknown == nil {
		n.unknown = map[string]bool{}
	}
	n.unknown[name] = true
	return true
}

func (s *Server) countResponses(n *node, k int) { n.responses.Add(uint64(k)) }

// waiter is one WaitApplied call: the streams it still waits for.
type waiter struct {
	version uint64
	pending map[*adsStream]bool
	done    chan error // buffered; receives exactly once
}

// streamChanged updates the waiters after a stream applied a version, NACKed or closed.
func (s *Server) streamChanged(st *adsStream) {
	if s.waiting.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streamChangedLocked(st)
}

func (s *Server) streamChangedLocked(st *adsStream) {
	if len(s.waiters) == 0 {
		return
	}
	st.mu.Lock()
	applied, nacks, nackVersion := st.applied, st.nacks, st.nackVersion
	err := st.nackErrorLocked()
	st.mu.Unlock()
	_, open := s.streams[st]
	for w := range s.waiters {
		if !w.pending[st] {
			continue
		}
		switch {
		case open && nacks > 0 && nackVersion >= w.version:
			w.done <- err
			delete(s.waiters, w)
		case !open || applied >= w.version:
			delete(w.pending, st)
			if len(w.pending) == 0 {
				w.done <- nil
				delete(s.waiters, w)
			}
		}
	}
}

func (st *adsStream) nackErrorLocked() error {
	return fmt.Errorf("xds: node %s NACKed %s of version %d: %s", st.node.key, st.nackType, st.nackVersion, st.nackMessage)
}

// WaitApplied returns nil once every connected stream holds, ACKed, everything of a
// snapshot whose version is at least version (at once when none is connected). It fails
// at once, naming the node and its message, when a node NACKed a push made for a snapshot
// at least that new, and fails when ctx ends (Options.AckTimeout when ctx has no
// deadline), naming the nodes still waited for.
func (s *Server) WaitApplied(ctx context.Context, version uint64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.AckTimeout)
		defer cancel()
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	s.mu.Lock()
	w := &waiter{version: version, pending: map[*adsStream]bool{}, done: make(chan error, 1)}
	for st := range s.streams {
		st.mu.Lock()
		subscribed := slices.ContainsFunc(st.subs[:], func(sb *sub) bool { return sb != nil })
		nacked := st.nacks > 0 && st.nackVersion >= version
		err := st.nackErrorLocked()
		applied := st.applied
		st.mu.Unlock()
		if nacked {
			s.mu.Unlock()
			return err
		}
		if subscribed && applied < version {
			w.pending[st] = true
		}
	}
	if len(w.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.waiters[w] = struct{}{}
	s.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
	}
	s.mu.Lock()
	delete(s.waiters, w)
	set := map[string]bool{}
	for st := range w.pending {
		set[st.node.key] = true
	}
	s.mu.Unlock()
	select {
	case err := <-w.done: // decided while the context ended
		return err
	default:
	}
	left := make([]string, 0, len(set))
	for k := range set {
		left = append(left, k)
	}
	sort.Strings(left)
	more := ""
	if len(left) > 5 {
		more = fmt.Sprintf(" and %d more", len(left)-5)
		left = left[:5]
	}
	return fmt.Errorf("xds: version %d not ACKed by %s%s: %w", version, strings.Join(left, ", "), more, ctx.Err())
}

// AckedVersion returns the oldest version applied across connected streams that
// subscribe to routes, and false when there is none: the analyzer's actualWeight is the
// weight of that version.
func (s *Server) AckedVersion() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lo uint64
	found := false
	for st := range s.streams {
		st.mu.Lock()
		v, rds := st.applied, st.subs[kindRDS] != nil
		st.mu.Unlock()
		if !rds {
			continue
		}
		if !found || v < lo {
			lo, found = v, true
		}
	}
	return lo, found
}
