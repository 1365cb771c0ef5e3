// Package xdstest is a simulated Envoy for tests and benchmarks: one ADS stream that
// subscribes to CDS and LDS (wildcard), then EDS for the clusters and RDS for the route
// configurations it is given, and ACKs every response the way Envoy does — or NACKs it
// when told to.
package xdstest

import (
	"context"
	"errors"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// Options configures a simulated Envoy.
type Options struct {
	// Node identifies the client; UserAgentName "envoy" when empty.
	Node *corev3.Node
	// Reject, when set, is asked about every response; a non-nil error NACKs it.
	Reject func(*discoverygrpc.DiscoveryResponse) error
	// OnResponse, when set, is called after each response is answered (ACK or NACK).
	OnResponse func(resp *discoverygrpc.DiscoveryResponse, nacked bool)
}

// Client is one simulated Envoy's ADS stream.
type Client struct {
	opts   Options
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	accepted  map[string]string // type URL → last ACKed version
	nonces    map[string]string
	names     map[string][]string // EDS / RDS names subscribed
	responses int
	err       error
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
		accepted: map[string]string{}, nonces: map[string]string{}, names: map[string][]string{},
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
	return c.responses
}

// Err returns the error that ended the stream, if it ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) loop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if err := c.handle(resp); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

func (c *Client) handle(resp *discoverygrpc.DiscoveryResponse) error {
	var reject error
	if c.opts.Reject != nil {
		reject = c.opts.Reject(resp)
	}
	var follow []string // names to subscribe to for the dependent type
	var followType string
	if reject == nil {
		switch resp.GetTypeUrl() {
		case resourcev3.ClusterType:
			followType = resourcev3.EndpointType
			for _, a := range resp.GetResources() {
				cl := &clusterv3.Cluster{}
				if err := a.UnmarshalTo(cl); err != nil {
					reject = err
					break
				}
				if cl.GetType() == clusterv3.Cluster_EDS {
					follow = append(follow, cl.GetName())
				}
			}
		case resourcev3.ListenerType:
			followType = resourcev3.RouteType
			for _, a := range resp.GetResources() {
				l := &listenerv3.Listener{}
				if err := a.UnmarshalTo(l); err != nil {
					reject = err
					break
				}
				for _, fc := range l.GetFilterChains() {
					for _, f := range fc.GetFilters() {
						hcm := &hcmv3.HttpConnectionManager{}
						if f.GetTypedConfig().MessageIs(hcm) {
							if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
								reject = err
								break
							}
							if n := hcm.GetRds().GetRouteConfigName(); n != "" {
								follow = append(follow, n)
							}
						}
					}
				}
			}
		}
	}
	c.mu.Lock()
	c.responses++
	c.nonces[resp.GetTypeUrl()] = resp.GetNonce()
	req := &discoverygrpc.DiscoveryRequest{
		TypeUrl:       resp.GetTypeUrl(),
		ResponseNonce: resp.GetNonce(),
		ResourceNames: c.names[resp.GetTypeUrl()],
		VersionInfo:   c.accepted[resp.GetTypeUrl()],
	}
	if reject != nil {
		req.ErrorDetail = &status.Status{Code: 3, Message: reject.Error()}
	} else {
		c.accepted[resp.GetTypeUrl()] = resp.GetVersionInfo()
		req.VersionInfo = resp.GetVersionInfo()
	}
	var sub *discoverygrpc.DiscoveryRequest
	if followType != "" {
		sort.Strings(follow)
		if !equal(follow, c.names[followType]) {
			c.names[followType] = follow
			sub = &discoverygrpc.DiscoveryRequest{
				TypeUrl:       followType,
				ResourceNames: follow,
				VersionInfo:   c.accepted[followType],
				ResponseNonce: c.nonces[followType],
			}
		}
	}
	c.mu.Unlock()
	if err := c.stream.Send(req); err != nil {
		return err
	}
	if sub != nil {
		if err := c.stream.Send(sub); err != nil {
			return err
		}
	}
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(resp, reject != nil)
	}
	return nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ErrRejected is a convenient error for Options.Reject.
var ErrRejected = errors.New("rejected on purpose by xdstest")
