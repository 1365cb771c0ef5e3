package embedded_test

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/sluice-mesh/sluice/analyzer/embedded"
)

// The analyzer's embedded provider: the router's registry in, PromQL out, with the
// same model.Value a remote Prometheus returns. Tests drive Collect; production calls
// go store.Run(ctx).
func Example() {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."},
		[]string{"method", "route", "status_code", "cluster"})
	reg.MustRegister(requests)

	store, err := embedded.New(embedded.Options{Gatherer: reg})
	if err != nil {
		panic(err)
	}
	start := time.Unix(1_700_000_000, 0)
	for sec := 0; sec <= 60; sec++ {
		requests.WithLabelValues("GET", "/", "200", "canary").Add(19)
		requests.WithLabelValues("GET", "/", "500", "canary").Add(1)
		if err := store.Collect(start.Add(time.Duration(sec) * time.Second)); err != nil {
			panic(err)
		}
	}
	now := start.Add(60 * time.Second)
	q := `sum(rate(http_requests_total{cluster="canary",status_code=~"5.."}[30s])) / sum(rate(http_requests_total{cluster="canary"}[30s]))`
	if store.Span() < 30*time.Second {
		fmt.Println("not enough data yet")
		return
	}
	v, err := store.Query(context.Background(), q, now)
	if err != nil {
		panic(err)
	}
	vec := v.(model.Vector)
	fmt.Printf("span %v, error ratio %.3f\n", store.Span(), float64(vec[0].Value))
	// Output: span 1m0s, error ratio 0.050
}
