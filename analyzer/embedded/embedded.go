// Package embedded evaluates PromQL in-process over a process's own metrics, so an
// AnalysisTemplate's `provider.prometheus` with no `address` works with nothing else
// running.
//
// A Store gathers a prometheus.Gatherer (the router's registry) every Interval, keeps the
// samples of the last Retention in memory, and answers instant queries with the PromQL
// engine of github.com/prometheus/prometheus (pinned in go.mod; that module is not a
// stable library API, so everything it touches stays in this package). The storage is
// Sluice's own: the module's tsdb package is deliberately not imported.
//
// Samples are stored the way a Prometheus server would have scraped them:
//   - counters, gauges and untyped metrics: one series each, named as exposed;
//   - histograms: NAME_bucket{le="..."} for every bucket plus le="+Inf" (taken from the
//     sample count), NAME_sum and NAME_count;
//   - summaries: NAME{quantile="..."}, NAME_sum and NAME_count;
//   - le and quantile values are formatted like Prometheus 3 does on ingestion
//     (le="1.0", le="0.25", le="+Inf").
//
// Every series carries its __name__ and its own labels only: there are no job or
// instance labels, since nothing is scraped. A series missing from a gather gets a
// stale marker, as in Prometheus, so it drops out of instant queries at once.
//
// "No data" has two shapes, exactly as with a real server: an empty vector (no matching
// series, or a range with fewer than two samples for rate) and NaN (0/0, e.g. an error
// ratio with no traffic). Callers should also wait until Span covers their query's
// range before acting on a result.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"go.uber.org/zap"
)

// Defaults for Options.
const (
	DefaultInterval  = time.Second
	DefaultRetention = 15 * time.Minute
	// DefaultQueryTimeout bounds one query when the caller's context has no earlier
	// deadline.
	DefaultQueryTimeout = 30 * time.Second
	// maxSamples bounds the samples one query may hold in memory (the engine fails every
	// query when this is 0). 450 series × 15 min at 1 s is ~400k.
	maxSamples = 50_000_000
)

// ErrOutOfOrder is returned by Collect when its timestamp is not after the previous one.
var ErrOutOfOrder = errors.New("embedded: collect timestamp not after the previous collect")

// Options configures a Store.
type Options struct {
	// Gatherer is what is collected, typically the router's *prometheus.Registry. Required.
	Gatherer prometheus.Gatherer
	// Interval between gathers in Run. Default 1s.
	Interval time.Duration
	// Retention is how much history is kept; older samples are dropped. Default 15m.
	// Queries whose range reaches further back see only what is retained.
	Retention time.Duration
	// Logger defaults to zap.NewNop().
	Logger *zap.Logger
	// Now is the clock Run uses to stamp gathers. Default time.Now. Tests usually call
	// Collect with their own timestamps instead of Run.
	Now func() time.Time
}

// Store is an in-memory time series store fed by a Gatherer and queried with PromQL.
// All methods are safe for concurrent use.
type Store struct {
	gatherer  prometheus.Gatherer
	interval  time.Duration
	retention time.Duration
	log       *zap.Logger
	now       func() time.Time
	engine    *promql.Engine

	collectMu sync.Mutex // serialises Collect: gather and append in timestamp order

	mu      sync.RWMutex
	series  map[uint64][]*memSeries // by labels hash; a slice for hash collisions
	nSeries int
	gen     uint64 // incremented on every collect
	haveT   bool
	firstT  int64 // ms of the first collect
	lastT   int64 // ms of the last collect
}

// sample is one float sample; a stale marker is value.StaleNaN.
type sample struct {
	t int64 // ms
	v float64
}

// memSeries is one series. samples is append-only in place: existing elements are never
// rewritten (trimming allocates a new slice), so a query may keep reading a sub-slice it
// took under the read lock after the lock is released.
type memSeries struct {
	lset    labels.Labels
	samples []sample
	gen     uint64 // generation of the last collect that contained the series
	stale   bool   // the last sample is a stale marker
}

