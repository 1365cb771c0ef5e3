package judge

import (
	"math"
	"sort"
)

// Histogram is a cumulative latency histogram in seconds, as Prometheus keeps it:
// Counts[i] observations were <= Bounds[i]; Count is the total (the +Inf bucket).
// Bounds are ascending.
type Histogram struct {
	Bounds []float64 `json:"bounds,omitempty"`
	Counts []float64 `json:"counts,omitempty"`
	Count  float64   `json:"count,omitempty"`
}

// ClusterStats are one cluster's cumulative counters since some fixed origin. The judge
// only ever uses differences between two ClusterStats of the same cluster.
type ClusterStats struct {
	Requests float64   `json:"requests,omitempty"`
	Errors   float64   `json:"errors,omitempty"`
	Latency  Histogram `json:"latency"`
}

func (h Histogram) clone() Histogram {
	h.Counts = append([]float64(nil), h.Counts...)
	return h
}

func (s ClusterStats) clone() ClusterStats {
	s.Latency = s.Latency.clone()
	return s
}

func sameBounds(a, b Histogram) bool {
	if len(a.Bounds) != len(b.Bounds) || len(a.Counts) != len(b.Counts) {
		return false
	}
	for i := range a.Bounds {
		if a.Bounds[i] != b.Bounds[i] {
			return false
		}
	}
	return true
}

// split locates v in the histogram: the index j of the bucket that holds it (len(Bounds)
// beyond the last bound) and the fraction f of that bucket's observations estimated to
// lie above v, from the histogram's own shape. Where the density falls across the bucket
// (a distribution's tail) the log of the survival function is interpolated as a quadratic
// in log-latency through the bucket's bounds and the next bound above (a log-normal tail
// is nearly that: within a few percent, where a straight line through the cumulative
// counts over-counts by up to half). Until the next bound has minTailCount observations
// above it, that straight line (the chord) is used: in a falling density it never
// under-counts. Where the density rises, the whole bucket counts as above v.
func (h Histogram) split(v float64) (j int, f float64) {
	j, f, _ = h.splitShape(v)
	return j, f
}

// splitShape is split, also reporting whether the bucket's shape was interpolated (false:
// the chord or the whole bucket, which over-count).
func (h Histogram) splitShape(v float64) (j int, f float64, shaped bool) {
	j = sort.SearchFloat64s(h.Bounds, v)
	if j >= len(h.Bounds) {
		return j, 0, true
	}
	lo, below := 0.0, 0.0
	if j > 0 {
		lo, below = h.Bounds[j-1], h.Counts[j-1]
	}
	hi := h.Bounds[j]
	if v <= lo || hi <= lo || !h.decreasingAt(v) {
		return j, 1, false
	}
	in := h.Counts[j] - below
	sLo, sHi := h.Count-below, h.Count-h.Counts[j] // observations above lo and above hi
	if in <= 0 {
		return j, 0, true
	}
	chord := (hi - v) / (hi - lo)
	if lo <= 0 || sHi <= 0 || j+1 >= len(h.Bounds) || h.Count-h.Counts[j+1] < minTailCount {
		return j, chord, false
	}
	x, x0, x1, x2 := math.Log(v), math.Log(lo), math.Log(hi), math.Log(h.Bounds[j+1])
	y0, y1, y2 := math.Log(sLo), math.Log(sHi), math.Log(h.Count-h.Counts[j+1])
	ly := y0*(x-x1)*(x-x2)/((x0-x1)*(x0-x2)) + y1*(x-x0)*(x-x2)/((x1-x0)*(x1-x2)) + y2*(x-x0)*(x-x1)/((x2-x0)*(x2-x1))
	s := math.Min(sLo, math.Max(sHi, math.Exp(ly)))
	return j, (s - sHi) / in, true
}

// minTailCount is how many observations above the next bound split needs to use it.
const minTailCount = 10

// countAt returns how many observations exceeded the point split located (bucket j,
// fraction f above it): the whole buckets above plus f × bucket j; and the Poisson
// variance weight of that count (whole buckets plus f² × bucket j).
func (h Histogram) countAt(j int, f float64) (count, varWeight float64) {
	if j >= len(h.Bounds) || len(h.Counts) != len(h.Bounds) {
		return 0, 0
	}
	below := 0.0
	if j > 0 {
		below = h.Counts[j-1]
	}
	above := math.Max(0, h.Count-h.Counts[j])
	in := math.Max(0, h.Counts[j]-below)
	return above + f*in, above + f*f*in
}

// decreasingAt reports whether the histogram's density in the bucket holding v is at
// least the next bucket's (so linear interpolation there over-counts exceedances).
func (h Histogram) decreasingAt(v float64) bool {
	j := sort.SearchFloat64s(h.Bounds, v)
	if j >= len(h.Bounds) || h.Count <= 0 {
		return false
	}
	density := func(i int) float64 {
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.Bounds[i-1], h.Counts[i-1]
		}
		if h.Bounds[i] <= lo {
			return 0
		}
		return (h.Counts[i] - below) / (h.Bounds[i] - lo)
	}
	if j+1 >= len(h.Bounds) {
		return true // the next bucket is +Inf: a tail
	}
	return density(j) >= density(j+1)
}

// countAbove returns how many observations exceeded the bucket bound at index i
// (i == len(Bounds) means +Inf: none).
func (h Histogram) countAbove(i int) float64 {
	if i >= len(h.Counts) {
		return 0
	}
	return math.Max(0, h.Count-h.Counts[i])
}

// sub returns h - o bucket by bucket; ok is false when the bounds differ or a count went
// down (a counter reset).
func (h Histogram) sub(o Histogram) (Histogram, bool) {
	if len(o.Bounds) == 0 && o.Count == 0 {
		return h, true
	}
	if len(h.Bounds) != len(o.Bounds) || len(h.Counts) != len(o.Counts) {
		return Histogram{}, false
	}
	d := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Count: h.Count - o.Count}
	if d.Count < 0 {
		return Histogram{}, false
	}
	for i := range h.Counts {
		if h.Bounds[i] != o.Bounds[i] {
			return Histogram{}, false
		}
		d.Counts[i] = h.Counts[i] - o.Counts[i]
		if d.Counts[i] < 0 {
			return Histogram{}, false
		}
	}
	return d, true
}

// Quantile estimates the q-quantile by linear interpolation inside the bucket that holds
// it, like PromQL's histogram_quantile (0 for an empty histogram; the highest finite bound
// when it lies in the +Inf bucket).
func (h Histogram) Quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * h.Count
	i := sort.Search(len(h.Counts), func(i int) bool { return h.Counts[i] >= rank })
	if i == len(h.Counts) {
		return h.Bounds[len(h.Bounds)-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = h.Bounds[i-1], h.Counts[i-1]
	}
	in := h.Counts[i] - below
	if in <= 0 {
		return h.Bounds[i]
	}
	return lo + (h.Bounds[i]-lo)*(rank-below)/in
}

// sub returns s - o; ok is false on a counter reset or a histogram layout change.
func (s ClusterStats) sub(o ClusterStats) (ClusterStats, bool) {
	d := ClusterStats{Requests: s.Requests - o.Requests, Errors: s.Errors - o.Errors}
	if d.Requests < 0 || d.Errors < 0 {
		return ClusterStats{}, false
	}
	h, ok := s.Latency.sub(o.Latency)
	if !ok {
		return ClusterStats{}, false
	}
	d.Latency = h
	return d, true
}
