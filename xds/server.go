// Package xds is Sluice's xDS control plane for Envoy fleets and proxyless gRPC clients.
//
// Translate turns a model.Snapshot into Envoy resources (pure, sorted, deterministic);
// Check runs Sluice's own consistency checks plus every resource's ValidateAll; Server
// serves the result over state-of-the-world ADS to every node that connects, tracks each
// node's sent/ACKed/NACKed versions, and puts a node that NACKs back on the resources it
// last ACKed at once, so no resend loop starts.
//
// Versions: every resource type carries, as its version_info, the model version at which
// its content last changed, except RDS, whose version is always the snapshot's version.
// So a weight change is an RDS update only, and a node's ACKed RDS version is the model
// version it has applied.
//
// Shapes: a node is proxyless gRPC (ShapeGRPC) when its metadata field
// "sluice.dev/shape" is "grpc", or, with no such field, when its user_agent_name contains
// "grpc" (grpc-go sends "gRPC Go"); "sluice.dev/shape": "envoy" forces Envoy. Everything
// else is Envoy (ShapeEnvoy). Each node is cached under "<shape>/<node id>".
package xds

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

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

// servedTypes lists the served types in ADS order.
var servedTypes = []types.ResponseType{types.Cluster, types.Endpoint, types.Listener, types.Route}

// historyLen is how many versions of each type's resources are remembered for reverts.
const historyLen = 32

// fleet is the current resources of one shape.
type fleet struct {
	snap    *cachev3.Snapshot
	version uint64
	hashes  [types.UnknownType][32]byte
	// history of sent resources by type and version string, for reverts.
	history [types.UnknownType][]cachev3.Resources
}

func (f *fleet) lookup(t types.ResponseType, version string) (cachev3.Resources, bool) {
	for i := len(f.history[t]) - 1; i >= 0; i-- {
		if f.history[t][i].Version == version {
			return f.history[t][i], true
		}
	}
	return cachev3.Resources{}, false
}

// typeState is one node's state for one resource type.
type typeState struct {
	sent, acked, nacked string
	nackMessage         string
	sentAt              time.Time
	nackAt              time.Time
}

// node is the state of every stream sharing one cache key.
type node struct {
	key, id, cluster, userAgent string
	shape                       Shape
	streams                     int
	responses                   uint64
	nacks                       uint64
	reverted                    bool
	// nackVersion is the model version the node was on when it last NACKed.
	nackVersion uint64
	nackType    string
	nackMessage string
	// rdsAcked is the snapshot version of the routes the node last ACKed (0: none).
	rdsAcked uint64
	// gone is when the node's last stream closed (zero while connected).
	gone  time.Time
	types map[string]*typeState
	// current is the snapshot the node is set to; lastGood the newest one it ACKed in
	// full (every type it subscribes to at that snapshot's version).
	current, lastGood *cachev3.Snapshot
}

// setLocked sets a node's snapshot in the cache, answering its open watches.
func (s *Server) setLocked(n *node, snap *cachev3.Snapshot) {
	n.current = snap
	s.setCache(n.key, snap)
}

// fullyACKed reports whether the node holds every type of its current snapshot.
func (n *node) fullyACKed() bool {
	if n.current == nil {
		return false
	}
	for url, ts := range n.types {
		t := cachev3.GetResponseType(url)
		if ts.acked != n.current.Resources[t].Version {
			return false
		}
	}
	return true
}

// Server is Sluice's xDS server. Create it with New, then Start; Apply pushes snapshots.
type Server struct {
	opts    Options
	log     *zap.Logger
	cache   cachev3.SnapshotCache
	metrics *metrics
	shapeOf func(*corev3.Node) Shape

	// epoch prefixes every version string, so that a restarted control plane, whose
	// snapshot versions start again, never matches what a client kept from before.
	epoch string

	applyMu sync.Mutex // serialises Apply
	mu      sync.Mutex
	fleets  map[Shape]*fleet
	nodes   map[string]*node
	streams map[int64]string // stream id → node key
	waiters map[*waiter]struct{}

	grpc   *grpc.Server
	lis    net.Listener
	cancel context.CancelFunc
	done   chan struct{}
}

// keyHash maps a node to its cache key.
type keyHash struct{ shapeOf func(*corev3.Node) Shape }

