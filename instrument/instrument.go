// Package instrument gives service owners the request metrics that Sluice's analysis
// templates query, for net/http servers (Middleware) and gRPC servers (UnaryServerInterceptor,
// StreamServerInterceptor), with the conventional names:
//
//	http_requests_total            counter    every request
//	http_errors_total              counter    requests answered with status_code >= 400
//	http_request_duration_seconds  histogram  seconds from the handler's start to its return
//
// All three carry the labels method, route and status_code, plus any constant labels
// given in Options (for example version="canary"). The histogram's default buckets are
// 0.1, 0.3, 0.5, 1, 3, 5 seconds (DefaultBuckets); Options.Buckets overrides them.
//
// HTTP: method is the request method (unknown methods become "OTHER"), route is the
// pattern the http.ServeMux matched (without its method, e.g. "/items/{id}"; "other" when
// no mux set one), or what Options.Route returns, never the raw path, so that the series
// count stays bounded. status_code is the status written ("200" when none was).
//
// gRPC: every RPC is an HTTP/2 POST, so method is "POST"; route is the full method name
// ("/pkg.Service/Method"); status_code is the gRPC status code mapped to the HTTP status
// that google.rpc.Code documents (OK 200, InvalidArgument 400, NotFound 404, Canceled 499,
// Internal and Unknown 500, Unimplemented 501, Unavailable 503, DeadlineExceeded 504, ...,
// see HTTPStatusFromCode). Mapping instead of adding a grpc_code label keeps one label set
// for both protocols, so the same query (status_code=~"5..") works for both; every non-OK
// code counts as an error.
//
// Queries over a series that has never been written return no data rather than zero, so
// Precreate and PrecreateGRPC create the children for the routes and codes known up front.
package instrument

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, exported so tests and dashboards can refer to them.
const (
	RequestsTotal   = "http_requests_total"
	ErrorsTotal     = "http_errors_total"
	RequestDuration = "http_request_duration_seconds"
)

// Label names carried by every series.
const (
	LabelMethod     = "method"
	LabelRoute      = "route"
	LabelStatusCode = "status_code"
)

// DefaultBuckets are the histogram buckets used when Options.Buckets is empty, in seconds.
var DefaultBuckets = []float64{0.1, 0.3, 0.5, 1, 3, 5}

// Options configures New. The zero value is valid.
type Options struct {
	// Buckets overrides DefaultBuckets for http_request_duration_seconds.
	Buckets []float64
	// ConstLabels are added to every series, e.g. {"version": "canary"}.
	ConstLabels prometheus.Labels
	// Route returns the route label of an HTTP request after it was served; nil uses the
	// ServeMux pattern (see the package doc). It must return few distinct values.
	Route func(r *http.Request) string
}

// Metrics holds the three collectors. One Metrics may serve any number of HTTP handlers and
// gRPC servers in one process; it is safe for concurrent use.
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	route    func(r *http.Request) string
}

// New creates the collectors and registers them on reg. When reg already holds collectors
// with the same names and labels (a second New on one registry), those are reused.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("instrument: nil prometheus.Registerer")
	}
	buckets := opts.Buckets
	if len(buckets) == 0 {
		buckets = DefaultBuckets
	}
	labels := []string{LabelMethod, LabelRoute, LabelStatusCode}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsTotal, Help: "Requests served, by method, route and status code.",
			ConstLabels: opts.ConstLabels,
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ErrorsTotal, Help: "Requests answered with a status code >= 400 (gRPC: any code but OK).",
			ConstLabels: opts.ConstLabels,
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: RequestDuration, Help: "Time to serve a request, in seconds.",
			Buckets: buckets, ConstLabels: opts.ConstLabels,
		}, labels),
		route: opts.Route,
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the collector already registered in its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Precreate creates the series for method and route with each status code, at zero, so
// that rate() and ratio queries see 0 instead of no data before the first request.
// Error series are created only for codes >= 400.
func (m *Metrics) Precreate(method, route string, statusCodes ...int) {
	for _, code := range statusCodes {
		sc := strconv.Itoa(code)
		m.requests.WithLabelValues(method, route, sc)
		m.duration.WithLabelValues(method, route, sc)
		if code >= 400 {
			m.errors.WithLabelValues(method, route, sc)
		}
	}
}

// Observe records one served request. Middleware and the interceptors call it; call it
// directly for servers of other kinds.
func (m *Metrics) Observe(method, route string, statusCode int, d time.Duration) {
	sc := strconv.Itoa(statusCode)
	m.requests.WithLabelValues(method, route, sc).Inc()
	if statusCode >= 400 {
		m.errors.WithLabelValues(method, route, sc).Inc()
	}
	m.duration.WithLabelValues(method, route, sc).Observe(d.Seconds())
}
