// Package demobackend is the toy service behind `sluice demo-backend`: an HTTP (and
// optionally gRPC) server that answers every request after a configurable latency, fails a
// configurable fraction of them, names itself in every answer, and exports the
// conventional request metrics through package instrument.
//
// HTTP: GET /healthz (Sluice's default health-check path) and GET /health answer 200 "ok";
// /metrics serves the Prometheus registry; every other
// path and method is "the service": it waits Latency ± Jitter, then answers 200 with a JSON
// body {"backend","method","path","status"}, or 500 with an "error" field for a fraction
// ErrorRate of requests. Every answer carries the header X-Sluice-Backend: NAME.
// Health checks and scrapes are not counted in the request metrics.
//
// gRPC (RegisterGRPC): grpc.testing.TestService (from google.golang.org/grpc/interop/grpc_testing)
// with UnaryCall and EmptyCall behaving like the HTTP root (failures are codes.Internal, which
// package instrument counts as status_code 500; SimpleResponse.server_id and hostname are
// NAME), and grpc.health.v1.Health reporting SERVING until Shutdown.
package demobackend

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sluice-mesh/sluice/instrument"
)

// HeaderBackend is the response header naming the backend that answered.
const HeaderBackend = "X-Sluice-Backend"

// Options configures a Backend.
type Options struct {
	// Name appears in every answer and in the header X-Sluice-Backend.
	Name string
	// ErrorRate is the fraction (0..1) of requests answered with an error.
	ErrorRate float64
	// Latency is how long each request takes before it is answered.
	Latency time.Duration
	// Jitter spreads Latency uniformly over [Latency-Jitter, Latency+Jitter] (never below 0).
	Jitter time.Duration
	// Seed makes the failures and jitter reproducible; 0 picks a random seed.
	Seed uint64
	// Buckets overrides the request duration histogram's buckets (default: instrument's).
	Buckets []float64
}

// Backend is one demo service. It is safe for concurrent use.
type Backend struct {
	name      string
	errorRate atomic.Uint64 // failures per million requests
	latency   time.Duration
	jitter    time.Duration

	mu  sync.Mutex
	rnd *rand.Rand

	metrics  *instrument.Metrics
	gatherer prometheus.Gatherer
	health   *health.Server
}

// perMillion is the resolution of ErrorRate.
const perMillion = 1_000_000

// New returns a Backend whose metrics are registered on reg and served from g on /metrics
// (a *prometheus.Registry is both). Every series carries the constant label backend=NAME.
func New(reg prometheus.Registerer, g prometheus.Gatherer, opts Options) (*Backend, error) {
	if opts.Name == "" {
		return nil, errors.New("demobackend: a name is required")
	}
	if opts.ErrorRate < 0 || opts.ErrorRate > 1 {
		return nil, errors.New("demobackend: error rate must be within 0..1")
	}
	if opts.Latency < 0 || opts.Jitter < 0 {
		return nil, errors.New("demobackend: latency and jitter must not be negative")
	}
	m, err := instrument.New(reg, instrument.Options{
		Buckets:     opts.Buckets,
		ConstLabels: prometheus.Labels{"backend": opts.Name},
		Route:       func(*http.Request) string { return "/" },
	})
	if err != nil {
		return nil, err
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	b := &Backend{
		name: opts.Name, latency: opts.Latency, jitter: opts.Jitter,
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		metrics: m, gatherer: g, health: health.NewServer(),
	}
	b.SetErrorRate(opts.ErrorRate)
	// Pre-create the series an analysis will query, so "no errors yet" reads as 0.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		m.Precreate(method, "/", http.StatusOK, http.StatusInternalServerError)
	}
	return b, nil
}

// Name returns the backend's name.
func (b *Backend) Name() string { return b.name }

// SetErrorRate changes the fraction of failed requests (clamped to 0..1) while serving.
func (b *Backend) SetErrorRate(r float64) {
	r = min(max(r, 0), 1)
	b.errorRate.Store(uint64(r * perMillion))
}

// ErrorRate returns the current fraction of failed requests.
func (b *Backend) ErrorRate() float64 { return float64(b.errorRate.Load()) / perMillion }

// decide draws one request's fate: whether it fails and how long it takes.
func (b *Backend) decide() (fail bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fail = b.rnd.Uint64N(perMillion) < b.errorRate.Load()
	wait = b.latency
	if b.jitter > 0 {
		wait += time.Duration(b.rnd.Int64N(int64(2*b.jitter)+1)) - b.jitter
	}
	return fail, max(wait, 0)
}

// wait sleeps d or until ctx ends; it reports whether the whole wait elapsed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// answer is the JSON body of every HTTP answer from the service.
type answer struct {
	Backend string `json:"backend"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Status  int    `json:"status"`
	Error   string `json:"error,omitempty"`
}

// Handler serves /healthz, /health, /metrics and the service on every other path.
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderBackend, b.name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /healthz", health) // Sluice's default health-check path
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.gatherer, promhttp.HandlerOpts{}))
	mux.Handle("/", b.metrics.Middleware(http.HandlerFunc(b.serveHTTP)))
	return mux
}

func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	fail, d := b.decide()
	if !wait(r.Context(), d) {
		return // the client went away
	}
	a := answer{Backend: b.name, Method: r.Method, Path: r.URL.Path, Status: http.StatusOK}
	if fail {
		a.Status, a.Error = http.StatusInternalServerError, "injected failure"
	}
	w.Header().Set(HeaderBackend, b.name)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	_ = json.NewEncoder(w).Encode(a)
}

// ServerOptions returns the options that instrument a gRPC server with the backend's
// metrics; pass them to grpc.NewServer before RegisterGRPC.
func (b *Backend) ServerOptions() []grpc.ServerOption { return b.metrics.ServerOptions() }

// RegisterGRPC registers the test service and the health service on s and pre-creates
// their metric series.
func (b *Backend) RegisterGRPC(s *grpc.Server) {
	testgrpc.RegisterTestServiceServer(s, &testService{b: b})
	healthpb.RegisterHealthServer(s, b.health)
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.health.SetServingStatus(testgrpc.TestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	b.metrics.PrecreateGRPC(s)
}

// Shutdown marks the gRPC health service NOT_SERVING, so that clients move away before
// the server stops.
func (b *Backend) Shutdown() { b.health.Shutdown() }

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	b *Backend
}

func (t *testService) call(ctx context.Context) error {
	fail, d := t.b.decide()
	if !wait(ctx, d) {
		return status.FromContextError(ctx.Err()).Err()
	}
	if fail {
		return status.Errorf(codes.Internal, "injected failure from %s", t.b.name)
	}
	return nil
}

// UnaryCall answers with the backend's name as server_id and hostname.
func (t *testService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := t.call(ctx); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{ServerId: t.b.name, Hostname: t.b.name}, nil
}

// EmptyCall answers with an empty message.
func (t *testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	if err := t.call(ctx); err != nil {
		return nil, err
	}
	return &testgrpc.Empty{}, nil
}
