package instrument_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"

	"github.com/sluice-mesh/sluice/instrument"
)

// A service owner wraps the mux once; the route label is the mux pattern.
func Example() {
	reg := prometheus.NewRegistry()
	m, err := instrument.New(reg, instrument.Options{ConstLabels: prometheus.Labels{"version": "canary"}})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down", http.StatusServiceUnavailable)
	})
	m.Precreate("GET", "/orders/{id}", 200, 500) // so "no errors yet" reads 0, not no data
	handler := m.Middleware(mux)                 // serve this, and reg on /metrics via promhttp

	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/orders/42", nil))

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == instrument.ErrorsTotal {
			var b strings.Builder
			_, _ = expfmt.MetricFamilyToText(&b, mf)
			for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
				if !strings.HasPrefix(l, "#") {
					fmt.Println(l)
				}
			}
		}
	}
	// Output:
	// http_errors_total{method="GET",route="/orders/{id}",status_code="500",version="canary"} 0
	// http_errors_total{method="GET",route="/orders/{id}",status_code="503",version="canary"} 1
}

// gRPC servers take both interceptors through ServerOptions; PrecreateGRPC after
// registering the services creates their series.
func ExampleMetrics_ServerOptions() {
	reg := prometheus.NewRegistry()
	m, _ := instrument.New(reg, instrument.Options{})
	srv := grpc.NewServer(m.ServerOptions()...)
	// pb.RegisterYourServiceServer(srv, impl)
	m.PrecreateGRPC(srv)
	fmt.Println(instrument.HTTPStatusFromCode(14)) // codes.Unavailable
	// Output: 503
}
