// Package xdstest is a fake Envoy that enforces Envoy's rules, for tests and benchmarks:
// one state-of-the-world ADS stream that subscribes to CDS and LDS (wildcard), then to
// EDS for its clusters and RDS for its listeners' route configurations, the way Envoy
// does, and that
//
//   - NACKs what Envoy would NACK (decode in validate.go: wrong or unknown types,
//     protoc-gen-validate rules including required fields, unknown typed_config
//     extensions, RE2 regexes over the default program size, duplicate names or
//     domains, the router filter not last, weights adding up to 0);
//   - warms clusters as Envoy does: a new or changed cluster is usable only once an EDS
//     response for it arrives after the CDS response that created it (a changed cluster's
//     previous version serves meanwhile); a listener is usable once its routes arrived;
//   - after every response it applies, records a Violation for each route that sends
//     traffic to a cluster that is absent or still warming: every such moment is a window
//     in which a real Envoy answers 503;
//   - answers requests with Envoy's routing semantics (Match, in match.go), counting the
//     503s of routes to clusters it does not hold.
//
// It ACKs every response it accepts and NACKs the others, always naming the response's
// nonce, so a server can check that every response is answered.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Options configures a fake Envoy.
type Options struct {
	// Node identifies the client; UserAgentName "envoy" when empty.
	Node *corev3.Node
	// Reject, when set, is asked about every response Envoy's own rules accept; a
	// non-nil error NACKs it.
	Reject func(*discoverygrpc.DiscoveryResponse) error
	// OnResponse, when set, is called for each response once it is applied (or refused)
	// and before it is answered, so a server that saw the answer has seen the call.
	OnResponse func(resp *discoverygrpc.DiscoveryResponse, nacked bool)
	// Lenient skips the validation of resources (decode's checks) to save CPU in
	// benchmarks; warming and violations are still tracked.
	Lenient bool
	// SkimEndpoints, with Lenient, reads only the cluster name of each endpoint
	// assignment (not its endpoints): for benchmarks of large clusters, where N clients
	// in one process would otherwise spend the machine's CPU decoding N copies of the
	// same endpoint list that N real proxies decode on their own.
	SkimEndpoints bool
}

// Stats is what a fake Envoy has seen.
type Stats struct {
	Responses, ACKs, NACKs int
	// Violations lists every moment, right after applying a response, in which a route
	// sent traffic to a cluster that was absent or warming (a 503 window on Envoy), and
	// every response the client did not ask for.
	Violations []string
	// Served503 counts Match answers of 503 because the chosen cluster was not usable.
	Served503 int
	// Warming lists the clusters waiting for their endpoints, sorted.
	Warming []string
	// LastNACK is the message of the last NACK sent ("" for none).
	LastNACK string
}

// clusterState is one cluster name: the version in use and the one warming.
type clusterState struct {
	active, warming *clusterVersion
}

type clusterVersion struct {
	def       *clusterv3.Cluster
	raw       []byte
	endpoints *endpointv3.ClusterLoadAssignment
}

type listenerState struct {
	active, warming *listenerVersion
}

type listenerVersion struct {
	def *listenerv3.Listener
	raw []byte
	hcm *hcmv3.HttpConnectionManager // nil when it has none
}

func (l *listenerVersion) routeConfig() string { return l.hcm.GetRds().GetRouteConfigName() }

// Client is one fake Envoy's ADS stream.
type Client struct {
	opts   Options
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	accepted  map[string]string // type URL → last ACKed version
	nonces    map[string]string
	names     map[string][]string // EDS / RDS names subscribed
	everNamed map[string]bool     // every EDS / RDS name ever subscribed
	clusters  map[string]*clusterState
	listeners map[string]*listenerState
	routes    map[string]*routev3.RouteConfiguration
	stats     Stats
	err       error
	changed   chan struct{} // closed and replaced on every applied response
}

// Start opens an ADS stream on conn and begins the Envoy-like exchange. Stop ends it.
func Start(ctx context.Context, conn grpc.ClientConnInterface, opts Options) (*Client, error) {
	if opts.Node == nil {
		opts.Node = &corev3.Node{Id: "envoy"}
	}
	if opts.Node.UserAgentName == "" {
		opts.Node.UserAgentName = "envoy"
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &Client{
		opts: opts, stream: stream, cancel: cancel, done: make(chan struct{}),
		accepted: map[string]string{}, nonces: map[string]string{}, names: map[string][]string{}, everNamed: map[string]bool{},
		clusters: map[string]*clusterState{}, listeners: map[string]*listenerState{},
		routes: map[string]*routev3.RouteConfiguration{}, changed: make(chan struct{}),
	}
	// Envoy asks for clusters and listeners first; the node goes on the first message.
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: opts.Node, TypeUrl: resourcev3.ClusterType}); err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
		cancel()
		return nil, err
	}
	go c.loop()
	return c, nil
}

// Stop closes the stream and waits for the receive loop.
func (c *Client) Stop() {
	c.cancel()
	<-c.done
}

// Accepted returns the last version ACKed for a type URL.
func (c *Client) Accepted(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted[typeURL]
}

