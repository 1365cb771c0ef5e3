package judge_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/analyzer/judge/sim"
)

// roundTrip encodes a session's state to JSON and restores a new session from it.
func roundTrip(t *testing.T, cfg judge.Config, s *judge.Session) *judge.Session {
	t.Helper()
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatalf("encode state: %v", err)
	}
	var st judge.SessionState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode state: %v", err)
	}
	r, err := judge.Restore(cfg, st)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return r
}

// TestRestoreMidStreamSameDecision: a session stopped at second k, its state encoded to
// JSON and restored, takes the same decision at the same second as one that never
// stopped, with identical results at every update in between — for both signals, in
// burn-in, mid-block (counters scraped every 15 s) and after the final decision, on
// streams that fail and streams that pass.
func TestRestoreMidStreamSameDecision(t *testing.T) {
	cases := []struct {
		name string
		cfg  judge.Config
		st   sim.Stream
	}{
		{"errors 5x", judge.Config{Signal: judge.SignalErrors}, sim.Stream{RPS: 400, CanaryShare: 0.3, ErrorMult: 5}},
		{"errors healthy noisy", judge.Config{Signal: judge.SignalErrors}, sim.Stream{RPS: 2000, CanaryShare: 0.5, ErrorNoise: sim.Noise{Sigma: 0.5}}},
		{"latency 2x burn-in", judge.Config{Signal: judge.SignalLatency, BurnIn: 20 * time.Second}, sim.Stream{RPS: 300, LatencyMult: 2}},
		{"latency healthy", judge.Config{Signal: judge.SignalLatency}, sim.Stream{RPS: 2000, CanaryShare: 0.5}},
		{"errors scraped 15s", judge.Config{Signal: judge.SignalErrors, BurnIn: 30 * time.Second}, sim.Stream{RPS: 1000, CanaryShare: 0.2, ErrorMult: 5, ScrapeInterval: 15}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.MaxDuration = 3 * time.Minute
			c.st.Seed = 42
			// The uninterrupted run.
			var bs, cs []judge.ClusterStats
			sm := sim.NewStream(c.st)
			want := judge.NewSession(c.cfg, t0, judge.ClusterStats{}, judge.ClusterStats{})
			var wantRes []judge.Result
			final := 0
			for i := 1; i <= 180; i++ {
				b, cn := sm.Step()
				bs, cs = append(bs, b), append(cs, cn)
				r := want.Update(t0.Add(time.Duration(i)*time.Second), b, cn)
				wantRes = append(wantRes, r)
				if r.Decision.Final() && final == 0 {
					final = i
				}
			}
			if final == 0 {
				t.Fatalf("no final decision in 180 s")
			}
			t.Logf("%s at %d s", wantRes[final-1].Decision, final)
			for _, k := range []int{1, 7, 16, 29, final / 2, final - 1, final, final + 5} {
				if k < 1 || k > len(bs) {
					continue
				}
				s := judge.NewSession(c.cfg, t0, judge.ClusterStats{}, judge.ClusterStats{})
				for i := 1; i <= k; i++ {
					s.Update(t0.Add(time.Duration(i)*time.Second), bs[i-1], cs[i-1])
				}
				s = roundTrip(t, c.cfg, s)
				for i := k + 1; i <= len(bs); i++ {
					got := s.Update(t0.Add(time.Duration(i)*time.Second), bs[i-1], cs[i-1])
					if !reflect.DeepEqual(got, wantRes[i-1]) {
						t.Fatalf("restored at %d s: second %d: %s %q, uninterrupted %s %q", k, i,
							got.Decision, got.Message, wantRes[i-1].Decision, wantRes[i-1].Message)
					}
				}
			}
		})
	}
}

// TestStateIsACopy: changing a state State returned does not change the session.
func TestStateIsACopy(t *testing.T) {
	s := judge.NewSession(judge.Config{}, t0, judge.ClusterStats{}, judge.ClusterStats{})
	s.Update(t0.Add(time.Second), judge.ClusterStats{Requests: 100, Errors: 1}, judge.ClusterStats{Requests: 100})
	s.Update(t0.Add(2*time.Second), judge.ClusterStats{Requests: 200, Errors: 2}, judge.ClusterStats{Requests: 200, Errors: 1})
	st := s.State()
	before, _ := json.Marshal(s.State())
	st.Fail.LogW[0] = 99
	st.PrevBaseline.Requests = -1
	after, _ := json.Marshal(s.State())
	if string(before) != string(after) {
		t.Fatal("mutating the returned state changed the session")
	}
}

func TestRestoreRefusesForeignState(t *testing.T) {
	s := judge.NewSession(judge.Config{Signal: judge.SignalErrors}, t0, judge.ClusterStats{}, judge.ClusterStats{})
	st := s.State()
	if _, err := judge.Restore(judge.Config{Signal: judge.SignalLatency}, st); err == nil || !strings.Contains(err.Error(), "signal") {
		t.Fatalf("latency config restoring an errors state: %v", err)
	}
	bad := s.State()
	bad.Version = 99
	if _, err := judge.Restore(judge.Config{}, bad); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("version 99: %v", err)
	}
	if _, err := judge.Restore(judge.Config{}, judge.SessionState{Version: st.Version, Signal: judge.SignalErrors}); err == nil {
		t.Fatal("an empty state was restored")
	}
	broken := s.State()
	broken.Fail.LogW = broken.Fail.LogW[:2]
	if _, err := judge.Restore(judge.Config{}, broken); err == nil {
		t.Fatal("a state with a truncated test was restored")
	}
}

// TestTrackerRestoreAfterCounterReset: a Tracker restored after its process restarted
// sees the counters start from zero again; it drops that interval, keeps its evidence and
// still fails a bad canary.
func TestTrackerRestoreAfterCounterReset(t *testing.T) {
	reg, req, errs, _ := routerRegistry(t)
	ctx := context.Background()
	tr := judge.NewTracker(judge.Config{}, judge.GathererSource(reg), "stable", "canary")
	if _, ok := tr.State(); ok {
		t.Fatal("state before the first step")
	}
	add := func() { serveSecond(req, errs, 1, 8) }
	if _, err := tr.Step(ctx, t0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		add()
		if r, err := tr.Step(ctx, t0.Add(time.Duration(i)*time.Second)); err != nil || r.Decision.Final() {
			t.Fatalf("second %d: %+v %v", i, r, err)
		}
	}
	st, ok := tr.State()
	if !ok {
		t.Fatal("no state after steps")
	}
	b, _ := json.Marshal(st)
	var st2 judge.SessionState
	if err := json.Unmarshal(b, &st2); err != nil {
		t.Fatal(err)
	}
	// The process restarts: a fresh registry, counters from zero.
	reg2, req2, errs2, _ := routerRegistry(t)
	req, errs = req2, errs2
	tr2 := judge.NewTracker(judge.Config{}, judge.GathererSource(reg2), "stable", "canary")
	if err := tr2.Restore(st2); err != nil {
		t.Fatal(err)
	}
	var r judge.Result
	for i := 4; i <= 60; i++ {
		add()
		var err error
		if r, err = tr2.Step(ctx, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if r.Decision.Final() {
			break
		}
	}
	if r.Decision != judge.Fail || r.Details["counterResets"] != 1 {
		t.Fatalf("after restore: %s, details %v: %s", r.Decision, r.Details, r.Message)
	}
	if e := r.Details["elapsedSeconds"]; e > 30 {
		t.Fatalf("failed only after %v s", e)
	}
}
