package xds

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// withCanaryEndpoints is e2eSnapshot with the canary's endpoints given whole.
func withCanaryEndpoints(version uint64, stable string, canary []model.Endpoint, weight int) *model.Snapshot {
	s := e2eSnapshot(version, stable, nil, weight)
	s.Clusters[0].Endpoints = canary
	return s
}

// TestEndpointChangesAreEDSOnly: a snapshot in which only endpoints changed reaches a
// fleet of strict fake Envoys as one EDS response per node, with the CDS, LDS and RDS
// versions they hold unchanged, and is counted; a draining endpoint is sent as DRAINING
// and no longer counted in ClusterHealth; a cluster with no endpoint gets an assignment
// with no locality, which the clients accept.
func TestEndpointChangesAreEDSOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startXDS(t, "127.0.0.1:0", reg)
	ep := func(addr string, draining bool) model.Endpoint {
		return model.Endpoint{Address: addr, Weight: 1, Draining: draining}
	}
	if err := s.Apply(withCanaryEndpoints(1, "127.0.0.1:1", []model.Endpoint{ep("127.0.0.1:2", false)}, 10)); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	counters := []*typeCounter{{}, {}}
	var clients []*xdstest.Client
	for i, id := range []string{"envoy-a", "envoy-b"} {
		clients = append(clients, startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: id, Cluster: "edge"}, OnResponse: counters[i].add}))
	}
	eventually(t, 10*time.Second, "both nodes connected", func() bool { return len(s.Nodes()) == 2 })
	waitApplied(t, s, 1)
	versions := func(c *xdstest.Client) map[string]string {
		out := map[string]string{}
		for url := range typeNames {
			out[url] = c.Accepted(url)
		}
		return out
	}
	step := func(snap *model.Snapshot, wantEDS int, wantEDSOnly float64) {
		t.Helper()
		var before []map[string]int
		var held []map[string]string
		for i, c := range counters {
			before = append(before, c.snapshot())
			held = append(held, versions(clients[i]))
		}
		if err := s.Apply(snap); err != nil {
			t.Fatal(err)
		}
		waitApplied(t, s, snap.Version)
		for i, c := range counters {
			after, now := c.snapshot(), versions(clients[i])
			for url, name := range typeNames {
				want := before[i][url]
				if url == resourcev3.EndpointType {
					want += wantEDS
				} else if now[url] != held[i][url] {
					t.Errorf("version %d, client %d: %s version moved %s → %s", snap.Version, i, name, held[i][url], now[url])
				}
				if after[url] != want {
					t.Errorf("version %d, client %d: %s responses %d → %d, want %d", snap.Version, i, name, before[i][url], after[url], want)
				}
			}
			if st := clients[i].Stats(); len(st.Violations) > 0 || st.NACKs > 0 {
				t.Fatalf("version %d, client %d: %v, %d NACKs (%s)", snap.Version, i, st.Violations, st.NACKs, st.LastNACK)
			}
		}
		if got := testutil.ToFloat64(s.metrics.edsOnly); got != wantEDSOnly {
			t.Errorf("version %d: sluice_xds_eds_only_pushes_total %v, want %v", snap.Version, got, wantEDSOnly)
		}
	}
	health := func() [3]int {
		h, _, n, known := s.ClusterHealth("canary")
		if !known {
			t.Fatal("canary unknown")
		}
		return [3]int{h, n}
	}

	// A scale-up: one EDS response per node.
	step(withCanaryEndpoints(2, "127.0.0.1:1", []model.Endpoint{ep("127.0.0.1:2", false), ep("127.0.0.1:3", false)}, 10), 1, 1)
	_, cla, _ := clients[0].Cluster("canary")
	if n := len(cla.GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Fatalf("the fake Envoy holds %d canary endpoints, want 2", n)
	}
	if got := health(); got != [3]int{2, 2} {
		t.Errorf("after the scale-up: %v", got)
	}

	// A terminating pod: DRAINING.
	step(withCanaryEndpoints(3, "127.0.0.1:1", []model.Endpoint{ep("127.0.0.1:2", true), ep("127.0.0.1:3", false)}, 10), 1, 2)
	_, cla, _ = clients[1].Cluster("canary")
	statuses := map[uint32]corev3.HealthStatus{}
	for _, lb := range cla.GetEndpoints()[0].GetLbEndpoints() {
		statuses[lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()] = lb.GetHealthStatus()
	}
	if statuses[2] != corev3.HealthStatus_DRAINING || statuses[3] != corev3.HealthStatus_UNKNOWN {
		t.Errorf("health statuses by port: %v, want 2 DRAINING and 3 UNKNOWN", statuses)
	}
	if got := health(); got != [3]int{1, 1} {
		t.Errorf("with one endpoint draining: %v, want 1/1 (a draining endpoint is not counted)", got)
	}

	// Every endpoint gone: an assignment with no locality, accepted.
	step(withCanaryEndpoints(4, "127.0.0.1:1", nil, 10), 1, 3)
	if _, cla, ok := clients[0].Cluster("canary"); !ok || cla == nil || len(cla.GetEndpoints()) != 0 {
		t.Errorf("an empty cluster: held %v, assignment %v", ok, cla)
	}
	if got := health(); got != [3]int{0, 0} {
		t.Errorf("with no endpoint: %v", got)
	}

	// A weight change is not an endpoint change.
	if err := s.Apply(withCanaryEndpoints(5, "127.0.0.1:1", nil, 20)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s, 5)
	if got := testutil.ToFloat64(s.metrics.edsOnly); got != 3 {
		t.Errorf("a weight change counted as an EDS-only push: %v", got)
	}
}

