package judge

import (
	"math"
	"sort"
)

// Histogram is a cumulative latency histogram in seconds, as Prometheus keeps it:
// Counts[i] observations were <= Bounds[i]; Count is the total (the +Inf bucket).
// Bounds are ascending.
type Histogram struct {
	Bounds []float64
	Counts []float64
	Count  float64
}

// ClusterStats are one cluster's cumulative counters since some fixed origin. The judge
// only ever uses differences between two ClusterStats of the same cluster.
type ClusterStats struct {
	Requests float64
	Errors   float64
	Latency  Histogram
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

// quantileBucket returns the index of the smallest bound at or above which a fraction q
// of observations lie (len(Bounds) when that is the +Inf bucket).
func (h Histogram) quantileBucket(q float64) int {
	rank := q * h.Count
	return sort.Search(len(h.Counts), func(i int) bool { return h.Counts[i] >= rank })
}

// boundAtLeast returns the index of the smallest bound >= v (len(Bounds) for +Inf).
func (h Histogram) boundAtLeast(v float64) int {
	return sort.SearchFloat64s(h.Bounds, v)
}

// boundAtMost returns the index of the largest bound <= v, or -1 when every bound is
// above v.
func (h Histogram) boundAtMost(v float64) int {
	i := sort.SearchFloat64s(h.Bounds, v)
	if i < len(h.Bounds) && h.Bounds[i] == v {
		return i
	}
	return i - 1
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