// Responses returns how many responses the client has received.
func (c *Client) Responses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats.Responses
}

// Stats returns a copy of what the client has seen.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Violations = slices.Clone(s.Violations)
	for name, cs := range c.clusters {
		if cs.warming != nil {
			s.Warming = append(s.Warming, name)
		}
	}
	sort.Strings(s.Warming)
	return s
}

// Changed returns a channel closed at the next applied or refused response, for
// event-driven waits.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Err returns the error that ended the stream, if it ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Cluster returns the definition of a usable (warm) cluster and its endpoints.
func (c *Client) Cluster(name string) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.clusters[name]
	if cs == nil || cs.active == nil {
		return nil, nil, false
	}
	return cs.active.def, cs.active.endpoints, true
}

// RouteConfiguration returns the route configuration named name, if received.
func (c *Client) RouteConfiguration(name string) *routev3.RouteConfiguration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routes[name]
}

func (c *Client) loop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err == nil {
			err = c.handle(resp)
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

func (c *Client) handle(resp *discoverygrpc.DiscoveryResponse) error {
	var msgs []proto.Message
	var reject error
	if c.opts.Lenient {
		for _, a := range resp.GetResources() {
			if c.opts.SkimEndpoints && a.GetTypeUrl() == resourcev3.EndpointType {
				msgs = append(msgs, &endpointv3.ClusterLoadAssignment{ClusterName: clusterNameOf(a.GetValue())})
				continue
			}
			m, err := a.UnmarshalNew()
			if err != nil {
				reject = err
				break
			}
			msgs = append(msgs, m)
		}
	} else {
		msgs, reject = decode(responseView{typeURL: resp.GetTypeUrl(), resources: resp.GetResources()})
	}
	if reject == nil && c.opts.Reject != nil {
		reject = c.opts.Reject(resp)
	}
	c.mu.Lock()
	c.stats.Responses++
	url := resp.GetTypeUrl()
	c.checkSolicited(resp, msgs)
	c.nonces[url] = resp.GetNonce()
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: url, ResponseNonce: resp.GetNonce(), VersionInfo: c.accepted[url]}
	var subs []*discoverygrpc.DiscoveryRequest
	if reject != nil {
		c.stats.NACKs++
		c.stats.LastNACK = reject.Error()
		req.ErrorDetail = &status.Status{Code: 3, Message: reject.Error()}
	} else {
		c.stats.ACKs++
		c.apply(url, msgs)
		c.checkRoutes(fmt.Sprintf("%s %s", shortType(url), resp.GetVersionInfo()))
		c.accepted[url] = resp.GetVersionInfo()
		req.VersionInfo = resp.GetVersionInfo()
		// Envoy subscribes to the endpoints of its clusters and the routes of its
		// listeners; the updated subscription follows the ACK.
		if sub := c.resubscribe(resourcev3.EndpointType, c.edsNames()); sub != nil {
			subs = append(subs, sub)
		}
		if sub := c.resubscribe(resourcev3.RouteType, c.rdsNames()); sub != nil {
			subs = append(subs, sub)
		}
	}
	req.ResourceNames = c.names[url]
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(resp, reject != nil)
	}
	if err := c.stream.Send(req); err != nil {
		return err
	}
	for _, s := range subs {
		if err := c.stream.Send(s); err != nil {
			return err
		}
	}
	return nil
}

// resubscribe returns the request that changes the subscription of typeURL to names,
// or nil when it is unchanged.
func (c *Client) resubscribe(typeURL string, names []string) *discoverygrpc.DiscoveryRequest {
	if slices.Equal(names, c.names[typeURL]) {
		return nil
	}
	if _, ok := c.names[typeURL]; !ok && len(names) == 0 {
		return nil
	}
	c.names[typeURL] = names
	for _, n := range names {
		c.everNamed[n] = true
	}
	return &discoverygrpc.DiscoveryRequest{
		TypeUrl:       typeURL,
		ResourceNames: names,
		VersionInfo:   c.accepted[typeURL],
		ResponseNonce: c.nonces[typeURL],
	}
}