// gatedServer answers TestService with its id; an RPC carrying metadata "hold" waits
// until release is closed.
type gatedServer struct {
	testgrpc.UnimplementedTestServiceServer
	id      string
	release chan struct{}
	held    atomic.Int32
}

func (s *gatedServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("hold")) > 0 {
		s.held.Add(1)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &testgrpc.SimpleResponse{ServerId: s.id}, nil
}

func startGated(t *testing.T, id string) (*gatedServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &gatedServer{id: id, release: make(chan struct{})}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s, lis.Addr().String()
}

// TestE2EProxylessGRPCFollowsEndpointChanges: a real grpc-go xDS client follows
// endpoint-only pushes: a new endpoint gets RPCs, a DRAINING one gets no new RPC while
// one it is serving completes, a cluster with no endpoint fails RPCs with UNAVAILABLE
// (and recovers when endpoints return).
func TestE2EProxylessGRPCFollowsEndpointChanges(t *testing.T) {
	stable := startBackend(t, "stable")
	one, oneAddr := startGated(t, "one")
	_, twoAddr := startGated(t, "two")
	s := startXDS(t, "127.0.0.1:0", nil)
	ep := func(addr string, draining bool) model.Endpoint {
		return model.Endpoint{Address: addr, Weight: 1, Draining: draining}
	}
	version := uint64(0)
	apply := func(eps ...model.Endpoint) {
		t.Helper()
		version++
		if err := s.Apply(withCanaryEndpoints(version, stable, eps, 100)); err != nil {
			t.Fatal(err)
		}
	}
	apply(ep(oneAddr, false))
	c := dialXDS(t, s.Addr().String(), "endpoints-e2e", "svc")
	eventually(t, 20*time.Second, "RPCs reaching the canary", func() bool {
		id, err := callID(context.Background(), c)
		return err == nil && id == "one"
	})

	// Scale-up: the new endpoint gets RPCs.
	apply(ep(oneAddr, false), ep(twoAddr, false))
	took := eventually(t, 10*time.Second, "RPCs reaching the new endpoint", func() bool {
		id, err := callID(context.Background(), c)
		return err == nil && id == "two"
	})
	t.Logf("a new endpoint got its first RPC %s after the push", took.Round(time.Millisecond))

	// An RPC held on "one", then "one" drains: new RPCs go to "two" only, the held RPC
	// completes.
	apply(ep(oneAddr, false))
	eventually(t, 10*time.Second, "RPCs on one only", func() bool {
		for range 10 {
			if id, err := callID(context.Background(), c); err != nil || id != "one" {
				return false
			}
		}
		return true
	})
	held := make(chan error, 1)
	go func() {
		id, err := callID(context.Background(), c, "hold", "1")
		if err == nil && id != "one" {
			err = status.Errorf(codes.Internal, "answered by %s", id)
		}
		held <- err
	}()
	eventually(t, 10*time.Second, "the RPC held on one", func() bool { return one.held.Load() == 1 })
	apply(ep(oneAddr, true), ep(twoAddr, false))
	eventually(t, 10*time.Second, "new RPCs avoiding the draining endpoint", func() bool {
		for range 10 {
			if id, err := callID(context.Background(), c); err != nil || id != "two" {
				return false
			}
		}
		return true
	})
	close(one.release)
	if err := <-held; err != nil {
		t.Fatalf("the RPC in flight on the draining endpoint failed: %v", err)
	}

	// No endpoint at all: UNAVAILABLE; endpoints back: served again.
	apply()
	eventually(t, 10*time.Second, "RPCs failing with UNAVAILABLE", func() bool {
		_, err := callID(context.Background(), c)
		return status.Code(err) == codes.Unavailable
	})
	apply(ep(twoAddr, false))
	eventually(t, 10*time.Second, "RPCs served again", func() bool {
		id, err := callID(context.Background(), c)
		return err == nil && id == "two"
	})
}
