package embedded

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// fleet450 is a registry shaped like a busy router: 450 series.
//
//	http_requests_total           2 clusters × 5 routes × 3 methods × 3 codes =  90
//	http_errors_total             2 clusters × 5 routes × 3 methods × 1 code  =  30
//	http_request_duration_seconds 2 clusters × 5 routes × 3 methods × 11      = 330
type fleet450 struct {
	*routerMetrics
	step int
}

var (
	fleetClusters = []string{"stable", "canary"}
	fleetRoutes   = []string{"/a", "/b", "/c", "/d", "/e"}
	fleetMethods  = []string{"GET", "POST", "PUT"}
	fleetCodes    = []string{"200", "404", "500"}
)

func newFleet450(t testing.TB) *fleet450 {
	m := newRouterMetrics(t)
	// Only the three router families: drop the gauge and summary from the registry.
	m.reg.Unregister(m.inflight)
	m.reg.Unregister(m.summary)
	return &fleet450{routerMetrics: m}
}

// tick adds one second of traffic to every series.
func (f *fleet450) tick() {
	f.step++
	for _, c := range fleetClusters {
		for _, r := range fleetRoutes {
			for _, me := range fleetMethods {
				for i, code := range fleetCodes {
					f.requests.WithLabelValues(me, r, code, c).Add(float64(10 + i + f.step%3))
				}
				f.errors.WithLabelValues(me, r, "500", c).Add(float64(f.step % 2))
				h := f.duration.WithLabelValues(me, r, c)
				h.Observe(0.003 * float64(1+f.step%9))
				h.Observe(0.07 * float64(1+f.step%5))
			}
		}
	}
}

// fill collects secs+1 times, one per simulated second.
func (f *fleet450) fill(t testing.TB, s *Store, secs int) {
	for sec := 0; sec <= secs; sec++ {
		f.tick()
		if err := s.Collect(at(sec)); err != nil {
			t.Fatal(err)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapGrowth is after - before as a signed number: the heap can shrink between the two
// readings (garbage of earlier tests collected), and an unsigned difference would then
// wrap to an enormous "growth". A shrink counts as 0.
func heapGrowth(before, after uint64) uint64 {
	if after < before {
		return 0
	}
	return after - before
}

// TestMemory450Series10Min stores 10 minutes of a 450-series registry at 1 s and checks
// what is held: every sample, and a heap well under the ~6 MiB DESIGN.md measured
// (bound 16 MiB to leave room for the race detector and GC timing).
func TestMemory450Series10Min(t *testing.T) {
	f := newFleet450(t)
	before := heapInUse()
	s := newStore(t, f.reg, 0)
	f.fill(t, s, 600)
	used := heapGrowth(before, heapInUse())
	st := s.Stats()
	if st.Series != 450 || st.Samples != 450*601 {
		t.Errorf("Stats = %+v, want 450 series × 601 samples", st)
	}
	t.Logf("450 series × 601 samples: %.2f MiB heap (%.1f B/sample)", float64(used)/(1<<20), float64(used)/float64(st.Samples))
	if used > 16<<20 {
		t.Errorf("heap for 10 min of 450 series = %.1f MiB, want < 16 MiB", float64(used)/(1<<20))
	}
	// And a realistic analysis query over it works.
	got := scalarOf(t, s, `sum(rate(http_errors_total{cluster="canary"}[1m])) / sum(rate(http_requests_total{cluster="canary"}[1m]))`, at(600))
	if got <= 0 || got >= 0.1 {
		t.Errorf("error ratio = %v", got)
	}
	runtime.KeepAlive(s)
}

var benchQueries = map[string]string{
	"p95":        `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{cluster="canary"}[1m])) by (le))`,
	"errorRatio": `sum(rate(http_errors_total{cluster="canary"}[1m])) / sum(rate(http_requests_total{cluster="canary"}[1m]))`,
	"p95by5m":    `histogram_quantile(0.95, sum by (le, cluster) (rate(http_request_duration_seconds_bucket[5m])))`,
}

// BenchmarkQuery times one instant query over 10 minutes of 450 series.
func BenchmarkQuery(b *testing.B) {
	f := newFleet450(b)
	s := newStore(b, f.reg, 0)
	f.fill(b, s, 600)
	for name, q := range benchQueries {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := s.Query(context.Background(), q, at(600))
				if err != nil {
					b.Fatal(err)
				}
				if len(v.(model.Vector)) == 0 {
					b.Fatal("empty result")
				}
			}
		})
	}
}

// BenchmarkCollect times one gather+append+trim of 450 series with a full 1 min retention.
func BenchmarkCollect(b *testing.B) {
	f := newFleet450(b)
	s := newStore(b, f.reg, time.Minute)
	f.fill(b, s, 60)
	sec := 61
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Collect(at(sec)); err != nil {
			b.Fatal(err)
		}
		sec++
	}
}

// BenchmarkMemory10Min reports the heap held by 10 minutes of 450 series at 1 s.
func BenchmarkMemory10Min(b *testing.B) {
	for b.Loop() {
		f := newFleet450(b)
		before := heapInUse()
		s := newStore(b, f.reg, 0)
		f.fill(b, s, 600)
		used := heapGrowth(before, heapInUse())
		b.ReportMetric(float64(used)/(1<<20), "MiB")
		runtime.KeepAlive(s)
	}
}

// TestHeapGrowthNeverWraps: a heap that shrank between the readings is no growth, not
// 2^64 bytes of it.
func TestHeapGrowthNeverWraps(t *testing.T) {
	if g := heapGrowth(10<<20, 4<<20); g != 0 {
		t.Fatalf("shrink: %d", g)
	}
	if g := heapGrowth(4<<20, 10<<20); g != 6<<20 {
		t.Fatalf("growth: %d", g)
	}
}
