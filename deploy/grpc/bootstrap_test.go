// Package grpc holds an example gRPC xDS bootstrap (bootstrap.json) for proxyless
// clients of Sluice: point GRPC_XDS_BOOTSTRAP at it and dial "xds:///NAME", where NAME
// is a route host (not "*") or the Listener's name. Every client process needs its own
// node.id (the file says so in "_comment", which gRPC ignores). Its test runs a real
// grpc-go client with this bootstrap (only the server address changed) against a Sluice
// xDS server.
package grpc

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds"
)

type backend struct {
	testgrpc.UnimplementedTestServiceServer
}

func (backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: "orders"}, nil
}

func TestBootstrapWorksWithSluice(t *testing.T) {
	raw, err := os.ReadFile("bootstrap.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Comment string `json:"_comment"`
		Servers []struct {
			URI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc.Comment, "its own node.id") {
		t.Fatalf("_comment %q should tell that each client needs its own node id", doc.Comment)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URI != "127.0.0.1:18000" {
		t.Fatalf("xds_servers = %+v, want Sluice's default 127.0.0.1:18000", doc.Servers)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, backend{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	s, err := xds.New(xds.Options{Logger: zap.NewNop(), Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	err = s.Apply(&model.Snapshot{
		Version:  1,
		Clusters: []model.Cluster{{Name: "orders", Endpoints: []model.Endpoint{{Address: lis.Addr().String(), Weight: 1}}}},
		Listeners: []model.Listener{{Name: "orders-ingress", Address: "127.0.0.1:10000",
			Routes: []model.Route{{Name: "orders", Hosts: []string{"orders.mesh"}, Cluster: "orders"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The example, pointed at the test server.
	boot := strings.Replace(string(raw), "127.0.0.1:18000", s.Addr().String(), 1)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(boot))
	if err != nil {
		t.Fatalf("grpc-go rejects bootstrap.json: %v", err)
	}
	cc, err := grpc.NewClient("xds:///orders.mesh", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.GetServerId() != "orders" {
		t.Fatalf("RPC through xds:///orders.mesh: %v %v", resp, err)
	}
	nodes := s.Nodes()
	if len(nodes) != 1 || nodes[0].ID != doc.Node.ID || nodes[0].Shape != xds.ShapeGRPC {
		t.Fatalf("Sluice sees %+v, want the bootstrap's node %q as a grpc node", nodes, doc.Node.ID)
	}
}
