package router

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// maxEjectionFactor caps the doubling of a repeatedly ejected endpoint's ejection time.
const maxEjectionFactor = 16

// endpoint is the state of one cluster address. It outlives table swaps: an address that
// stays in its cluster across Apply keeps its health, ejection and warm-up state.
type endpoint struct {
	cluster string
	addr    string
	now     func() time.Time

	activeOK     atomic.Bool  // last active health verdict (true when no health check)
	ejectedUntil atomic.Int64 // unix nanos; 0: not ejected
	consecFail   atomic.Int32 // consecutive connect errors / 5xx
	ejections    atomic.Int32 // times ejected in a row, for backoff
	readySince   atomic.Int64 // unix nanos: added, or last turned healthy

	// outlier configuration of the current table (set on Apply).
	outlierThreshold atomic.Int32
	outlierBase      atomic.Int64

	pool connPool // idle fast-path upstream connections

	gauge    prometheus.Gauge
	ejectCtr prometheus.Counter
	log      *zap.Logger

	hcMu     sync.Mutex
	hcCancel context.CancelFunc
	hcCfg    model.HealthCheck
	hcDone   chan struct{}
}

func newEndpoint(cluster, addr string, now func() time.Time, m *metrics, log *zap.Logger) *endpoint {
	e := &endpoint{
		cluster:  cluster,
		addr:     addr,
		now:      now,
		gauge:    m.healthy.WithLabelValues(cluster, addr),
		ejectCtr: m.ejections.WithLabelValues(cluster, addr),
		log:      log.With(zap.String("cluster", cluster), zap.String("endpoint", addr)),
	}
	e.activeOK.Store(true)
	e.readySince.Store(now().UnixNano())
	e.gauge.Set(1)
	return e
}

// available reports whether the endpoint may take traffic now.
func (e *endpoint) available(nowNanos int64) bool {
	if !e.activeOK.Load() {
		return false
	}
	if u := e.ejectedUntil.Load(); u != 0 {
		if nowNanos < u {
			return false
		}
		// Ejection over: the endpoint is back, and warming up again.
		if e.ejectedUntil.CompareAndSwap(u, 0) {
			e.readySince.Store(nowNanos)
			e.consecFail.Store(0)
			e.updateGauge()
			e.log.Info("endpoint returned after ejection")
		}
	}
	return true
}

// warming reports whether requests served now are still in the warm-up period.
func (e *endpoint) warming(warmup time.Duration, nowNanos int64) bool {
	return warmup > 0 && nowNanos-e.readySince.Load() < int64(warmup)
}

func (e *endpoint) updateGauge() {
	if e.activeOK.Load() && e.ejectedUntil.Load() == 0 {
		e.gauge.Set(1)
	} else {
		e.gauge.Set(0)
	}
}

// success records a good upstream answer.
func (e *endpoint) success() {
	if e.consecFail.Load() != 0 {
		e.consecFail.Store(0)
	}
	if e.ejections.Load() != 0 && e.ejectedUntil.Load() == 0 {
		e.ejections.Store(0)
	}
}

// failure records a connect error or a 5xx and ejects the endpoint after the configured
// number in a row.
func (e *endpoint) failure() {
	th := e.outlierThreshold.Load()
	if th <= 0 {
		return
	}
	if e.consecFail.Add(1) < th {
		return
	}
	if e.ejectedUntil.Load() != 0 {
		return
	}
	n := e.ejections.Add(1)
	factor := int64(1) << min(n-1, 4)
	if factor > maxEjectionFactor {
		factor = maxEjectionFactor
	}
	until := e.now().UnixNano() + e.outlierBase.Load()*factor
	if e.ejectedUntil.CompareAndSwap(0, until) {
		e.consecFail.Store(0)
		e.ejectCtr.Inc()
		e.updateGauge()
		e.log.Warn("endpoint ejected", zap.Duration("for", time.Duration(e.outlierBase.Load()*factor)))
	}
}

// configure applies a cluster's current outlier settings.
func (e *endpoint) configure(c *model.Cluster) {
	e.outlierThreshold.Store(int32(c.Outlier.ConsecutiveFailures))
	base := c.Outlier.BaseEjectionTime
	if base <= 0 {
		base = 30 * time.Second
	}
	e.outlierBase.Store(int64(base))
}

// startHealthCheck (re)starts active checks when the configuration changed; hc nil stops them.
func (e *endpoint) startHealthCheck(hc *model.HealthCheck, client *http.Client) {
	e.hcMu.Lock()
	defer e.hcMu.Unlock()
	if hc != nil && e.hcCancel != nil && e.hcCfg == *hc {
		return
	}
	e.stopHealthCheckLocked()
	if hc == nil {
		if !e.activeOK.Load() {
			e.activeOK.Store(true)
			e.readySince.Store(e.now().UnixNano())
			e.updateGauge()
		}
		return
	}
	cfg := *hc
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(cfg.Interval, 2*time.Second)
	}
	if cfg.HealthyThreshold <= 0 {
		cfg.HealthyThreshold = 1
	}
	if cfg.UnhealthyThreshold <= 0 {
		cfg.UnhealthyThreshold = 2
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.hcCancel = cancel
	e.hcCfg = *hc
	done := make(chan struct{})
	e.hcDone = done
	go e.healthLoop(ctx, cfg, client, done)
}

func (e *endpoint) stopHealthCheck() {
	e.hcMu.Lock()
	defer e.hcMu.Unlock()
	e.stopHealthCheckLocked()
}

func (e *endpoint) stopHealthCheckLocked() {
	if e.hcCancel != nil {
		e.hcCancel()
		<-e.hcDone
		e.hcCancel = nil
		e.hcDone = nil
	}
}

func (e *endpoint) healthLoop(ctx context.Context, cfg model.HealthCheck, client *http.Client, done chan struct{}) {
	defer close(done)
	url := "http://" + e.addr + cfg.Path
	var ok, bad int
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if e.probe(ctx, client, url, cfg.Timeout) {
			ok, bad = ok+1, 0
			if !e.activeOK.Load() && ok >= cfg.HealthyThreshold {
				e.activeOK.Store(true)
				e.readySince.Store(e.now().UnixNano())
				e.updateGauge()
				e.log.Info("endpoint healthy")
			}
		} else {
			ok, bad = 0, bad+1
			if e.activeOK.Load() && bad >= cfg.UnhealthyThreshold {
				e.activeOK.Store(false)
				e.updateGauge()
				e.log.Warn("endpoint unhealthy")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *endpoint) probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	var buf [512]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// upstream is one cluster in one table: its endpoints in weighted round-robin order.
type upstream struct {
	name      string
	cfg       model.Cluster
	eps       []*endpoint // unique endpoints
	ring      []*endpoint // endpoints repeated by weight
	next      atomic.Uint64
	transport http.RoundTripper
	warmup    time.Duration
	timeout   time.Duration // whole request; 0: none
	// headerTimeout bounds the wait for the response head; 0: none.
	headerTimeout time.Duration
}

// pick returns the next available endpoint other than skip; when none is available it
// falls back to any endpoint other than skip (panic routing beats refusing all traffic).
func (u *upstream) pick(skip *endpoint, nowNanos int64) *endpoint {
	n := len(u.ring)
	if n == 0 {
		return nil
	}
	start := u.next.Add(1)
	for i := 0; i < n; i++ {
		e := u.ring[(start+uint64(i))%uint64(n)]
		if e != skip && e.available(nowNanos) {
			return e
		}
	}
	for i := 0; i < n; i++ {
		e := u.ring[(start+uint64(i))%uint64(n)]
		if e != skip {
			return e
		}
	}
	return nil
}