func (h keyHash) ID(n *corev3.Node) string { return string(h.shapeOf(n)) + "/" + n.GetId() }

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
	s := &Server{
		opts:    opts,
		log:     opts.Logger.Named("xds"),
		metrics: m,
		shapeOf: opts.ShapeOf,
		fleets:  map[Shape]*fleet{ShapeEnvoy: {}, ShapeGRPC: {}},
		nodes:   map[string]*node{},
		streams: map[int64]string{},
		waiters: map[*waiter]struct{}{},
		epoch:   strconv.FormatInt(time.Now().UnixNano(), 36),
	}
	// Not "ADS mode": in that mode go-control-plane answers a request only when it names
	// every resource of its type in the snapshot, and proxyless clients name only what
	// they use (one listener, the clusters with a weight). Apply orders updates itself.
	s.cache = cachev3.NewSnapshotCache(false, keyHash{s.shapeOf}, cacheLogger{s.log.Sugar()})
	return s, nil
}

// cacheLogger drops go-control-plane's per-request info and debug lines.
type cacheLogger struct{ l *zap.SugaredLogger }

func (cacheLogger) Debugf(string, ...any)            {}
func (cacheLogger) Infof(string, ...any)             {}
func (c cacheLogger) Warnf(f string, a ...any)       { c.l.Warnf(f, a...) }
func (c cacheLogger) Errorf(format string, a ...any) { c.l.Errorf(format, a...) }

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
	sctx, cancel := context.WithCancel(context.Background())
	// Ordered ADS: one response channel per stream, sent in order, no reflect.Select.
	xs := serverv3.NewServer(sctx, s.cache, s.callbacks(), sotwv3.WithOrderedADS(),
		sotwv3.WithLogger(cacheLogger{s.log.Sugar()}))
	gs := grpc.NewServer(sopts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	s.mu.Lock()
	s.grpc, s.lis, s.cancel, s.done = gs, lis, cancel, make(chan struct{})
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
	gs, cancel, done := s.grpc, s.cancel, s.done
	s.mu.Unlock()
	if gs == nil {
		return
	}
	cancel()
	gs.Stop() // ADS streams never end on their own, so GracefulStop would only wait
	<-done
}

