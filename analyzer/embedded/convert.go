package embedded

import (
	"fmt"
	"math"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// point is one series' value in a gather.
type point struct {
	lset labels.Labels
	v    float64
}

// appendFamily appends the series a Prometheus server would have scraped from mf.
func appendFamily(pts []point, mf *dto.MetricFamily) []point {
	name := mf.GetName()
	b := labels.NewScratchBuilder(8)
	mk := func(m *dto.Metric, metric, extraName, extraValue string) labels.Labels {
		b.Reset()
		b.Add(labels.MetricName, metric)
		for _, lp := range m.GetLabel() {
			b.Add(lp.GetName(), lp.GetValue())
		}
		if extraName != "" {
			b.Add(extraName, extraValue)
		}
		b.Sort()
		return b.Labels()
	}
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			pts = append(pts, point{mk(m, name, "", ""), m.GetCounter().GetValue()})
		case dto.MetricType_GAUGE:
			pts = append(pts, point{mk(m, name, "", ""), m.GetGauge().GetValue()})
		case dto.MetricType_UNTYPED:
			pts = append(pts, point{mk(m, name, "", ""), m.GetUntyped().GetValue()})
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			for _, q := range s.GetQuantile() {
				pts = append(pts, point{mk(m, name, model.QuantileLabel, labels.FormatOpenMetricsFloat(q.GetQuantile())), q.GetValue()})
			}
			pts = append(pts,
				point{mk(m, name+"_sum", "", ""), s.GetSampleSum()},
				point{mk(m, name+"_count", "", ""), float64(s.GetSampleCount())})
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			count := float64(h.GetSampleCount())
			if h.SampleCountFloat != nil {
				count = h.GetSampleCountFloat()
			}
			for _, bk := range h.GetBucket() {
				if math.IsInf(bk.GetUpperBound(), +1) {
					continue // added below from the sample count, as Prometheus does
				}
				c := float64(bk.GetCumulativeCount())
				if bk.CumulativeCountFloat != nil {
					c = bk.GetCumulativeCountFloat()
				}
				pts = append(pts, point{mk(m, name+"_bucket", model.BucketLabel, labels.FormatOpenMetricsFloat(bk.GetUpperBound())), c})
			}
			pts = append(pts,
				point{mk(m, name+"_bucket", model.BucketLabel, "+Inf"), count},
				point{mk(m, name+"_sum", "", ""), h.GetSampleSum()},
				point{mk(m, name+"_count", "", ""), count})
		}
	}
	return pts
}

// toModelValue converts an engine result to the types client_golang's API client returns.
func toModelValue(v parser.Value) (model.Value, error) {
	switch v := v.(type) {
	case promql.Vector:
		out := make(model.Vector, 0, len(v))
		for _, s := range v {
			if s.H != nil {
				return nil, fmt.Errorf("embedded: native histogram results are not supported")
			}
			out = append(out, &model.Sample{Metric: toMetric(s.Metric), Value: model.SampleValue(s.F), Timestamp: model.Time(s.T)})
		}
		return out, nil
	case promql.Matrix:
		out := make(model.Matrix, 0, len(v))
		for _, s := range v {
			if len(s.Histograms) > 0 {
				return nil, fmt.Errorf("embedded: native histogram results are not supported")
			}
			ss := &model.SampleStream{Metric: toMetric(s.Metric), Values: make([]model.SamplePair, len(s.Floats))}
			for i, p := range s.Floats {
				ss.Values[i] = model.SamplePair{Timestamp: model.Time(p.T), Value: model.SampleValue(p.F)}
			}
			out = append(out, ss)
		}
		return out, nil
	case promql.Scalar:
		return &model.Scalar{Value: model.SampleValue(v.V), Timestamp: model.Time(v.T)}, nil
	case promql.String:
		return &model.String{Value: v.V, Timestamp: model.Time(v.T)}, nil
	default:
		return nil, fmt.Errorf("embedded: unexpected result type %T", v)
	}
}

func toMetric(l labels.Labels) model.Metric {
	m := make(model.Metric, l.Len())
	l.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return m
}
