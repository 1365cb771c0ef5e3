package xds

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/model"
)

// These tests run real proxyless gRPC clients (google.golang.org/grpc/xds, target
// xds:///NAME) against the Sluice xDS server and real gRPC backends on 127.0.0.1.

type idServer struct {
	testgrpc.UnimplementedTestServiceServer
	id string
}

func (s idServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: s.id}, nil
}

// startBackend serves TestService on 127.0.0.1, answering with its id.
func startBackend(t *testing.T, id string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, idServer{id: id})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func startXDS(t *testing.T, addr string, reg prometheus.Registerer) *Server {
	t.Helper()
	s, err := New(Options{Logger: zap.NewNop(), Registerer: reg, Address: addr, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// dialXDS creates a proxyless client of target through the xDS server at xdsAddr.
func dialXDS(t *testing.T, xdsAddr, nodeID, target string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": "e2e"}
	}`, xdsAddr, nodeID)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// e2eSnapshot: clusters stable and canary (one endpoint each, or the given canary
// endpoints), listener "svc" with one route split stable/canary by canaryWeight and a
// header route x-canary: yes → canary.
func e2eSnapshot(version uint64, stable string, canary []string, canaryWeight int) *model.Snapshot {
	var ceps []model.Endpoint
	for _, a := range canary {
		ceps = append(ceps, model.Endpoint{Address: a, Weight: 1})
	}
	return &model.Snapshot{
		Version: version,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: ceps, Protocol: model.ProtocolH2C},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: stable, Weight: 1}}, Protocol: model.ProtocolH2C},
		},
		Listeners: []model.Listener{{
			Name:    "svc",
			Address: "127.0.0.1:10000",
			Routes: []model.Route{{
				Name: "svc-0", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable", Rollout: "svc",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 100 - canaryWeight}, {Cluster: "canary", Weight: canaryWeight}},
				HeaderRoutes: []model.HeaderRoute{{
					Name: "canary-header", Cluster: "canary",
					Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Exact: "yes"}}},
				}},
			}},
		}},
	}
}

func callID(ctx context.Context, c testgrpc.TestServiceClient, md ...string) (string, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // generous: a loaded machine answers late
	defer cancel()
	r, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return r.GetServerId(), nil
}

// canaryShare makes n RPCs and returns the fraction answered by the canary.
func canaryShare(t *testing.T, c testgrpc.TestServiceClient, n int, md ...string) float64 {
	t.Helper()
	canary := 0
	for i := 0; i < n; i++ {
		id, err := callID(context.Background(), c, md...)
		if err != nil {
			t.Fatalf("RPC %d: %v", i, err)
		}
		if id == "canary" {
			canary++
		}
	}
	return float64(canary) / float64(n)
}

// checkShare fails unless share, measured over n independent picks, is within four
// binomial standard deviations of want, and that bound is at most resolution: enough
// picks to tell want from a weight resolution away (a canary getting nothing, or 10
// points more, fails).
func checkShare(t *testing.T, share float64, n int, want, resolution float64) {
	t.Helper()
	tol := 4 * math.Sqrt(want*(1-want)/float64(n))
	if tol > resolution {
		t.Fatalf("%d picks give a bound of ±%.3f around %.2f: too few to tell it from ±%.2f", n, tol, want, resolution)
	}
	if math.Abs(share-want) > tol {
		t.Fatalf("share %.4f of %d picks, want %.2f ± %.3f (4 binomial standard deviations)", share, n, want, tol)
	}
}

// eventually polls cond every 5 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// allStableSoon fails unless 20 RPCs in a row reach the stable backend before
// start+within, and returns when that happened relative to start.
func allStableSoon(t *testing.T, c testgrpc.TestServiceClient, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	run := 0
	for run < 20 {
		if time.Since(start) > within {
			t.Fatalf("RPCs still reach the canary %v after the change", within)
		}
		id, err := callID(context.Background(), c)
		if err != nil || id != "stable" {
			run = 0
			continue
		}
		run++
	}
	return time.Since(start)
}

func nodeByID(s *Server, id string) *NodeStatus {
	for _, n := range s.Nodes() {
		if n.ID == id {
			return &n
		}
	}
	return nil
}

func TestE2EProxylessGRPC(t *testing.T) {
	stable := startBackend(t, "stable")
	canary := startBackend(t, "canary")
	reg := prometheus.NewRegistry()
	s := startXDS(t, "127.0.0.1:0", reg)
	if err := s.Apply(e2eSnapshot(1, stable, []string{canary}, 10)); err != nil {
		t.Fatal(err)
	}
	c := dialXDS(t, s.Addr().String(), "grpc-e2e-1", "svc")
	eventually(t, 10*time.Second, "first RPC through xDS", func() bool {
		_, err := callID(context.Background(), c)
		return err == nil
	})
	if n := nodeByID(s, "grpc-e2e-1"); n == nil || n.Shape != ShapeGRPC || n.AppliedVersion != 1 {
		t.Fatalf("node status = %+v, want a grpc node at version 1", n)
	}

	t.Run("split 90/10 over 2000 RPCs", func(t *testing.T) {
		share := canaryShare(t, c, 2000)
		t.Logf("canary share %.2f%%", 100*share)
		checkShare(t, share, 2000, 0.10, 0.05)
	})
	t.Run("header route all to canary", func(t *testing.T) {
		if share := canaryShare(t, c, 200, "x-canary", "yes"); share != 1 {
			t.Fatalf("header-matched canary share %.3f, want 1", share)
		}
	})
	t.Run("weight change and rollback followed", func(t *testing.T) {
		start := time.Now()
		if err := s.Apply(e2eSnapshot(2, stable, []string{canary}, 50)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.WaitApplied(ctx, 2); err != nil {
			t.Fatal(err)
		}
		t.Logf("50%% ACKed after %v", time.Since(start))
		checkShare(t, canaryShare(t, c, 400), 400, 0.5, 0.1)
		start = time.Now()
		if err := s.Apply(e2eSnapshot(3, stable, []string{canary}, 0)); err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		if err := s.WaitApplied(ctx2, 3); err != nil {
			t.Fatal(err)
		}
		t.Logf("rollback ACKed after %v", time.Since(start))
		// An ACK is sent when the client has parsed the routes; its picker follows a
		// moment later. The rollback counts as followed once 20 RPCs in a row avoid the
		// canary (how fast is measured by bench/xds, not asserted here).
		followed := allStableSoon(t, c, start, 10*time.Second)
		t.Logf("rollback followed by RPCs after %v", followed)
		if share := canaryShare(t, c, 300); share != 0 {
			t.Fatalf("after rollback canary share %.3f, want exactly 0", share)
		}
		// The header route still reaches the canary while its weight is 0.
		if share := canaryShare(t, c, 20, "x-canary", "yes"); share != 1 {
			t.Fatalf("header route after rollback: canary share %.3f", share)
		}
	})
	t.Run("invalid push refused before it is sent", func(t *testing.T) {
		before := nodeByID(s, "grpc-e2e-1").Responses
		bad := e2eSnapshot(4, stable, []string{canary}, 0)
		bad.Listeners[0].Routes[0].Split = []model.WeightedCluster{{Cluster: "stable", Weight: 0}, {Cluster: "canary", Weight: 0}}
		err := s.Apply(bad)
		if err == nil || !strings.Contains(err.Error(), "weights sum to 0") {
			t.Fatalf("Apply(all-zero weights) = %v, want a refusal", err)
		}
		bad2 := e2eSnapshot(4, stable, []string{canary}, 10)
		bad2.Listeners[0].Routes[0].HeaderRoutes[0].Cluster = "nowhere"
		if err := s.Apply(bad2); err == nil || !strings.Contains(err.Error(), `"nowhere" not present`) {
			t.Fatalf("Apply(unknown cluster) = %v, want a refusal", err)
		}
		if got := testutil.ToFloat64(s.metrics.invalid); got != 2 {
			t.Fatalf("invalid snapshots counted %v, want 2", got)
		}
		if after := nodeByID(s, "grpc-e2e-1").Responses; after != before {
			t.Fatalf("responses went from %d to %d after refused pushes", before, after)
		}
		if share := canaryShare(t, c, 50); share != 0 {
			t.Fatalf("canary share %.3f after refused pushes, want 0", share)
		}
	})
	t.Run("NACK reverts the node without a storm", func(t *testing.T) {
		// grpc-go rejects two endpoints with the same address; ValidateAll and
		// Sluice's checks let it through (Envoy accepts it).
		err := s.Apply(e2eSnapshot(5, stable, []string{canary, canary}, 30))
		if err != nil {
			t.Fatalf("Apply = %v; the duplicate endpoint must pass Sluice's checks", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err = s.WaitApplied(ctx, 5)
		if err == nil || !strings.Contains(err.Error(), "grpc/grpc-e2e-1") || !strings.Contains(err.Error(), "duplicate endpoint") {
			t.Fatalf("WaitApplied = %v, want the NACK naming the node", err)
		}
		t.Log(err)
		n := nodeByID(s, "grpc-e2e-1")
		eventually(t, 10*time.Second, "reverted RDS sent and ACKed", func() bool {
			n = nodeByID(s, "grpc-e2e-1")
			for _, ts := range n.Types {
				if ts.Type == "RDS" && ts.Sent != ts.ACKed {
					return false
				}
			}
			return n.AppliedVersion == 3
		})
		if !n.Reverted || n.LastNACK == nil || n.LastNACK.Type != "EDS" || n.LastNACK.Version != 5 {
			t.Fatalf("node after NACK = %+v", n)
		}
		// No storm: over a quiet window the node gets no more responses and sends no
		// more NACKs (a NACK loop answers within milliseconds, thousands per second).
		before := *n
		window := time.NewTimer(500 * time.Millisecond)
		<-window.C
		after := nodeByID(s, "grpc-e2e-1")
		if after.Responses != before.Responses || after.NACKs != before.NACKs {
			t.Fatalf("storm: responses %d→%d, NACKs %d→%d in 500ms\nbefore %+v\nafter %+v", before.Responses, after.Responses, before.NACKs, after.NACKs, before.Types, after.Types)
		}
		if after.NACKs > 2 {
			t.Fatalf("%d NACKs for one bad push", after.NACKs)
		}
		if share := canaryShare(t, c, 100); share != 0 {
			t.Fatalf("reverted node sends %.3f to canary, want the last ACKed 0", share)
		}
		if got := testutil.ToFloat64(s.metrics.nacks.WithLabelValues("EDS")); got < 1 {
			t.Fatalf("NACK counter %v", got)
		}
		// The next good push clears the revert.
		if err := s.Apply(e2eSnapshot(6, stable, []string{canary}, 20)); err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		if err := s.WaitApplied(ctx2, 6); err != nil {
			t.Fatal(err)
		}
		if n := nodeByID(s, "grpc-e2e-1"); n.Reverted || n.AppliedVersion != 6 {
			t.Fatalf("after a good push: %+v", n)
		}
	})
	if got := testutil.ToFloat64(s.metrics.connected); got != 1 {
		t.Fatalf("connected proxies gauge %v, want 1", got)
	}
}

func TestE2EControlPlaneRestart(t *testing.T) {
	stable := startBackend(t, "stable")
	canary := startBackend(t, "canary")
	s1 := startXDS(t, "127.0.0.1:0", nil)
	addr := s1.Addr().String()
	if err := s1.Apply(e2eSnapshot(1, stable, []string{canary}, 100)); err != nil {
		t.Fatal(err)
	}
	c := dialXDS(t, addr, "grpc-restart", "svc")
	eventually(t, 10*time.Second, "first RPC", func() bool {
		id, err := callID(context.Background(), c)
		return err == nil && id == "canary"
	})
	s1.Stop()
	// Clients keep serving with their last configuration while the control plane is down.
	if share := canaryShare(t, c, 50); share != 1 {
		t.Fatalf("with the control plane down: canary share %.3f, want 1", share)
	}
	s2 := startXDS(t, addr, nil)
	// A restarted control plane counts versions from 1 again; the epoch in the version
	// string still makes the clients take the new resources.
	if err := s2.Apply(e2eSnapshot(1, stable, []string{canary}, 0)); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 20*time.Second, "resync after restart", func() bool {
		n := nodeByID(s2, "grpc-restart")
		return n != nil && n.AppliedVersion == 1
	})
	t.Logf("resynced %v after the restart", took)
	allStableSoon(t, c, time.Now(), 10*time.Second)
	if share := canaryShare(t, c, 100); share != 0 {
		t.Fatalf("after the restart: canary share %.3f, want 0", share)
	}
}

// TestUnknownTargetIsLogged: a proxyless client dialling an xds:/// name Sluice does not
// serve gets its RPCs refused, and Sluice logs it once per node and name, with the names
// it does serve.
func TestUnknownTargetIsLogged(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	s, err := New(Options{Logger: zap.New(core), Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Apply(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10)); err != nil {
		t.Fatal(err)
	}
	c := dialXDS(t, s.Addr().String(), "typo-client", "svcc")
	for range 2 {
		if _, err := callID(context.Background(), c); err == nil {
			t.Fatal("an RPC to an unknown xds:/// name succeeded")
		}
	}
	eventually(t, 5*time.Second, "the unknown name logged", func() bool {
		return logs.FilterMessageSnippet("does not serve").Len() > 0
	})
	entries := logs.FilterMessageSnippet("does not serve").All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines for one unknown name, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["node"] != "grpc/typo-client" || f["name"] != "svcc" || f["served"] != "svc, svc:10000" {
		t.Fatalf("log fields %v", f)
	}
}