// New returns a Store. It does not gather until Run or Collect is called.
func New(opts Options) (*Store, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("embedded: Options.Gatherer is required")
	}
	if opts.Interval < 0 || opts.Retention < 0 {
		return nil, errors.New("embedded: Interval and Retention must not be negative")
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Retention < opts.Interval {
		return nil, fmt.Errorf("embedded: Retention %v is shorter than Interval %v", opts.Retention, opts.Interval)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	interval := opts.Interval
	engine := promql.NewEngine(promql.EngineOpts{
		// Zero Timeout or MaxSamples make every query fail.
		Timeout:    DefaultQueryTimeout,
		MaxSamples: maxSamples,
		// Subqueries without a step ([5m:]) use the gather interval, as a server would
		// use its evaluation interval.
		NoStepSubqueryIntervalFn: func(int64) int64 { return interval.Milliseconds() },
		// Prometheus 3 enables these by default.
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	return &Store{
		gatherer:  opts.Gatherer,
		interval:  opts.Interval,
		retention: opts.Retention,
		log:       opts.Logger,
		now:       opts.Now,
		engine:    engine,
		series:    make(map[uint64][]*memSeries),
	}, nil
}

// Run gathers once at start and then every Interval until ctx is done. Collect errors
// are never fatal; they are logged when they start and when they stop, not every tick.
func (s *Store) Run(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	failing := false
	for {
		switch err := s.Collect(s.now()); {
		case err != nil && !failing:
			s.log.Warn("embedded metrics: collect failing", zap.Error(err))
			failing = true
		case err == nil && failing:
			s.log.Info("embedded metrics: collect recovered")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Collect gathers once and stores every sample at ts (millisecond precision). ts must be
// after the previous Collect's, else ErrOutOfOrder and nothing is stored. Series absent
// from this gather get a stale marker; samples older than ts-Retention are dropped. If
// the Gatherer fails, whatever it returned is stored (the rest goes stale, as with a
// failed Prometheus scrape) and the error is returned.
func (s *Store) Collect(ts time.Time) error {
	s.collectMu.Lock()
	defer s.collectMu.Unlock()
	t := ts.UnixMilli()
	s.mu.RLock()
	ooo := s.haveT && t <= s.lastT
	last := s.lastT
	s.mu.RUnlock()
	if ooo {
		return fmt.Errorf("%w: %d <= %d (ms)", ErrOutOfOrder, t, last)
	}
	// As in a Prometheus scrape loop, a failed gather still counts: every series
	// missing from it (all of them if it returned nothing) gets a stale marker, so a
	// broken source reads as "no data", never as its last values.
	mfs, gatherErr := s.gatherer.Gather()
	var pts []point
	for _, mf := range mfs {
		pts = appendFamily(pts, mf)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for i := range pts {
		s.append(pts[i].lset, t, pts[i].v)
	}
	cutoff := t - s.retention.Milliseconds()
	for h, list := range s.series {
		kept := list[:0]
		for _, ms := range list {
			if ms.gen != s.gen && !ms.stale {
				ms.samples = append(ms.samples, sample{t: t, v: staleNaN})
				ms.stale = true
			}
			if ms.trim(cutoff) {
				kept = append(kept, ms)
			} else {
				s.nSeries--
			}
		}
		if len(kept) == 0 {
			delete(s.series, h)
		} else {
			clear(list[len(kept):])
			s.series[h] = kept
		}
	}
	if !s.haveT {
		s.firstT = t
	}
	s.haveT = true
	s.lastT = t
	if gatherErr != nil {
		return fmt.Errorf("embedded: gather (%d families stored): %w", len(mfs), gatherErr)
	}
	return nil
}

// append adds one sample to the series with lset, creating it if needed. A sample not
// after the series' last one is dropped (duplicate series in one gather).
func (s *Store) append(lset labels.Labels, t int64, v float64) {
	h := lset.Hash()
	var ms *memSeries
	for _, c := range s.series[h] {
		if labels.Equal(c.lset, lset) {
			ms = c
			break
		}
	}
	if ms == nil {
		ms = &memSeries{lset: lset}
		s.series[h] = append(s.series[h], ms)
		s.nSeries++
	}
	if n := len(ms.samples); n > 0 && ms.samples[n-1].t >= t {
		return
	}
	ms.samples = append(ms.samples, sample{t: t, v: v})
	ms.gen = s.gen
	ms.stale = false
}

// trim drops samples before cutoff and reports whether any remain. It reallocates only
// once enough samples have expired, so the amortised cost is small and memory stays
// within about Retention/Interval plus a quarter per series.
func (ms *memSeries) trim(cutoff int64) bool {
	n := len(ms.samples)
	i := sort.Search(n, func(i int) bool { return ms.samples[i].t >= cutoff })
	if i == n {
		return false
	}
	if i >= 32 || (i > 0 && i*4 >= n) {
		kept := make([]sample, n-i, n)
		copy(kept, ms.samples[i:])
		ms.samples = kept
	}
	return true
}

// Span is how much history the Store holds: from the oldest retained collect to the
// newest, at most Retention. It is 0 before the second collect. A query over a range
// [r] should not be trusted until Span() >= r.
func (s *Store) Span() time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.haveT {
		return 0
	}
	return time.Duration(s.lastT-s.oldest()) * time.Millisecond
}

// oldest is the earliest timestamp (ms) queries may see: samples before it are expired
// even if not yet trimmed. The caller holds s.mu.
func (s *Store) oldest() int64 {
	if !s.haveT {
		return math.MinInt64
	}
	return max(s.firstT, s.lastT-s.retention.Milliseconds())
}

// Stats counts what the Store holds.
type Stats struct {
	Series  int // series with at least one retained sample
	Samples int // retained samples, stale markers included
}

// Stats reports the number of series and samples held.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{Series: s.nSeries}
	for _, list := range s.series {
		for _, ms := range list {
			st.Samples += len(ms.samples)
		}
	}
	return st
}

// Query evaluates an instant PromQL query at ts and returns the same value types as
// client_golang's api/prometheus/v1 Query: model.Vector, model.Matrix, *model.Scalar or
// *model.String. An unknown series gives an empty (non-nil) model.Vector. Parse and
// evaluation errors are returned as errors.
func (s *Store) Query(ctx context.Context, query string, ts time.Time) (model.Value, error) {
	q, err := s.engine.NewInstantQuery(ctx, s, nil, query, ts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("embedded: query %q: %w", query, res.Err)
	}
	if len(res.Warnings) > 0 {
		warns, infos := res.Warnings.AsStrings(query, 10, 10)
		s.log.Debug("embedded query annotations", zap.String("query", query),
			zap.Strings("warnings", warns), zap.Strings("infos", infos))
	}
	return toModelValue(res.Value)
}

// staleNaN is Prometheus's stale marker: the engine treats a series as ended from it on.
var staleNaN = math.Float64frombits(value.StaleNaN)
