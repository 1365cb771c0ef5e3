package xds

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file is Sluice's state-of-the-world ADS server. It replaces go-control-plane's
// snapshot cache and stream loop (both read and measured: the cache answers open
// watches in map order with no ACK in between, and marshals every response per stream)
// with a per-stream state machine that pushes make-before-break:
//
//  1. make: every cluster the target names, plus every cluster the stream still holds
//     (its routes may name them), is sent (CDS) and ACKed, then the endpoints of those
//     clusters (EDS), after the CDS ACK so that a re-created cluster gets them, and ACKed
//     for every cluster the stream holds;
//  2. switch: listeners (LDS) and routes (RDS) of the target, ACKed;
//  3. break: the clusters of the target alone (and their endpoints), ACKed.
//
// A step that changes nothing is skipped, so a weight change is one RDS response. Each
// type has at most one response in flight per stream; the next waits for its ACK or
// NACK, which is matched to the response by nonce. A NACK holds the stream on what it
// has ACKed until the target changes (no resend loop). Streams progress independently:
// a slow node never holds up the others.

// sub is one stream's subscription to one type and what it was sent.
type sub struct {
	wildcard  bool
	everNamed bool
	names     map[string]bool
	key       string // subKey(names)
	seen      bool
	lastNames []string // as the last request listed them
	cuts      [2]cutCache

	sent      *cut   // the last response sent
	sentNonce string // its nonce
	sentAt    time.Time
	sentFor   uint64 // the model version it was computed for
	answered  bool   // the client ACKed or NACKed sentNonce
	acked     *cut   // the last response ACKed
	nacked    *cut   // the last response NACKed
	nackMsg   string
	nackAt    time.Time
	// recent maps the nonces of the last responses to their model versions, to
	// attribute a late ACK or NACK to the push it answers.
	recent [4]sentRecord
}

type sentRecord struct {
	nonce   string
	version uint64
}

// subscribed reports whether the subscription includes name.
func (s *sub) subscribed(name string) bool { return s.wildcard || s.names[name] }

// cut returns the cut of c for the subscription, remembering the last two.
func (s *sub) cut(c *content) *cut {
	for _, cc := range s.cuts {
		if cc.content == c {
			return cc.cut
		}
	}
	ct := c.cutFor(s.wildcard, s.key, s.names)
	s.cuts[1], s.cuts[0] = s.cuts[0], cutCache{c, ct}
	return ct
}

// cutCache remembers the cut of one content for a subscription.
type cutCache struct {
	content *content
	cut     *cut
}

// covers reports whether the subscription includes every name of names.
func (s *sub) covers(names []string) bool {
	if s.wildcard {
		return true
	}
	for _, n := range names {
		if !s.names[n] {
			return false
		}
	}
	return true
}

// adsStream is one ADS stream.
type adsStream struct {
	id    int64
	srv   *Server
	node  *node
	shape Shape
	out   discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	wake  chan struct{}

	mu      sync.Mutex
	subs    [numKinds]*sub
	nonce   uint64
	held    *gen   // the target whose push the stream NACKed: nothing more until it changes
	applied uint64 // model version of the newest target the stream holds in full
	nacks   uint64
	// nackVersion is the model version of the newest push the stream NACKed.
	nackVersion uint64
	nackType    kind
	nackMessage string
}

// StreamAggregatedResources serves one state-of-the-world ADS stream.
func (s *Server) StreamAggregatedResources(out discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	first, err := out.Recv()
	if err != nil {
		return err
	}
	nd := first.GetNode()
	if nd == nil {
		nd = &corev3.Node{}
	}
	st := &adsStream{srv: s, out: out, wake: make(chan struct{}, 1), shape: s.shapeOf(nd)}
	s.openStream(st, nd)
	defer s.closeStream(st)

	ctx, cancel := context.WithCancel(out.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		st.sendLoop(ctx)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	req := first
	for {
		if req.GetTypeUrl() == "" {
			return status.Error(codes.InvalidArgument, "sluice: type_url is required on an ADS stream")
		}
		st.onRequest(req)
		if req, err = out.Recv(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
	}
}

// DeltaAggregatedResources refuses delta streams.
func (s *Server) DeltaAggregatedResources(discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return status.Error(codes.Unimplemented, "sluice serves state-of-the-world ADS only; use api_type GRPC (not DELTA_GRPC)")
}

func (st *adsStream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *adsStream) sendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.wake:
		}
		resps, changed := st.next()
		if changed {
			st.srv.streamChanged(st)
		}
		for _, resp := range resps {
			if err := st.out.Send(resp); err != nil {
				return // the stream is gone; the handler sees it on Recv
			}
		}
	}
}

