package instrument

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// series returns every sample of the named metric as "label=value,..." → value (counter)
// or sample count (histogram).
func series(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[labelKey(m)] = value(mf, m)
		}
	}
	return out
}

func labelKey(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

func value(mf *dto.MetricFamily, m *dto.Metric) float64 {
	switch mf.GetType() {
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	default:
		return m.GetCounter().GetValue()
	}
}

func TestHTTPMiddlewareLabelsAndCounts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		io.WriteString(w, "ok") // implicit 200
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {}) // nothing written: 200
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()

	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/items/1")
	do("GET", "/items/2")
	do("GET", "/items/missing")
	do("POST", "/fail")
	do("GET", "/empty")
	do("PURGE", "/nowhere") // unknown method, no pattern → 404 from the mux

	want := map[string]float64{
		"method=GET,route=/items/{id},status_code=200": 2,
		"method=GET,route=/items/{id},status_code=404": 1,
		"method=POST,route=/fail,status_code=503":      1,
		"method=GET,route=/empty,status_code=200":      1,
		"method=OTHER,route=other,status_code=404":     1,
	}
	if diff := cmp.Diff(want, series(t, reg, RequestsTotal)); diff != "" {
		t.Errorf("http_requests_total (-want +got):\n%s", diff)
	}
	wantErr := map[string]float64{
		"method=GET,route=/items/{id},status_code=404": 1,
		"method=POST,route=/fail,status_code=503":      1,
		"method=OTHER,route=other,status_code=404":     1,
	}
	if diff := cmp.Diff(wantErr, series(t, reg, ErrorsTotal)); diff != "" {
		t.Errorf("http_errors_total (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, series(t, reg, RequestDuration)); diff != "" {
		t.Errorf("http_request_duration_seconds counts (-want +got):\n%s", diff)
	}
}

func TestDefaultBucketsAndOverride(t *testing.T) {
	bucketsOf := func(opts Options) []float64 {
		reg := prometheus.NewRegistry()
		m, err := New(reg, opts)
		if err != nil {
			t.Fatal(err)
		}
		m.Observe("GET", "/", 200, 200*time.Millisecond)
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == RequestDuration {
				var bs []float64
				for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
					bs = append(bs, b.GetUpperBound())
				}
				return bs
			}
		}
		t.Fatal("no histogram gathered")
		return nil
	}
	if diff := cmp.Diff([]float64{0.1, 0.3, 0.5, 1, 3, 5}, bucketsOf(Options{})); diff != "" {
		t.Errorf("default buckets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float64{0.01, 0.05}, bucketsOf(Options{Buckets: []float64{0.01, 0.05}})); diff != "" {
		t.Errorf("overridden buckets (-want +got):\n%s", diff)
	}
}

func TestDurationObserved(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := New(reg, Options{})
	h := m.RouteHandler("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(120 * time.Millisecond) // the handler's own latency, which is what is measured
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/whatever", nil))
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != RequestDuration {
			continue
		}
		hist := mf.GetMetric()[0].GetHistogram()
		if got := labelKey(mf.GetMetric()[0]); got != "method=GET,route=/slow,status_code=200" {
			t.Errorf("labels = %s", got)
		}
		if hist.GetSampleSum() < 0.12 || hist.GetSampleSum() > 5 {
			t.Errorf("sum = %v s, want about 0.12", hist.GetSampleSum())
		}
		if hist.GetBucket()[0].GetCumulativeCount() != 0 || hist.GetBucket()[1].GetCumulativeCount() != 1 {
			t.Errorf("want the sample in the 0.3 bucket, not 0.1: %v", hist.GetBucket())
		}
		return
	}
	t.Fatal("no histogram")
}

func TestPanicCountedAs500(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := New(reg, Options{Route: func(*http.Request) string { return "/boom" }})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if got := series(t, reg, ErrorsTotal)["method=GET,route=/boom,status_code=500"]; got != 1 {
		t.Errorf("errors{500} = %v, want 1", got)
	}
}

func TestPrecreateAndConstLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{ConstLabels: prometheus.Labels{"version": "canary"}})
	if err != nil {
		t.Fatal(err)
	}
	m.Precreate("GET", "/", 200, 500)
	want := map[string]float64{
		"method=GET,route=/,status_code=200,version=canary": 0,
		"method=GET,route=/,status_code=500,version=canary": 0,
	}
	if diff := cmp.Diff(want, series(t, reg, RequestsTotal)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"method=GET,route=/,status_code=500,version=canary": 0},
		series(t, reg, ErrorsTotal)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestNewTwiceOnOneRegistryShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(reg, Options{})
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	a.Observe("GET", "/", 200, time.Millisecond)
	b.Observe("GET", "/", 200, time.Millisecond)
	if got := series(t, reg, RequestsTotal)["method=GET,route=/,status_code=200"]; got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestTwoServicesOneRegistryByConstLabels(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	stable, err := New(reg, Options{ConstLabels: prometheus.Labels{"backend": "stable"}})
	if err != nil {
		t.Fatal(err)
	}
	canary, err := New(reg, Options{ConstLabels: prometheus.Labels{"backend": "canary"}})
	if err != nil {
		t.Fatalf("second service on the same registry: %v", err)
	}
	stable.Observe("GET", "/", 200, time.Millisecond)
	canary.Observe("GET", "/", 500, time.Millisecond)
	want := map[string]float64{
		"backend=stable,method=GET,route=/,status_code=200": 1,
		"backend=canary,method=GET,route=/,status_code=500": 1,
	}
	if diff := cmp.Diff(want, series(t, reg, RequestsTotal)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestHTTPStatusFromCode(t *testing.T) {
	for c, want := range map[codes.Code]int{
		codes.OK: 200, codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400,
		codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409,
		codes.PermissionDenied: 403, codes.ResourceExhausted: 429, codes.FailedPrecondition: 400,
		codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 501, codes.Internal: 500,
		codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401, codes.Code(99): 500,
	} {
		if got := HTTPStatusFromCode(c); got != want {
			t.Errorf("HTTPStatusFromCode(%v) = %d, want %d", c, got, want)
		}
	}
}

// testService answers UnaryCall with OK or the error the request's username names, and
// streams one response per StreamingOutputCall parameter.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if req.GetFillUsername() {
		return nil, status.Error(codes.Unavailable, "asked to fail")
	}
	return &testgrpc.SimpleResponse{ServerId: "test"}, nil
}

func (testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	for range req.GetResponseParameters() {
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	return nil
}

func TestGRPCInterceptorsRealServer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(m.ServerOptions()...)
	testgrpc.RegisterTestServiceServer(srv, testService{})
	m.PrecreateGRPC(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	}()

	const unary = "/grpc.testing.TestService/UnaryCall"
	const stream = "/grpc.testing.TestService/StreamingOutputCall"
	const unimpl = "/grpc.testing.TestService/UnimplementedCall"
	// Pre-created before any call: OK, 500 and 503 for every method, at zero.
	pre := series(t, reg, ErrorsTotal)
	for _, k := range []string{
		"method=POST,route=" + unary + ",status_code=503",
		"method=POST,route=" + unimpl + ",status_code=500",
	} {
		if v, ok := pre[k]; !ok || v != 0 {
			t.Errorf("pre-created %s = %v (present %v), want 0", k, v, ok)
		}
	}

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillUsername: true}); status.Code(err) != codes.Unavailable {
		t.Fatalf("want Unavailable, got %v", err)
	}
	if _, err := client.UnimplementedCall(ctx, &testgrpc.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("want Unimplemented, got %v", err)
	}
	st, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{}, {}}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := st.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("stream sent %d, want 2", n)
	}

	// The server-side Observe happens before the status reaches the client, so the
	// counts are complete once every call above has returned.
	got := series(t, reg, RequestsTotal)
	for k, want := range map[string]float64{
		"method=POST,route=" + unary + ",status_code=200":  3,
		"method=POST,route=" + unary + ",status_code=503":  1,
		"method=POST,route=" + unimpl + ",status_code=501": 1,
		"method=POST,route=" + stream + ",status_code=200": 1,
		"method=POST,route=" + stream + ",status_code=500": 0,
	} {
		if got[k] != want {
			t.Errorf("%s %s = %v, want %v", RequestsTotal, k, got[k], want)
		}
	}
	errs := series(t, reg, ErrorsTotal)
	if errs["method=POST,route="+unary+",status_code=503"] != 1 || errs["method=POST,route="+unimpl+",status_code=501"] != 1 {
		t.Errorf("errors = %v", errs)
	}
	if _, ok := errs["method=POST,route="+unary+",status_code=200"]; ok {
		t.Error("an OK call created an error series")
	}
}

func TestPatternRoute(t *testing.T) {
	for pattern, want := range map[string]string{
		"": RouteOther, "/": "/", "GET /items/{id}": "/items/{id}", "example.com/x": "example.com/x",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Pattern = pattern
		if got := PatternRoute(r); got != want {
			t.Errorf("PatternRoute(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func TestFlushReachesUnderlyingWriter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := New(reg, Options{})
	h := m.RouteHandler("/sse", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	}))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	if !rr.Flushed {
		t.Error("recorder not flushed")
	}
}
