package router

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Status code recorded when the client hangs up before the response is complete.
// It is counted in http_requests_total (status_code="499") but never in
// http_errors_total: a client going away says nothing about the cluster.
const statusClientClosed = 499

// durationBuckets give p95/p99 resolution between 1 ms and 500 ms and reach ~10 s.
var durationBuckets = []float64{
	0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
	0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10,
}

// metrics holds every collector of one Router.
type metrics struct {
	requests   *prometheus.CounterVec   // analysis traffic only
	errors     *prometheus.CounterVec   // analysis traffic with status >= 400 (not 499)
	duration   *prometheus.HistogramVec // analysis traffic only
	excluded   *prometheus.CounterVec   // internal, warm-up and mirrored traffic
	spoofed    *prometheus.CounterVec   // internal markers stripped from untrusted sources
	healthy    *prometheus.GaugeVec     // 1 when an endpoint takes traffic
	ejections  *prometheus.CounterVec   // passive ejections
	unmatched  *prometheus.CounterVec   // requests no route matched
	clientErrs *prometheus.CounterVec   // requests refused or abandoned because of the client
	mirrorDrop prometheus.Counter       // mirrors dropped (too many in flight, body too large)
	version    prometheus.Gauge
	applyErr   prometheus.Counter

	mu  sync.Mutex
	rcs map[string]*rcMetrics // by route + "\x00" + cluster; survives table swaps
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	labels := []string{"method", "route", "status_code", "cluster"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "Requests proxied by the Sluice router, analysis traffic only (no internal, warm-up or mirrored requests).",
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_errors_total",
			Help: "Requests answered with status >= 400 (499 client hang-ups excluded), analysis traffic only.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time from request received to response complete, analysis traffic only.",
			Buckets: durationBuckets,
		}, labels),
		excluded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_router_excluded_requests_total",
			Help: "Requests kept out of the analysis series, by reason (internal, warmup, mirror).",
		}, []string{"route", "cluster", "reason", "status_code"}),
		spoofed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_router_spoofed_marker_total",
			Help: "Requests carrying an internal-traffic marker from an untrusted source; the marker was stripped.",
		}, []string{"listener"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_router_endpoint_healthy",
			Help: "1 when the endpoint passes health checks and is not ejected.",
		}, []string{"cluster", "endpoint"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_router_endpoint_ejections_total",
			Help: "Passive ejections after consecutive connect errors or 5xx.",
		}, []string{"cluster", "endpoint"}),
		unmatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_router_unmatched_requests_total",
			Help: "Requests that matched no route (answered 404).",
		}, []string{"listener"}),
		clientErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_router_client_errors_total",
			Help: "Requests refused or abandoned because of the client (malformed or oversized head, bad framing, body too slow or incomplete); never in the analysis series.",
		}, []string{"listener", "reason"}),
		mirrorDrop: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_router_mirror_dropped_total",
			Help: "Mirror copies not sent: too many in flight or request body too large.",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_router_table_version",
			Help: "Version of the snapshot the router serves.",
		}),
		applyErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_router_apply_errors_total",
			Help: "Snapshots refused by the router (the previous table kept serving).",
		}),
		rcs: map[string]*rcMetrics{},
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.duration, m.excluded, m.spoofed,
		m.healthy, m.ejections, m.unmatched, m.clientErrs, m.mirrorDrop, m.version, m.applyErr} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// clientError counts one request refused or abandoned because of the client.
func (m *metrics) clientError(listener, reason string) {
	m.clientErrs.WithLabelValues(listener, reason).Inc()
}

// Methods with their own label children slot; anything else is labelled OTHER.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"}

func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return 9
}

const (
	minStatus  = 100
	numStatus  = 500 // 100..599
	numMethods = len(methods)
)

// children are the resolved series of one (route, cluster, method, status).
type children struct {
	requests prometheus.Counter
	errors   prometheus.Counter // nil below 400 and for 499
	duration prometheus.Observer
	internal prometheus.Counter
	warmup   prometheus.Counter
	mirror   prometheus.Counter
}

// rcMetrics caches the label children of one route and cluster. Children are resolved
// once per (method, status) and then read lock-free; the common ones are created when
// the table is built so that the series exist (at zero) before the first request.
type rcMetrics struct {
	m       *metrics
	route   string
	cluster string
	slots   [numMethods * numStatus]atomic.Pointer[children]
}

func (m *metrics) routeCluster(route, cluster string) *rcMetrics {
	key := route + "\x00" + cluster
	m.mu.Lock()
	defer m.mu.Unlock()
	if rc, ok := m.rcs[key]; ok {
		return rc
	}
	rc := &rcMetrics{m: m, route: route, cluster: cluster}
	// Pre-create the series analysis queries divide by, so "no errors yet" is 0, not absent.
	rc.get(0, 200)
	rc.get(0, 500)
	m.rcs[key] = rc
	return rc
}

func (rc *rcMetrics) get(method, status int) *children {
	if status < minStatus || status >= minStatus+numStatus {
		status = 599
	}
	slot := &rc.slots[method*numStatus+status-minStatus]
	if c := slot.Load(); c != nil {
		return c
	}
	code := strconv.Itoa(status)
	lv := []string{methods[method], rc.route, code, rc.cluster}
	c := &children{
		requests: rc.m.requests.WithLabelValues(lv...),
		duration: rc.m.duration.WithLabelValues(lv...),
		internal: rc.m.excluded.WithLabelValues(rc.route, rc.cluster, "internal", code),
		warmup:   rc.m.excluded.WithLabelValues(rc.route, rc.cluster, "warmup", code),
		mirror:   rc.m.excluded.WithLabelValues(rc.route, rc.cluster, "mirror", code),
	}
	if status >= 400 && status != statusClientClosed {
		c.errors = rc.m.errors.WithLabelValues(lv...)
	}
	slot.CompareAndSwap(nil, c)
	return slot.Load()
}

// Reasons a request is kept out of the analysis series.
const (
	reasonNone = iota
	reasonInternal
	reasonWarmup
	reasonMirror
)

// observe records one finished request.
func (rc *rcMetrics) observe(method string, status int, reason int, seconds float64) {
	rc.observeIdx(methodIndex(method), status, reason, seconds)
}

// observeIdx records one finished request whose method index is known.
func (rc *rcMetrics) observeIdx(method int, status int, reason int, seconds float64) {
	c := rc.get(method, status)
	switch reason {
	case reasonInternal:
		c.internal.Inc()
	case reasonWarmup:
		c.warmup.Inc()
	case reasonMirror:
		c.mirror.Inc()
	default:
		c.requests.Inc()
		if c.errors != nil {
			c.errors.Inc()
		}
		c.duration.Observe(seconds)
	}
}