// Apply translates snap for every client shape, checks the result (Check), and pushes
// it to every connected node. An invalid snapshot is never sent: Apply logs it, counts
// it and returns the error. A snapshot whose version is older than the last applied one
// is refused; the same version again is a no-op.
func (s *Server) Apply(snap *model.Snapshot) error {
	if snap == nil {
		return errors.New("xds: nil snapshot")
	}
	built := map[Shape]*Resources{}
	var errs []error
	for _, shape := range []Shape{ShapeEnvoy, ShapeGRPC} {
		res, err := Translate(snap, shape)
		if err == nil {
			if cerr := Check(res); cerr != nil {
				err = fmt.Errorf("xds: %s resources of snapshot %d are invalid: %w", shape, snap.Version, cerr)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[shape] = res
	}
	if err := errors.Join(errs...); err != nil {
		s.metrics.invalid.Inc()
		s.log.Error("refusing invalid snapshot", zap.Uint64("version", snap.Version), zap.Error(err))
		return err
	}

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.fleets[ShapeEnvoy].version
	if s.fleets[ShapeEnvoy].snap != nil {
		if snap.Version < last {
			return fmt.Errorf("xds: snapshot version %d is older than the applied %d", snap.Version, last)
		}
		if snap.Version == last {
			return nil
		}
	}
	stage := map[Shape]*cachev3.Snapshot{}
	for shape, res := range built {
		stage[shape] = s.fleets[shape].update(s.epoch, snap.Version, res)
	}
	s.pruneLocked(time.Now())
	type push struct {
		key         string
		stage, full *cachev3.Snapshot
	}
	pushes := make([]push, 0, len(s.nodes))
	for _, n := range s.nodes {
		if n.streams == 0 {
			continue
		}
		n.reverted = false
		n.current = s.fleets[n.shape].snap
		pushes = append(pushes, push{n.key, stage[n.shape], n.current})
	}
	s.metrics.version.Set(float64(snap.Version))
	s.mu.Unlock()
	// Outside s.mu, so that ACKs of the first nodes are processed while the last are
	// still being sent. Clusters and endpoints first, then listeners and routes, so that
	// a route never names a cluster the node has not been sent yet (make before break).
	// A node that connects meanwhile already got the new fleet snapshot on connect; a
	// node that NACKs meanwhile was reverted from an older one, which this supersedes.
	for _, p := range pushes {
		if p.stage != nil {
			s.setCache(p.key, p.stage)
		}
		s.setCache(p.key, p.full)
	}
	s.mu.Lock() // for the deferred Unlock
	s.log.Debug("applied snapshot", zap.Uint64("version", snap.Version), zap.Int("nodes", len(pushes)))
	return nil
}

// forgetAfter is how long a disconnected node stays in Nodes() (and in the cache).
const forgetAfter = 10 * time.Minute

// pruneLocked forgets nodes disconnected for longer than forgetAfter, so that a churning
// fleet does not grow the node table and the cache without bound.
func (s *Server) pruneLocked(now time.Time) {
	for key, n := range s.nodes {
		if n.streams == 0 && !n.gone.IsZero() && now.Sub(n.gone) > forgetAfter {
			delete(s.nodes, key)
			s.cache.ClearSnapshot(key)
		}
	}
}

func (s *Server) setCache(key string, snap *cachev3.Snapshot) {
	if err := s.cache.SetSnapshot(context.Background(), key, snap); err != nil {
		s.log.Error("set snapshot", zap.String("node", key), zap.Error(err))
	}
}

// update installs new resources, keeping a type's version when its content is unchanged
// (RDS always takes the new version). When clusters or endpoints changed it returns the
// intermediate snapshot to set first: new clusters and endpoints with the old listeners
// and routes.
func (f *fleet) update(epoch string, version uint64, res *Resources) *cachev3.Snapshot {
	items := [types.UnknownType][]types.Resource{}
	for _, l := range res.Listeners {
		items[types.Listener] = append(items[types.Listener], l)
	}
	for _, r := range res.Routes {
		items[types.Route] = append(items[types.Route], r)
	}
	for _, c := range res.Clusters {
		items[types.Cluster] = append(items[types.Cluster], c)
	}
	for _, e := range res.Endpoints {
		items[types.Endpoint] = append(items[types.Endpoint], e)
	}
	snap := &cachev3.Snapshot{}
	v := epoch + "-" + strconv.FormatUint(version, 10)
	for _, t := range servedTypes {
		h := hashResources(items[t])
		if f.snap != nil && t != types.Route && h == f.hashes[t] {
			snap.Resources[t] = f.snap.Resources[t]
			continue
		}
		f.hashes[t] = h
		snap.Resources[t] = cachev3.NewResources(v, items[t])
		f.history[t] = append(f.history[t], snap.Resources[t])
		if len(f.history[t]) > historyLen {
			f.history[t] = f.history[t][len(f.history[t])-historyLen:]
		}
	}
	var stage *cachev3.Snapshot
	if old := f.snap; old != nil && (old.Resources[types.Cluster].Version != snap.Resources[types.Cluster].Version ||
		old.Resources[types.Endpoint].Version != snap.Resources[types.Endpoint].Version) {
		stage = &cachev3.Snapshot{}
		*stage = *snap
		stage.Resources[types.Listener] = old.Resources[types.Listener]
		stage.Resources[types.Route] = old.Resources[types.Route]
	}
	f.snap, f.version = snap, version
	return stage
}

func hashResources(items []types.Resource) [32]byte {
	h := sha256.New()
	mo := proto.MarshalOptions{Deterministic: true}
	for _, r := range items {
		b, err := mo.Marshal(r)
		if err != nil {
			panic(err)
		}
		h.Write([]byte(strconv.Itoa(len(b))))
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// waiter is one WaitApplied call: the nodes it still waits for.
type waiter struct {
	version uint64
	pending map[string]bool
	done    chan error // buffered; receives exactly once
}

// nodeChangedLocked updates the waiters that wait for n after an ACK, a NACK or a
// disconnection: O(waiters) per event, never a scan of every node.
func (s *Server) nodeChangedLocked(n *node) {
	for w := range s.waiters {
		if !w.pending[n.key] {
			continue
		}
		switch {
		case n.streams > 0 && n.nacks > 0 && n.nackVersion >= w.version:
			w.done <- nackError(n)
			delete(s.waiters, w)
		case n.streams == 0 || n.rdsAcked >= w.version:
			delete(w.pending, n.key)
			if len(w.pending) == 0 {
				w.done <- nil
				delete(s.waiters, w)
			}
		}
	}
}

func nackError(n *node) error {
	return fmt.Errorf("xds: node %s NACKed %s of version %d: %s", n.key, n.nackType, n.nackVersion, n.nackMessage)
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error { return nil },
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.mu.Lock()
			defer s.mu.Unlock()
			key, ok := s.streams[id]
			if !ok {
				return
			}
			delete(s.streams, id)
			if n := s.nodes[key]; n != nil {
				n.streams--
				if n.streams == 0 {
					s.metrics.connected.Dec()
					n.gone = time.Now()
				}
				s.nodeChangedLocked(n)
			}
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return errors.New("sluice serves state-of-the-world ADS only; use api_type GRPC")
		},
		StreamRequestFunc:  s.onRequest,
		StreamResponseFunc: s.onResponse,
		FetchRequestFunc: func(context.Context, *discoverygrpc.DiscoveryRequest) error {
			return errors.New("sluice serves ADS streams only")
		},
	}
}

// onRequest runs before go-control-plane opens a watch for the request, so a node's
// snapshot set here answers this very request.
func (s *Server) onRequest(id int64, req *discoverygrpc.DiscoveryRequest) error {
	tm, ok := s.metrics.byType[req.GetTypeUrl()]
	if !ok {
		return nil // other types get nothing
	}
	tname := tm.name
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.streams[id]
	if !ok {
		key = keyHash{s.shapeOf}.ID(req.GetNode())
		s.streams[id] = key
		n := s.nodes[key]
		if n == nil {
			nd := req.GetNode()
			n = &node{key: key, id: nd.GetId(), cluster: nd.GetCluster(), userAgent: nd.GetUserAgentName(),
				shape: s.shapeOf(nd), types: map[string]*typeState{}}
			s.nodes[key] = n
		}
		n.streams++
		n.gone = time.Time{}
		if n.streams == 1 {
			s.metrics.connected.Inc()
			// Serve every node that connects: its fleet's current resources.
			n.reverted = false
			if f := s.fleets[n.shape]; f.snap != nil {
				s.setLocked(n, f.snap)
			}
			s.log.Info("xds node connected", zap.String("node", key), zap.String("user_agent", n.userAgent))
		}
	}
	n := s.nodes[key]
	ts := n.types[req.GetTypeUrl()]
	if ts == nil {
		ts = &typeState{}
		n.types[req.GetTypeUrl()] = ts
	}
	if req.GetResponseNonce() == "" {
		return nil // a subscription, not an answer
	}
	now := time.Now()
	if e := req.GetErrorDetail(); e != nil {
		ts.nacked, ts.nackMessage, ts.nackAt = ts.sent, e.GetMessage(), now
		n.nacks++
		n.nackVersion = s.fleets[n.shape].version
		if n.current != nil {
			// the snapshot the node was on when it NACKed: RDS always carries its version
			n.nackVersion = s.modelVersion(n.current.Resources[types.Route].Version)
		}
		n.nackType, n.nackMessage = tname, e.GetMessage()
		tm.nacks.Inc()
		s.log.Warn("xds NACK", zap.String("node", key), zap.String("type", tname),
			zap.String("version", ts.sent), zap.String("message", e.GetMessage()))
		s.revertLocked(n)
		s.nodeChangedLocked(n)
		return nil
	}
	if req.GetVersionInfo() != ts.acked {
		ts.acked = req.GetVersionInfo()
		if req.GetVersionInfo() == ts.sent && !ts.sentAt.IsZero() {
			tm.latency.Observe(now.Sub(ts.sentAt).Seconds())
		}
		tm.acks.Inc()
		if !n.reverted && n.fullyACKed() {
			n.lastGood = n.current
		}
		if req.GetTypeUrl() == resourcev3.RouteType {
			n.rdsAcked = s.modelVersion(ts.acked)
			s.nodeChangedLocked(n)
		}
	}
	return nil
}

// revertLocked puts a node back on the last snapshot it ACKed in full; the NACKed type's
// version there is the one the client still holds, so nothing is resent for it and no
// NACK loop starts. Without such a snapshot the node is held on exactly what it has
// ACKed, type by type. Either way it stays there until the next Apply.
func (s *Server) revertLocked(n *node) {
	n.reverted = true
	if n.lastGood != nil {
		s.setLocked(n, n.lastGood)
		return
	}
	f := s.fleets[n.shape]
	snap := &cachev3.Snapshot{}
	for _, t := range servedTypes {
		url, _ := cachev3.GetResponseTypeURL(t)
		acked := ""
		if ts := n.types[url]; ts != nil {
			acked = ts.acked
		}
		if acked == "" {
			snap.Resources[t] = cachev3.NewResources("", nil)
			continue
		}
		if r, ok := f.lookup(t, acked); ok {
			snap.Resources[t] = r
		} else if f.snap != nil {
			snap.Resources[t] = f.snap.Resources[t] // too old to remember: stay current
		}
	}
	s.setLocked(n, snap)
}

func (s *Server) onResponse(_ context.Context, id int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	tm, ok := s.metrics.byType[req.GetTypeUrl()]
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[s.streams[id]]
	if n == nil {
		return
	}
	ts := n.types[req.GetTypeUrl()]
	if ts == nil {
		ts = &typeState{}
		n.types[req.GetTypeUrl()] = ts
	}
	ts.sent, ts.sentAt = resp.GetVersionInfo(), time.Now()
	n.responses++
	tm.responses.Inc()
}

// WaitApplied returns nil once every connected node that subscribes to routes has ACKed
// the RDS of a snapshot whose version is at least version (at once when none is
// connected). It fails at once, naming the node and its message, when a node NACKed a
// snapshot at least that new, and fails when ctx ends (Options.AckTimeout when ctx has no
// deadline), naming the nodes still waited for.
func (s *Server) WaitApplied(ctx context.Context, version uint64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.AckTimeout)
		defer cancel()
	}
	s.mu.Lock()
	pending, err := s.pendingLocked(version)
	if err != nil || len(pending) == 0 {
		s.mu.Unlock()
		return err
	}
	w := &waiter{version: version, pending: map[string]bool{}, done: make(chan error, 1)}
	for _, k := range pending {
		w.pending[k] = true
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
	left := make([]string, 0, len(w.pending))
	for k := range w.pending {
		left = append(left, k)
	}
	s.mu.Unlock()
	select {
	case err := <-w.done: // decided while the context ended
		return err
	default:
	}
	sort.Strings(left)
	more := ""
	if len(left) > 5 {
		more = fmt.Sprintf(" and %d more", len(left)-5)
		left = left[:5]
	}
	return fmt.Errorf("xds: version %d not ACKed by %s%s: %w", version, strings.Join(left, ", "), more, ctx.Err())
}

func (s *Server) pendingLocked(version uint64) ([]string, error) {
	var pending []string
	for _, n := range s.nodes {
		if n.streams == 0 {
			continue
		}
		if n.nacks > 0 && n.nackVersion >= version {
			return nil, nackError(n)
		}
		rds := n.types[resourcev3.RouteType]
		if rds == nil {
			continue // serves no routes yet; gets the newest when it subscribes
		}
		if n.rdsAcked < version {
			pending = append(pending, n.key)
		}
	}
	return pending, nil
}

// AckedVersion returns the oldest RDS version ACKed across connected nodes that
// subscribe to routes, and false when there is none: the analyzer's actualWeight is the
// weight of that version.
func (s *Server) AckedVersion() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lo uint64
	found := false
	for _, n := range s.nodes {
		rds := n.types[resourcev3.RouteType]
		if n.streams == 0 || rds == nil {
			continue
		}
		v := s.modelVersion(rds.acked)
		if !found || v < lo {
			lo, found = v, true
		}
	}
	return lo, found
}

// modelVersion returns the snapshot version in a version string this server sent, and 0
// for anything else (a version from before a restart, or none).
func (s *Server) modelVersion(v string) uint64 {
	rest, ok := strings.CutPrefix(v, s.epoch+"-")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(rest, 10, 64)
	return n
}