// onRequest handles one DiscoveryRequest: a subscription change, an ACK or a NACK.
func (st *adsStream) onRequest(req *discoverygrpc.DiscoveryRequest) {
	k, ok := kindOf(req.GetTypeUrl())
	if !ok {
		return // other types (secrets, runtime…) get nothing
	}
	s := st.srv
	tm := s.metrics.byType[req.GetTypeUrl()]
	now := time.Now()
	st.mu.Lock()
	sb := st.subs[k]
	if sb == nil {
		sb = &sub{answered: true}
		st.subs[k] = sb
	}
	nonce := req.GetResponseNonce()
	stale := nonce != "" && nonce != sb.sentNonce
	var nackVersion uint64
	var nacked bool
	switch {
	case nonce == "":
		// a subscription, not an answer
	case stale:
		// An answer to an older response: the client has since been sent a newer one
		// and will answer it too. Count it and attribute it to its own push; it changes
		// nothing else (the subscription it carries is repeated with the next answer).
		if e := req.GetErrorDetail(); e != nil {
			v := sb.versionOf(nonce)
			st.mu.Unlock()
			tm.nacks.Inc()
			s.log.Warn("xds NACK of an older push", zap.String("node", st.node.key), zap.String("type", k.String()),
				zap.Uint64("snapshot_version", v), zap.String("message", e.GetMessage()))
			return
		}
		st.mu.Unlock()
		return
	case req.GetErrorDetail() != nil:
		sb.answered = true
		sb.nacked, sb.nackMsg, sb.nackAt = sb.sent, req.GetErrorDetail().GetMessage(), now
		st.nacks++
		st.nackVersion, st.nackType, st.nackMessage = sb.sentFor, k, sb.nackMsg
		st.held = s.target(st.shape)
		if st.held == nil || st.held.version != sb.sentFor {
			st.held = nil // a NACK of a push for an older target: the current one is tried
		}
		nacked, nackVersion = true, sb.sentFor
	default:
		sb.answered = true
		if sb.sent != nil && req.GetVersionInfo() == sb.sent.version {
			sb.acked = sb.sent
			tm.acks.Inc()
			tm.latency.Observe(now.Sub(sb.sentAt).Seconds())
		}
	}
	// The names: the whole subscription of this type, on every request (usually the
	// same as the last one).
	names := req.GetResourceNames()
	if !sb.seen || !slices.Equal(names, sb.lastNames) {
		sb.seen = true
		sb.lastNames = slices.Clone(names)
		wildcard := (len(names) == 0 && !sb.everNamed) || slices.Contains(names, "*")
		if len(names) > 0 {
			sb.everNamed = true
		}
		set := make(map[string]bool, len(names))
		for _, n := range names {
			if n != "*" {
				set[n] = true
			}
		}
		sb.wildcard, sb.names, sb.key = wildcard, set, subKey(set)
		sb.cuts = [2]cutCache{}
		if k == kindLDS && !wildcard {
			st.checkNamesLocked(set)
		}
	}
	changed := st.evaluateLocked()
	more := st.wantsLocked()
	st.mu.Unlock()
	if nacked {
		tm.nacks.Inc()
		s.log.Warn("xds NACK", zap.String("node", st.node.key), zap.String("type", k.String()),
			zap.Uint64("snapshot_version", nackVersion), zap.String("message", req.GetErrorDetail().GetMessage()))
	}
	if nacked || changed {
		s.streamChanged(st)
	}
	if more {
		st.poke()
	}
}

// versionOf returns the model version of the push with the given nonce (0: unknown).
func (sb *sub) versionOf(nonce string) uint64 {
	for _, r := range sb.recent {
		if r.nonce == nonce {
			return r.version
		}
	}
	return 0
}

// checkNamesLocked logs, once per node and name, a listener a client asks for that the
// fleet does not serve (a proxyless client dialling an unknown xds:///NAME).
func (st *adsStream) checkNamesLocked(names map[string]bool) {
	g := st.srv.target(st.shape)
	if g == nil {
		return
	}
	lds := g.c[kindLDS]
	for n := range names {
		if _, ok := lds.byName[n]; ok {
			continue
		}
		if st.srv.firstUnknown(st.node, n) {
			served := lds.names
			more := ""
			if len(served) > 20 {
				served, more = served[:20], " …"
			}
			st.srv.log.Warn("xds client asks for a listener Sluice does not serve (check the xds:/// target name)",
				zap.String("node", st.node.key), zap.String("name", n),
				zap.String("served", strings.Join(served, ", ")+more))
		}
	}
}

// next computes the responses to send now and records them as sent, and reports
// whether the stream's applied version changed.
func (st *adsStream) next() ([]*discoverygrpc.DiscoveryResponse, bool) {
	st.mu.Lock()
	cuts, version := st.dueLocked()
	out := make([]*discoverygrpc.DiscoveryResponse, 0, len(cuts))
	now := time.Now()
	for _, ct := range cuts {
		k := ct.content.kind
		sb := st.subs[k]
		st.nonce++
		nonce := strconv.FormatUint(st.nonce, 10)
		sb.sent, sb.sentNonce, sb.sentAt, sb.sentFor, sb.answered = ct, nonce, now, version, false
		copy(sb.recent[1:], sb.recent[:len(sb.recent)-1])
		sb.recent[0] = sentRecord{nonce, version}
		out = append(out, ct.response(nonce))
		st.srv.metrics.byType[kindURLs[k]].responses.Inc()
	}
	changed := st.evaluateLocked()
	st.mu.Unlock()
	if len(out) > 0 {
		st.srv.countResponses(st.node, len(out))
	}
	return out, changed
}

