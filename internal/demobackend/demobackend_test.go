package demobackend

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

func newBackend(t *testing.T, opts Options) (*Backend, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	b, err := New(reg, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b, reg
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestAnswersNameAndStatus(t *testing.T) {
	b, _ := newBackend(t, Options{Name: "canary"})
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	resp, body := get(t, srv.Client(), srv.URL+"/api/orders?x=1")
	if resp.StatusCode != 200 || resp.Header.Get(HeaderBackend) != "canary" {
		t.Fatalf("status %d header %q", resp.StatusCode, resp.Header.Get(HeaderBackend))
	}
	var a answer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if a != (answer{Backend: "canary", Method: "GET", Path: "/api/orders", Status: 200}) {
		t.Errorf("answer = %+v", a)
	}

	b.SetErrorRate(1)
	resp, body = get(t, srv.Client(), srv.URL+"/")
	if resp.StatusCode != 500 || !strings.Contains(body, `"error":"injected failure"`) ||
		resp.Header.Get(HeaderBackend) != "canary" {
		t.Errorf("with error rate 1: %d %q", resp.StatusCode, body)
	}

	for _, path := range []string{"/health", "/healthz"} { // /healthz: Sluice's default health check
		resp, body = get(t, srv.Client(), srv.URL+path)
		if resp.StatusCode != 200 || body != "ok\n" {
			t.Errorf("%s: %d %q (must not fail with the error rate)", path, resp.StatusCode, body)
		}
	}
}

func TestErrorRateFractionAndMetrics(t *testing.T) {
	b, _ := newBackend(t, Options{Name: "stable", ErrorRate: 0.25, Seed: 7})
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	const n = 400
	fails := 0
	for range n {
		resp, _ := get(t, srv.Client(), srv.URL+"/x")
		if resp.StatusCode == 500 {
			fails++
		}
	}
	if fails < n*15/100 || fails > n*35/100 {
		t.Errorf("%d of %d failed, want about 25%%", fails, n)
	}
	get(t, srv.Client(), srv.URL+"/health")
	get(t, srv.Client(), srv.URL+"/healthz")
	_, metrics := get(t, srv.Client(), srv.URL+"/metrics")
	for _, want := range []string{
		`http_requests_total{backend="stable",method="GET",route="/",status_code="200"} ` + strconv.Itoa(n-fails),
		`http_requests_total{backend="stable",method="GET",route="/",status_code="500"} ` + strconv.Itoa(fails),
		`http_errors_total{backend="stable",method="GET",route="/",status_code="500"} ` + strconv.Itoa(fails),
		`http_errors_total{backend="stable",method="POST",route="/",status_code="500"} 0`, // pre-created
		`http_request_duration_seconds_bucket{backend="stable",method="GET",route="/",status_code="200",le="0.1"} ` + strconv.Itoa(n-fails),
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, `route="/health`) || strings.Contains(metrics, `route="/metrics"`) {
		t.Error("health checks or scrapes were counted")
	}
}

func TestLatencyAndJitter(t *testing.T) {
	b, _ := newBackend(t, Options{Name: "slow", Latency: 60 * time.Millisecond, Jitter: 20 * time.Millisecond, Seed: 1})
	for range 50 {
		_, d := b.decide()
		if d < 40*time.Millisecond || d > 80*time.Millisecond {
			t.Fatalf("drawn latency %v outside 60ms ± 20ms", d)
		}
	}
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	start := time.Now()
	get(t, srv.Client(), srv.URL+"/")
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("answered in %v, want at least 40ms", el)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, o := range []Options{{}, {Name: "x", ErrorRate: 1.5}, {Name: "x", Latency: -1}} {
		if _, err := New(reg, reg, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestServeGRPCAndGracefulStop(t *testing.T) {
	b, reg := newBackend(t, Options{Name: "canary-grpc"})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, hl, gl, zap.NewNop()) }()

	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(cctx, &testgrpc.SimpleRequest{})
	if err != nil || resp.GetServerId() != "canary-grpc" {
		t.Fatalf("UnaryCall = %v, %v", resp, err)
	}
	b.SetErrorRate(1)
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(cctx, &testgrpc.Empty{}); status.Code(err) != codes.Internal {
		t.Fatalf("EmptyCall with error rate 1: %v", err)
	}
	hc := healthpb.NewHealthClient(conn)
	if h, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	// The HTTP side runs too.
	hr, _ := get(t, http.DefaultClient, "http://"+hl.Addr().String()+"/health")
	if hr.StatusCode != 200 {
		t.Fatalf("/health over the real listener: %d", hr.StatusCode)
	}

	mfs, _ := reg.Gather()
	var grpcErrs float64
	for _, mf := range mfs {
		if mf.GetName() == "http_errors_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "route" && l.GetValue() == "/grpc.testing.TestService/EmptyCall" {
						grpcErrs += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if grpcErrs != 1 {
		t.Errorf("gRPC errors counted = %v, want 1", grpcErrs)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", hl.Addr().String(), time.Second); err == nil {
		t.Error("HTTP listener still open after shutdown")
	}
}