func (c *Client) edsNames() []string {
	var out []string
	for name, cs := range c.clusters {
		v := cs.warming
		if v == nil {
			v = cs.active
		}
		if v.def.GetType() == clusterv3.Cluster_EDS {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Client) rdsNames() []string {
	set := map[string]bool{}
	for _, ls := range c.listeners {
		for _, v := range []*listenerVersion{ls.active, ls.warming} {
			if v != nil && v.routeConfig() != "" {
				set[v.routeConfig()] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// apply installs an accepted response the way Envoy does.
func (c *Client) apply(url string, msgs []proto.Message) {
	switch url {
	case resourcev3.ClusterType: // state of the world: absent clusters are removed
		seen := map[string]bool{}
		for _, m := range msgs {
			cl := m.(*clusterv3.Cluster)
			seen[cl.GetName()] = true
			raw, _ := proto.MarshalOptions{Deterministic: true}.Marshal(cl)
			cs := c.clusters[cl.GetName()]
			if cs == nil {
				cs = &clusterState{}
				c.clusters[cl.GetName()] = cs
			}
			switch {
			case cs.warming != nil && string(cs.warming.raw) == string(raw):
			case cs.warming == nil && cs.active != nil && string(cs.active.raw) == string(raw):
			default:
				v := &clusterVersion{def: cl, raw: raw}
				if cl.GetType() != clusterv3.Cluster_EDS {
					cs.active, cs.warming = v, nil // static clusters need no EDS
				} else {
					cs.warming = v
				}
			}
		}
		for name := range c.clusters {
			if !seen[name] {
				delete(c.clusters, name)
			}
		}
	case resourcev3.EndpointType:
		for _, m := range msgs {
			cla := m.(*endpointv3.ClusterLoadAssignment)
			cs := c.clusters[cla.GetClusterName()]
			switch {
			case cs == nil:
			case cs.warming != nil:
				cs.warming.endpoints = cla
				cs.active, cs.warming = cs.warming, nil
			default:
				cs.active.endpoints = cla
			}
		}
	case resourcev3.ListenerType:
		seen := map[string]bool{}
		for _, m := range msgs {
			l := m.(*listenerv3.Listener)
			seen[l.GetName()] = true
			raw, _ := proto.MarshalOptions{Deterministic: true}.Marshal(l)
			ls := c.listeners[l.GetName()]
			if ls == nil {
				ls = &listenerState{}
				c.listeners[l.GetName()] = ls
			}
			if (ls.warming != nil && string(ls.warming.raw) == string(raw)) ||
				(ls.warming == nil && ls.active != nil && string(ls.active.raw) == string(raw)) {
				continue
			}
			v := &listenerVersion{def: l, raw: raw}
			if hs, err := hcms(l); err == nil && len(hs) > 0 {
				v.hcm = hs[0]
			}
			ls.warming = v
		}
		for name := range c.listeners {
			if !seen[name] {
				delete(c.listeners, name)
			}
		}
	case resourcev3.RouteType:
		for _, m := range msgs {
			rc := m.(*routev3.RouteConfiguration)
			c.routes[rc.GetName()] = rc
		}
	}
	// A warming listener is ready once its route configuration is known.
	for _, ls := range c.listeners {
		if w := ls.warming; w != nil && (w.routeConfig() == "" || c.routes[w.routeConfig()] != nil) {
			ls.active, ls.warming = w, nil
		}
	}
}

// checkSolicited records a violation for a response of a type the client never asked
// for, or carrying resources of a named subscription it did not name.
func (c *Client) checkSolicited(resp *discoverygrpc.DiscoveryResponse, msgs []proto.Message) {
	url := resp.GetTypeUrl()
	if url == resourcev3.ClusterType || url == resourcev3.ListenerType {
		return // wildcard subscriptions, asked for at the start
	}
	if _, asked := c.names[url]; !asked {
		c.stats.Violations = append(c.stats.Violations, fmt.Sprintf("unsolicited %s response (version %s)", shortType(url), resp.GetVersionInfo()))
		return
	}
	// A name dropped from the subscription may still come in a response crossing the
	// request on the wire (Envoy ignores it); one never asked for may not.
	for _, m := range msgs {
		if n := resourceName(m); !c.everNamed[n] {
			c.stats.Violations = append(c.stats.Violations, fmt.Sprintf("%s response carries %q, which the client did not ask for", shortType(url), n))
		}
	}
}

// checkRoutes records a violation for every route of an active listener that can send
// traffic to a cluster that is not usable.
func (c *Client) checkRoutes(after string) {
	for _, lname := range sortedKeys(c.listeners) {
		ls := c.listeners[lname]
		if ls.active == nil {
			continue
		}
		rc := c.routes[ls.active.routeConfig()]
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for _, name := range targets(r) {
					if state := c.usable(name); state != "" {
						c.stats.Violations = append(c.stats.Violations, fmt.Sprintf(
							"after %s: listener %s route %s/%s sends traffic to cluster %q, which is %s",
							after, lname, vh.GetName(), r.GetName(), name, state))
					}
				}
			}
		}
	}
}

// usable returns "" when the cluster can take traffic, else why not.
func (c *Client) usable(name string) string {
	cs := c.clusters[name]
	switch {
	case cs == nil:
		return "absent"
	case cs.active == nil:
		return "warming"
	}
	return ""
}

// targets returns the clusters a route can send a request to (weighted legs with a
// weight, and a route whose runtime fraction is 0 never matches).
func targets(r *routev3.Route) []string {
	if f := r.GetMatch().GetRuntimeFraction(); f != nil && f.GetDefaultValue().GetNumerator() == 0 {
		return nil
	}
	a := r.GetRoute()
	if a == nil {
		return nil
	}
	if n := a.GetCluster(); n != "" {
		return []string{n}
	}
	var out []string
	for _, w := range a.GetWeightedClusters().GetClusters() {
		if w.GetWeight().GetValue() > 0 {
			out = append(out, w.GetName())
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ErrRejected is a convenient error for Options.Reject.
var ErrRejected = errors.New("rejected on purpose by xdstest")

// clusterNameOf reads field 1 (cluster_name) of a marshalled ClusterLoadAssignment.
func clusterNameOf(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}