// wantsLocked reports whether the stream has a response due.
func (st *adsStream) wantsLocked() bool {
	cuts, _ := st.dueLocked()
	return len(cuts) > 0
}

// dueLocked returns the cuts to send now, in ADS order, and the model version they are
// for: for each kind the stream subscribes to with no response in flight, the cut of
// what the plan wants, unless the stream already holds it.
func (st *adsStream) dueLocked() ([]*cut, uint64) {
	want := st.planLocked(st.srv.target(st.shape))
	var out []*cut
	for k := range numKinds {
		sb, c := st.subs[k], want.c[k]
		if sb == nil || c == nil || !sb.answered {
			continue
		}
		ct := sb.cut(c)
		if sb.acked != nil && sb.acked.version == ct.version {
			continue
		}
		out = append(out, ct)
	}
	return out, want.version
}

// inPlaceLocked reports whether the stream holds c for kind k: its last response of k
// is answered and ACKed, equals the cut of c for its subscription, and the subscription
// covers every name the stream must hold (the endpoints of every cluster it holds, the
// routes of every listener it holds).
func (st *adsStream) inPlaceLocked(k kind, c *content) bool {
	sb := st.subs[k]
	required := st.requiredLocked(k)
	if sb == nil {
		return len(required) == 0
	}
	return sb.answered && sb.acked != nil && sb.acked.version == sb.cut(c).version && sb.covers(required)
}

// requiredLocked returns the names of kind k the stream must subscribe to, given what
// it holds of the kind it depends on: the endpoints of its clusters, the routes of its
// listeners.
func (st *adsStream) requiredLocked(k kind) []string {
	var parent kind
	switch k {
	case kindEDS:
		parent = kindCDS
	case kindRDS:
		parent = kindLDS
	default:
		return nil
	}
	if sb := st.subs[parent]; sb != nil && sb.acked != nil {
		return sb.acked.refs
	}
	return nil
}

// ackedContent returns the content the stream's last ACKed response of k came from.
func (st *adsStream) ackedContent(k kind) *content {
	if sb := st.subs[k]; sb != nil && sb.acked != nil {
		return sb.acked.content
	}
	return nil
}

// planLocked returns what the stream should hold next on its way to target t (see the
// top of this file). A nil content means: send nothing of that kind.
func (st *adsStream) planLocked(t *gen) *gen {
	want := &gen{}
	if t == nil {
		return want
	}
	want.version = t.version
	if st.held == t {
		// Held after a NACK: only new subscriptions are answered, from what it has.
		for k := range numKinds {
			want.c[k] = st.ackedContent(k)
		}
		return want
	}
	cds, eds := t.c[kindCDS], t.c[kindEDS]
	if old := st.ackedContent(kindCDS); old != nil {
		if u := cds.union(old); u != cds {
			cds, eds = u, u.endpointsFor(t.c[kindEDS], st.ackedContent(kindEDS))
		}
	}
	want.c[kindCDS] = cds
	want.c[kindLDS], want.c[kindRDS] = st.ackedContent(kindLDS), st.ackedContent(kindRDS)
	if !st.inPlaceLocked(kindCDS, cds) {
		want.c[kindEDS] = st.ackedContent(kindEDS) // endpoints follow their clusters' ACK
		return want
	}
	want.c[kindEDS] = eds
	if !st.inPlaceLocked(kindEDS, eds) {
		return want
	}
	want.c[kindLDS], want.c[kindRDS] = t.c[kindLDS], t.c[kindRDS]
	if !st.inPlaceLocked(kindLDS, t.c[kindLDS]) || !st.inPlaceLocked(kindRDS, t.c[kindRDS]) {
		return want
	}
	if cds != t.c[kindCDS] {
		want.c[kindCDS] = t.c[kindCDS]
		if st.inPlaceLocked(kindCDS, t.c[kindCDS]) {
			want.c[kindEDS] = t.c[kindEDS]
		}
	}
	return want
}

// evaluateLocked updates the stream's applied version and reports whether it changed.
func (st *adsStream) evaluateLocked() bool {
	t := st.srv.target(st.shape)
	if t == nil || st.applied >= t.version || st.held == t {
		return false
	}
	any := false
	for k := range numKinds {
		if st.subs[k] != nil {
			any = true
		}
		if !st.inPlaceLocked(k, t.c[k]) {
			return false
		}
	}
	if !any {
		return false
	}
	st.applied = t.version
	return true
}

// routeConfigNames returns the route configurations a listener takes over RDS.
func routeConfigNames(l *listenerv3.Listener) []string {
	var out []string
	for _, hcm := range listenerHCMs(l, func(string, ...any) {}) {
		if n := hcm.GetRds().GetRouteConfigName(); n != "" {
			out = append(out, n)
		}
	}
	return out
}
