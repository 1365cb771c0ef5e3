package embedded

import (
	"context"
	"slices"
	"sort"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier implements storage.Queryable for the PromQL engine.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

// querier reads a Store between mint and maxt (ms, inclusive).
type querier struct {
	s          *Store
	mint, maxt int64
}

// Select returns the series matching every matcher, each with its samples in the
// hinted time range, sorted by labels. Series with no sample in range are left out.
func (q *querier) Select(_ context.Context, _ bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	var out []storage.Series
	q.s.mu.RLock()
	mint = max(mint, q.s.oldest())
	for _, list := range q.s.series {
		for _, ms := range list {
			if !matchAll(ms.lset, matchers) {
				continue
			}
			if w := window(ms.samples, mint, maxt); len(w) > 0 {
				out = append(out, &series{lset: ms.lset, samples: w})
			}
		}
	}
	q.s.mu.RUnlock()
	// Always sorted: cheap at this size, and it keeps results deterministic.
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return &seriesSet{list: out, i: -1}
}

// LabelValues returns the sorted values of label name among series matching matchers.
func (q *querier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	q.eachMatching(matchers, func(l labels.Labels) {
		if v := l.Get(name); v != "" {
			seen[v] = struct{}{}
		}
	})
	return sortedKeys(seen), nil, nil
}

// LabelNames returns the sorted label names among series matching matchers.
func (q *querier) LabelNames(_ context.Context, _ *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	q.eachMatching(matchers, func(l labels.Labels) {
		l.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
	})
	return sortedKeys(seen), nil, nil
}

// Close releases nothing: queriers hold no resources.
func (q *querier) Close() error { return nil }

func (q *querier) eachMatching(matchers []*labels.Matcher, f func(labels.Labels)) {
	q.s.mu.RLock()
	defer q.s.mu.RUnlock()
	mint := max(q.mint, q.s.oldest())
	for _, list := range q.s.series {
		for _, ms := range list {
			if matchAll(ms.lset, matchers) && len(window(ms.samples, mint, q.maxt)) > 0 {
				f(ms.lset)
			}
		}
	}
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func matchAll(l labels.Labels, matchers []*labels.Matcher) bool {
	for _, m := range matchers {
		if !matches(m, l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// matches is m.Matches(v), except that le and quantile values are compared in both
// spellings: Prometheus 3 stores le="1.0" where Prometheus 2 stored le="1", and
// queries written for either must keep working. Values here are stored the
// Prometheus 3 way, so `le="1"` and `le="1.0"` both select the 1 s bucket.
func matches(m *labels.Matcher, v string) bool {
	ok := m.Matches(v)
	if (m.Name != model.BucketLabel && m.Name != model.QuantileLabel) ||
		(m.Type != labels.MatchEqual && m.Type != labels.MatchNotEqual) {
		return ok
	}
	f, err := strconv.ParseFloat(m.Value, 64)
	if err != nil {
		return ok
	}
	norm := labels.FormatOpenMetricsFloat(f)
	if norm == m.Value {
		return ok
	}
	if m.Type == labels.MatchEqual {
		return ok || v == norm
	}
	return ok && v != norm
}

// window returns the samples with mint <= t <= maxt. The result shares the series'
// backing array, whose existing elements are never rewritten.
func window(ss []sample, mint, maxt int64) []sample {
	lo := sort.Search(len(ss), func(i int) bool { return ss[i].t >= mint })
	hi := sort.Search(len(ss), func(i int) bool { return ss[i].t > maxt })
	if lo >= hi {
		return nil
	}
	return ss[lo:hi:hi]
}

// seriesSet iterates a sorted list of series.
type seriesSet struct {
	list []storage.Series
	i    int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.list) }
func (s *seriesSet) At() storage.Series                { return s.list[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series is an immutable view of one series' samples.
type series struct {
	lset    labels.Labels
	samples []sample
}

func (s *series) Labels() labels.Labels { return s.lset }

// Iterator returns an iterator over the series' samples, reusing it when it can.
func (s *series) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if r, ok := it.(interface{ Reset(storage.Samples) }); ok {
		r.Reset(sampleView(s.samples))
		return it
	}
	return storage.NewListSeriesIterator(sampleView(s.samples))
}

// sampleView adapts []sample to storage.Samples without allocating per sample: Get
// returns a pointer into the (never rewritten) backing array.
type sampleView []sample

func (v sampleView) Get(i int) chunks.Sample { return &v[i] }
func (v sampleView) Len() int                { return len(v) }

// sample implements chunks.Sample for a float sample.
func (s *sample) T() int64                      { return s.t }
func (s *sample) ST() int64                     { return 0 }
func (s *sample) F() float64                    { return s.v }
func (s *sample) H() *histogram.Histogram       { return nil }
func (s *sample) FH() *histogram.FloatHistogram { return nil }
func (s *sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *sample) Copy() chunks.Sample           { c := *s; return &c }
