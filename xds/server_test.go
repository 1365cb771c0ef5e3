package xds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// typeCounter counts responses by type URL.
type typeCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *typeCounter) add(resp *discoverygrpc.DiscoveryResponse, _ bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[resp.GetTypeUrl()]++
}

func (c *typeCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func dialPlain(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func startEnvoy(t *testing.T, cc *grpc.ClientConn, opts xdstest.Options) *xdstest.Client {
	t.Helper()
	c, err := xdstest.Start(context.Background(), cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func waitApplied(t *testing.T, s *Server, v uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitApplied(ctx, v); err != nil {
		t.Fatal(err)
	}
}

func TestServerEnvoyFleetWeightChangeIsRDSOnly(t *testing.T) {
	s := startXDS(t, "127.0.0.1:0", nil)
	// No node connected: nothing to wait for.
	if err := s.WaitApplied(context.Background(), 99); err != nil {
		t.Fatalf("WaitApplied with no nodes = %v", err)
	}
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	counters := make([]*typeCounter, 3)
	clients := make([]*xdstest.Client, 3)
	for i := range counters {
		counters[i] = &typeCounter{}
		id := []string{"envoy-a", "envoy-b", ""}[i] // an empty node id is served too
		clients[i] = startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: id, Cluster: "edge"}, OnResponse: counters[i].add})
	}
	eventually(t, 5*time.Second, "three nodes with routes", func() bool {
		n := 0
		for _, ns := range s.Nodes() {
			if ns.AppliedVersion == 1 {
				n++
			}
		}
		return n == 3
	})
	waitApplied(t, s, 1)
	for _, n := range s.Nodes() {
		if n.Shape != ShapeEnvoy || len(n.Types) != 4 {
			t.Fatalf("node %+v: want an envoy node subscribed to 4 types", n)
		}
		for _, ts := range n.Types {
			if ts.ACKed == "" || ts.ACKed != ts.Sent {
				t.Fatalf("node %s type %s sent %q acked %q", n.Key, ts.Type, ts.Sent, ts.ACKed)
			}
		}
	}
	before := make([]map[string]int, 3)
	for i, c := range counters {
		before[i] = c.snapshot()
	}
	if err := s.Apply(e2eSnapshot(2, "127.0.0.1:1", []string{"127.0.0.1:2"}, 60)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, 2)
	for i, c := range counters {
		after := c.snapshot()
		for _, url := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
			if after[url] != before[i][url] {
				t.Errorf("client %d: weight change sent %s (%d→%d)", i, typeNames[url], before[i][url], after[url])
			}
		}
		if after[resourcev3.RouteType] != before[i][resourcev3.RouteType]+1 {
			t.Errorf("client %d: RDS responses %d→%d, want one more", i, before[i][resourcev3.RouteType], after[resourcev3.RouteType])
		}
		// The pushed routes carry the new weight.
		rc := clients[i].RouteConfiguration("svc")
		var weights []string
		for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
			for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
				weights = append(weights, fmt.Sprintf("%s=%d", w.GetName(), w.GetWeight().GetValue()))
			}
		}
		if strings.Join(weights, ",") != "stable=40,canary=60" {
			t.Errorf("client %d holds weights %v, want stable=40,canary=60", i, weights)
		}
		if st := clients[i].Stats(); len(st.Violations) > 0 || st.NACKs > 0 {
			t.Errorf("client %d: %v, %d NACKs", i, st.Violations, st.NACKs)
		}
	}
	if v, ok := s.AckedVersion(); !ok || v != 2 {
		t.Fatalf("AckedVersion = %d, %v", v, ok)
	}
	if got := testutil.ToFloat64(s.metrics.connected); got != 3 {
		t.Fatalf("connected gauge %v, want 3", got)
	}
	if n := testutil.CollectAndCount(s.metrics.ackLatency); n == 0 {
		t.Fatal("no push-to-ACK latency observed")
	}

	// Older snapshots are refused; the same version again is a no-op.
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 0)); err == nil {
		t.Fatal("an older snapshot was accepted")
	}
	if err := s.Apply(e2eSnapshot(2, "127.0.0.1:1", []string{"127.0.0.1:2"}, 60)); err != nil {
		t.Fatal(err)
	}

	// GET /api/v1/xds/nodes.
	rec := httptest.NewRecorder()
	s.NodesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/xds/nodes", nil))
	var body struct {
		Nodes []NodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 {
		t.Fatalf("nodes handler: %d %v %s", rec.Code, err, rec.Body)
	}
	if len(body.Nodes) != 3 || body.Nodes[0].Key != "envoy/" || body.Nodes[1].Key != "envoy/envoy-a" || body.Nodes[1].AppliedVersion != 2 {
		t.Fatalf("nodes JSON: %s", rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"acked":`) {
		t.Fatalf("nodes JSON lacks per-type state: %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	s.NodesHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/xds/nodes", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST nodes = %d", rec.Code)
	}
}

// weightOf returns the weight of cluster in the first weighted route of an RDS response.
func weightOf(resp *discoverygrpc.DiscoveryResponse, cluster string) uint32 {
	for _, a := range resp.GetResources() {
		rc := &routev3.RouteConfiguration{}
		if a.UnmarshalTo(rc) != nil {
			continue
		}
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
					if w.Name == cluster {
						return w.GetWeight().GetValue()
					}
				}
			}
		}
	}
	return 0
}

func TestServerNACKRevertsOneNodeWithoutStorm(t *testing.T) {
	reg := newRegistry()
	s := startXDS(t, "127.0.0.1:0", reg)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	// "picky" rejects any route giving the canary 77%, the way a client with a bug or
	// an older version would; "fine" accepts everything.
	picky := startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: "picky"}, Reject: func(r *discoverygrpc.DiscoveryResponse) error {
		if r.GetTypeUrl() == resourcev3.RouteType && weightOf(r, "canary") == 77 {
			return errors.New("canary weight 77 is unlucky")
		}
		return nil
	}})
	fine := startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: "fine"}})
	eventually(t, 5*time.Second, "both nodes on version 1", func() bool {
		return picky.Accepted(resourcev3.RouteType) != "" && fine.Accepted(resourcev3.RouteType) != ""
	})
	waitApplied(t, s, 1)
	good := picky.Accepted(resourcev3.RouteType)

	if err := s.Apply(e2eSnapshot(2, "127.0.0.1:1", []string{"127.0.0.1:2"}, 77)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.WaitApplied(ctx, 2)
	if err == nil || !strings.Contains(err.Error(), "envoy/picky") || !strings.Contains(err.Error(), "unlucky") {
		t.Fatalf("WaitApplied = %v, want the NACK of envoy/picky", err)
	}
	// The other node took version 2; the picky one still holds version 1's routes.
	eventually(t, 10*time.Second, "fine node on version 2", func() bool { return nodeByID(s, "fine").AppliedVersion == 2 })
	n := nodeByID(s, "picky")
	if !n.Reverted || n.AppliedVersion != 1 || n.LastNACK == nil || n.LastNACK.Version != 2 || picky.Accepted(resourcev3.RouteType) != good {
		t.Fatalf("picky after NACK: %+v (accepted %q, want %q)", n, picky.Accepted(resourcev3.RouteType), good)
	}
	// No storm: the NACK gets no answer and nothing is resent.
	responses := picky.Responses()
	window := time.NewTimer(300 * time.Millisecond)
	<-window.C
	if got := picky.Responses(); got != responses {
		t.Fatalf("storm: %d responses after the NACK", got-responses)
	}
	if n := nodeByID(s, "picky"); n.NACKs != 1 {
		t.Fatalf("picky NACKed %d times, want 1", n.NACKs)
	}
	if got := testutil.ToFloat64(s.metrics.nacks.WithLabelValues("RDS")); got != 1 {
		t.Fatalf("RDS NACK counter %v", got)
	}
	// The next good snapshot reaches it again.
	if err := s.Apply(e2eSnapshot(3, "127.0.0.1:1", []string{"127.0.0.1:2"}, 20)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, 3)
	if n := nodeByID(s, "picky"); n.Reverted || n.AppliedVersion != 3 {
		t.Fatalf("picky after a good push: %+v", n)
	}
	// A stopped node no longer counts.
	picky.Stop()
	fine.Stop()
	eventually(t, 5*time.Second, "connected gauge back to 0", func() bool {
		return testutil.ToFloat64(s.metrics.connected) == 0
	})
}

func TestServerWaitAppliedTimesOutNamingNodes(t *testing.T) {
	s := startXDS(t, "127.0.0.1:0", nil)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: "slow"}})
	eventually(t, 5*time.Second, "slow node on version 1", func() bool {
		n := nodeByID(s, "slow")
		return n != nil && n.AppliedVersion == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.WaitApplied(ctx, 2) // version 2 was never applied
	if err == nil || !strings.Contains(err.Error(), "envoy/slow") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied = %v, want a timeout naming envoy/slow", err)
	}
}

func TestShapeOf(t *testing.T) {
	md := func(v string) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{ShapeMetadataKey: v})
		return s
	}
	cases := []struct {
		node *corev3.Node
		want Shape
	}{
		{&corev3.Node{UserAgentName: "envoy"}, ShapeEnvoy},
		{&corev3.Node{UserAgentName: "gRPC Go"}, ShapeGRPC},
		{&corev3.Node{UserAgentName: "grpc-java"}, ShapeGRPC},
		{&corev3.Node{UserAgentName: "envoy", Metadata: md("grpc")}, ShapeGRPC},
		{&corev3.Node{UserAgentName: "gRPC Go", Metadata: md("envoy")}, ShapeEnvoy},
		{nil, ShapeEnvoy},
	}
	for _, c := range cases {
		if got := ShapeOf(c.node); got != c.want {
			t.Errorf("ShapeOf(%v) = %s, want %s", c.node, got, c.want)
		}
	}
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func TestServerForgetsLongGoneNodes(t *testing.T) {
	s := startXDS(t, "127.0.0.1:0", nil)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	c := startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: "gone"}})
	waitApplied(t, s, 1)
	eventually(t, 5*time.Second, "node seen", func() bool { return nodeByID(s, "gone") != nil })
	c.Stop()
	eventually(t, 5*time.Second, "node disconnected", func() bool { return !nodeByID(s, "gone").Connected })
	s.mu.Lock()
	s.pruneLocked(time.Now().Add(forgetAfter / 2))
	s.mu.Unlock()
	if nodeByID(s, "gone") == nil {
		t.Fatal("node forgotten too early")
	}
	s.mu.Lock()
	s.pruneLocked(time.Now().Add(2 * forgetAfter))
	s.mu.Unlock()
	if n := nodeByID(s, "gone"); n != nil {
		t.Fatalf("node kept after %v: %+v", 2*forgetAfter, n)
	}
}

// TestLateNACKOfAnOlderPushIsNotChargedToANewerOne: a NACK carries the nonce of the
// response it answers; one answering an older push (here, a duplicate answer to the
// first response, arriving after the second was sent) is counted against that push and
// must not fail the newer snapshot.
func TestLateNACKOfAnOlderPushIsNotChargedToANewerOne(t *testing.T) {
	s := startXDS(t, "127.0.0.1:0", nil)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *discoverygrpc.DiscoveryRequest) {
		t.Helper()
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoverygrpc.DiscoveryResponse {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "raw", UserAgentName: "envoy"}, TypeUrl: resourcev3.ClusterType})
	cds1 := recv()
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds1.VersionInfo, ResponseNonce: cds1.Nonce})
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"canary", "stable"}})
	eds1 := recv()
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds1.VersionInfo, ResponseNonce: eds1.Nonce,
		ResourceNames: []string{"canary", "stable"}})
	waitApplied(t, s, 1)

	// Version 2 changes the canary's endpoints: a new EDS response.
	if err := s.Apply(e2eSnapshot(2, "127.0.0.1:1", []string{"127.0.0.1:3"}, 10)); err != nil {
		t.Fatal(err)
	}
	eds2 := recv()
	if eds2.GetTypeUrl() != resourcev3.EndpointType || eds2.Nonce == eds1.Nonce {
		t.Fatalf("want a new EDS response, got %s nonce %s", eds2.GetTypeUrl(), eds2.Nonce)
	}
	// A late NACK naming the first response's nonce, then the ACK of the second.
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds1.VersionInfo, ResponseNonce: eds1.Nonce,
		ResourceNames: []string{"canary", "stable"}, ErrorDetail: &status.Status{Code: 3, Message: "late complaint"}})
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds2.VersionInfo, ResponseNonce: eds2.Nonce,
		ResourceNames: []string{"canary", "stable"}})
	waitApplied(t, s, 2)
	if n := nodeByID(s, "raw"); n.LastNACK != nil || n.Reverted || n.AppliedVersion != 2 {
		t.Fatalf("node after a late NACK: %+v", n)
	}
	if got := testutil.ToFloat64(s.metrics.nacks.WithLabelValues("EDS")); got != 1 {
		t.Fatalf("the late NACK was not counted: %v", got)
	}

	// A NACK of the current push, by contrast, fails its version at once.
	if err := s.Apply(e2eSnapshot(3, "127.0.0.1:1", []string{"127.0.0.1:4"}, 10)); err != nil {
		t.Fatal(err)
	}
	eds3 := recv()
	send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: eds2.VersionInfo, ResponseNonce: eds3.Nonce,
		ResourceNames: []string{"canary", "stable"}, ErrorDetail: &status.Status{Code: 3, Message: "bad endpoints"}})
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := s.WaitApplied(wctx, 3); err == nil || !strings.Contains(err.Error(), "bad endpoints") || !strings.Contains(err.Error(), "version 3") {
		t.Fatalf("WaitApplied(3) = %v, want the NACK of version 3", err)
	}
}
