package analyzer

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-mesh/sluice/model"
)

// planes builds Inputs.Health for one cluster: healthy/total per data plane, in order
// router, xds (a pair of -1 leaves that plane out: it does not carry the cluster).
func planes(cluster string, counts ...[2]int) map[string]ClusterHealth {
	names := []string{"router", "xds"}
	var h ClusterHealth
	for i, c := range counts {
		if c[0] >= 0 {
			h = append(h, PlaneHealth{Plane: names[i], Healthy: c[0], Total: c[1]})
		}
	}
	return map[string]ClusterHealth{cluster: h, "stable": {{Plane: "router", Healthy: 1, Total: 1}}}
}

// maxWeight is the highest canary weight the state ever wanted.
func maxWeight(st State) int {
	w := 0
	for _, p := range st.History {
		w = max(w, p.SetWeight, p.ActualWeight)
	}
	return max(w, st.SetWeight)
}

func (d *driver) countEvents(typ string) int {
	n := 0
	for _, e := range d.events {
		if e == typ {
			n++
		}
	}
	return n
}

// A canary with no healthy endpoint never gets weight: the step waits with the message
// and one waitingForHealth event, and aborts when the progress deadline (Argo's default
// 600 s here) has passed — not a tick earlier.
func TestDeadCanaryHoldsWeightThenAbortsAtDeadline(t *testing.T) {
	d := &driver{t: t, r: canary(weightStep(10), pauseStep(time.Hour)), now: t0, autoApply: true,
		health: planes("canary", [2]int{0, 1})}
	d.st = NewState(d.r, nil, t0)
	d.tick(Inputs{})
	d.expect(PhaseProgressing, 0, 0)
	if d.st.Message != "waiting for healthy canary endpoints: 0/1 (router)" {
		t.Fatalf("message %q", d.st.Message)
	}
	st := StatusOf(d.r, &d.st)
	if !strings.HasPrefix(st.Waiting, "waiting for healthy canary endpoints: 0/1 (router)") || st.WaitDeadline == nil ||
		!st.WaitDeadline.Equal(t0.Add(DefaultProgressDeadline)) {
		t.Fatalf("status waiting %q until %v", st.Waiting, st.WaitDeadline)
	}
	for _, step := range []time.Duration{time.Second, time.Minute, 8 * time.Minute, 58 * time.Second} {
		d.advance(step)
		d.expect(PhaseProgressing, 0, 0)
	}
	d.advance(999 * time.Millisecond) // 9m59.999s
	d.expect(PhaseProgressing, 0, 0)
	if n := d.countEvents(EventWaitingForHealth); n != 1 {
		t.Fatalf("%d waitingForHealth events, want 1: %v", n, d.eventMsgs)
	}
	d.advance(time.Millisecond) // 10m: the deadline
	d.expect(PhaseDegraded, 0, 0)
	if !d.st.Aborted || d.st.AbortCause != AbortByProgressDeadline || d.st.HealthWaitSince != nil ||
		!strings.Contains(d.st.Message, "aborted: progressDeadlineSeconds (600) exceeded: canary canary had no healthy endpoint for 10m0s; waiting for healthy canary endpoints: 0/1 (router)") {
		t.Fatalf("after the deadline: aborted %v cause %q message %q", d.st.Aborted, d.st.AbortCause, d.st.Message)
	}
	if w := maxWeight(d.st); w != 0 {
		t.Fatalf("the dead canary was given weight %d", w)
	}
	if !d.hasEvent(EventAborted) {
		t.Fatal("no aborted event")
	}
}

// A canary that comes up late: the step proceeds at the first tick it is healthy, and the
// wait ends (no abort later).
func TestLateCanaryProceeds(t *testing.T) {
	r := canary(weightStep(10), pauseStep(time.Hour))
	r.ProgressDeadline = 5 * time.Minute
	d := &driver{t: t, r: r, now: t0, autoApply: true, health: planes("canary", [2]int{0, 2})}
	d.st = NewState(r, nil, t0)
	d.tick(Inputs{})
	d.advance(4 * time.Minute)
	d.expect(PhaseProgressing, 0, 0)
	d.health = planes("canary", [2]int{1, 2})
	d.advance(time.Second)
	d.expect(PhasePaused, 1, 10)
	if d.st.HealthWaitSince != nil || d.st.ActualWeight != 10 {
		t.Fatalf("wait not ended: %+v", d.st)
	}
	d.advance(10 * time.Minute)
	d.expect(PhasePaused, 1, 10)
}

// Every data plane that carries the canary must have a healthy endpoint; one that does not
// carry it does not count; no report at all gates nothing.
func TestHealthGateEveryDataPlane(t *testing.T) {
	d := &driver{t: t, r: canary(weightStep(10), pauseStep(time.Hour)), now: t0, autoApply: true,
		health: planes("canary", [2]int{1, 1}, [2]int{0, 3})}
	d.st = NewState(d.r, nil, t0)
	d.tick(Inputs{})
	d.expect(PhaseProgressing, 0, 0)
	if d.st.Message != "waiting for healthy canary endpoints: 0/3 (xds)" {
		t.Fatalf("message %q", d.st.Message)
	}
	d.health = planes("canary", [2]int{1, 1}, [2]int{2, 3})
	d.advance(time.Second)
	d.expect(PhasePaused, 1, 10)

	// The xDS server alone carries it: its view decides.
	d = &driver{t: t, r: canary(weightStep(10)), now: t0, autoApply: true, health: planes("canary", [2]int{-1, 0}, [2]int{0, 1})}
	d.st = NewState(d.r, nil, t0)
	d.tick(Inputs{})
	d.expect(PhaseProgressing, 0, 0)

	// Health reported for other clusters only: nothing carries the canary.
	d = &driver{t: t, r: canary(weightStep(10)), now: t0, autoApply: true,
		health: map[string]ClusterHealth{"stable": {{Plane: "router", Healthy: 0, Total: 1}}}}
	d.st = NewState(d.r, nil, t0)
	d.tick(Inputs{})
	d.expect(PhaseHealthy, 1, 100)
}

// Only a raise waits: lowering the weight, header routes and pauses go on with a dead
// canary; the final 100% and promote --full wait too.
func TestOnlyRaisesWait(t *testing.T) {
	hr := model.Step{SetHeaderRoute: &model.SetHeaderRoute{Name: "h", Match: []model.HeaderMatch{{Name: "x", Value: model.StringMatch{Exact: "1"}}}}}
	d := newDriver(t, canary(weightStep(30), pauseStep(time.Minute), weightStep(10), hr, pauseStep(time.Minute)))
	d.expect(PhasePaused, 1, 30)
	d.health = planes("canary", [2]int{0, 1})
	d.advance(time.Minute)
	d.expect(PhasePaused, 4, 10) // 30 → 10 and the header route: no wait
	d.advance(time.Minute)
	d.expect(PhaseProgressing, 5, 10) // the final 100%: waits
	if !strings.HasPrefix(d.st.Message, WaitingForHealthPrefix) {
		t.Fatalf("message %q", d.st.Message)
	}
	d.health = nil
	d.advance(time.Second)
	d.expect(PhaseHealthy, 5, 100)

	d = newDriver(t, canary(weightStep(10), pauseStep(time.Hour), weightStep(50)))
	d.expect(PhasePaused, 1, 10)
	d.health = planes("canary", [2]int{0, 1})
	d.tick(Inputs{Commands: []CommandKind{CmdPromoteFull}})
	d.expect(PhaseProgressing, 3, 10)
	if !strings.HasPrefix(d.st.Message, WaitingForHealthPrefix) {
		t.Fatalf("promote --full with a dead canary: %q", d.st.Message)
	}
	d.health = planes("canary", [2]int{1, 1})
	d.advance(time.Second)
	d.expect(PhaseHealthy, 3, 100)
}

// The deadline counts from when the wait began, across restarts (the state's JSON round
// trip every tick) and across steps that do not raise the weight.
func TestHealthWaitSurvivesRestart(t *testing.T) {
	r := canary(weightStep(10))
	r.ProgressDeadline = 30 * time.Second
	d := &driver{t: t, r: r, now: t0, autoApply: true, health: planes("canary", [2]int{0, 1})}
	d.st = NewState(r, nil, t0)
	d.tick(Inputs{})
	d.advance(20 * time.Second)
	// A restart: the controller loads the saved state and bumps Gen (the data planes are new).
	d.st.Gen++
	d.advance(9 * time.Second)
	d.expect(PhaseProgressing, 0, 0)
	d.advance(time.Second)
	d.expect(PhaseDegraded, 0, 0)
	if !strings.Contains(d.st.Message, "progressDeadlineSeconds (30) exceeded") {
		t.Fatalf("message %q", d.st.Message)
	}
}

// An operator abort during the wait ends it; retry waits again from its own start.
func TestAbortAndRetryDuringHealthWait(t *testing.T) {
	d := &driver{t: t, r: canary(weightStep(10)), now: t0, autoApply: true, health: planes("canary", [2]int{0, 1})}
	d.st = NewState(d.r, nil, t0)
	d.tick(Inputs{})
	d.advance(time.Minute)
	d.tick(Inputs{Commands: []CommandKind{CmdAbort}})
	d.expect(PhaseDegraded, 0, 0)
	if d.st.AbortCause != AbortByOperator || d.st.HealthWaitSince != nil {
		t.Fatalf("abort: %+v", d.st)
	}
	d.tick(Inputs{Commands: []CommandKind{CmdRetry}})
	d.expect(PhaseProgressing, 0, 0)
	if d.st.HealthWaitSince == nil || !d.st.HealthWaitSince.Equal(d.now) {
		t.Fatalf("retry: wait since %v, want %v", d.st.HealthWaitSince, d.now)
	}
	if len(d.st.Releases) != 1 || d.st.Releases[0].Outcome != OutcomeAborted || d.st.Releases[0].AbortCause != AbortByOperator {
		t.Fatalf("the aborted attempt is not in the release history: %+v", d.st.Releases)
	}
}

// Blue/green: the switch (automatic, or asked by promote) waits for a healthy preview;
// the deadline aborts.
func TestBlueGreenSwitchWaitsForHealthyPreview(t *testing.T) {
	r := blueGreen(nil)
	d := &driver{t: t, r: r, now: t0, autoApply: true, health: planes("green", [2]int{0, 1})}
	d.st = NewState(r, nil, t0)
	d.tick(Inputs{})
	d.expect(PhaseProgressing, 0, 0)
	if d.st.Message != "waiting for healthy canary endpoints: 0/1 (router)" || d.st.Switched {
		t.Fatalf("switched to a dead preview: %+v", d.st)
	}
	d.health = planes("green", [2]int{1, 1})
	d.advance(time.Second)
	d.expect(PhaseProgressing, 1, 100)

	manual := blueGreen(func(bg *model.BlueGreenStrategy) { bg.AutoPromotionEnabled = false })
	manual.ProgressDeadline = time.Minute
	d = &driver{t: t, r: manual, now: t0, autoApply: true}
	d.st = NewState(manual, nil, t0)
	d.tick(Inputs{})
	d.expect(PhasePaused, 0, 0)
	d.health = planes("green", [2]int{0, 1})
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhaseProgressing, 0, 0)
	if d.st.Switched || !d.st.SwitchRequested {
		t.Fatalf("promote with a dead preview: %+v", d.st)
	}
	d.advance(time.Minute)
	d.expect(PhaseDegraded, 0, 0)
	if d.st.AbortCause != AbortByProgressDeadline || maxWeight(d.st) != 0 {
		t.Fatalf("after the deadline: %+v", d.st)
	}
}

// promote --full on blue/green switches at once (health permitting) and completes without
// the post-promotion analysis or the scale-down delay.
func TestBlueGreenPromoteFull(t *testing.T) {
	r := blueGreen(func(bg *model.BlueGreenStrategy) {
		bg.AutoPromotionEnabled = false
		bg.PostPromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{metric("post", nil)}}
	})
	d := newDriver(t, r)
	d.expect(PhasePaused, 0, 0)
	d.tick(Inputs{Commands: []CommandKind{CmdPromoteFull}})
	d.expect(PhaseHealthy, 1, 100)
	if len(d.pending) != 0 {
		t.Fatalf("post-promotion analysis measured after promote --full: %d", len(d.pending))
	}
}

// fakeHealth is a data plane's health view, changed by the test.
type fakeHealth struct {
	mu sync.Mutex
	m  map[string][3]int
}

func (f *fakeHealth) set(cluster string, healthy, ejected, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[cluster] = [3]int{healthy, ejected, total}
}

func (f *fakeHealth) ClusterHealth(cluster string) (int, int, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.m[cluster]
	return c[0], c[1], c[2], ok
}

func hasEventMsg(st RolloutStatus, typ, msg string) bool {
	for _, e := range st.Events {
		if e.Type == typ && strings.Contains(e.Message, msg) {
			return true
		}
	}
	return false
}

// The controller asks the data planes every tick: status shows each cluster's endpoints
// and the wait, health changes are events and gauges, and the step proceeds once the
// canary is healthy.
func TestControllerHealth(t *testing.T) {
	cfg := testConfig(weightStep(20), pauseStep(time.Hour))
	cfg.Rollouts[0].ProgressDeadline = time.Minute
	router := &fakeHealth{m: map[string][3]int{"stable": {1, 0, 1}, "canary": {0, 0, 1}, "other": {2, 0, 2}}}
	clock := &fakeClock{now: t0}
	h := &harness{t: t, clock: clock, plane: &fakePlane{}, reg: prometheus.NewRegistry()}
	c, err := NewController(cfg, Options{Registerer: h.reg, Clock: clock, DataPlanes: []DataPlane{h.plane},
		Store: &MemStore{}, Measurer: &fakeMeasurer{phases: map[string]MeasurementPhase{}},
		Health: []HealthSource{{Plane: "router", Reporter: router}}})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	runCtx(t, c)
	gauge := func(name, cluster string) float64 {
		v := map[string]*prometheus.GaugeVec{"sluice_cluster_healthy_endpoints": c.metrics.healthy,
			"sluice_cluster_ejected_endpoints": c.metrics.ejected, "sluice_cluster_endpoints": c.metrics.endpoints}[name]
		return testutil.ToFloat64(v.WithLabelValues(cluster, "router"))
	}

	st := h.waitStatus("waiting for the canary", func(s RolloutStatus) bool {
		return s.Phase == PhaseProgressing && strings.HasPrefix(s.Waiting, "waiting for healthy canary endpoints: 0/1 (router)")
	})
	want := []ClusterStatus{{Name: "stable", Role: "stable", Planes: ClusterHealth{{Plane: "router", Healthy: 1, Total: 1}}},
		{Name: "canary", Role: "canary", Planes: ClusterHealth{{Plane: "router", Healthy: 0, Total: 1}}}}
	if fmt.Sprint(st.Clusters) != fmt.Sprint(want) {
		t.Fatalf("clusters %+v, want %+v", st.Clusters, want)
	}
	if st.SetWeight != 0 || h.plane.canaryWeight() > 0 || st.WaitDeadline == nil || !st.WaitDeadline.Equal(t0.Add(time.Minute)) {
		t.Fatalf("status %+v", st)
	}
	if gauge("sluice_cluster_healthy_endpoints", "canary") != 0 || gauge("sluice_cluster_endpoints", "canary") != 1 ||
		gauge("sluice_cluster_healthy_endpoints", "other") != 2 {
		t.Fatal("cluster gauges wrong")
	}
	if !hasEventMsg(st, EventWaitingForHealth, "canary: waiting for healthy canary endpoints: 0/1 (router)") {
		t.Fatalf("no waitingForHealth event: %+v", st.Events)
	}

	router.set("canary", 1, 0, 1)
	st = h.waitStatus("weight 20 once the canary is healthy", at(PhasePaused, 1, 20))
	if !hasEventMsg(st, EventHealthChanged, "canary canary: 1/1 healthy endpoints in router (was 0/1)") {
		t.Fatalf("no healthChanged event: %+v", st.Events)
	}
	router.set("canary", 1, 1, 1) // an ejection
	st = h.waitStatus("the ejection", func(s RolloutStatus) bool {
		return hasEventMsg(s, EventHealthChanged, "canary canary: 1/1, 1 ejected healthy endpoints in router (was 1/1)")
	})
	if gauge("sluice_cluster_ejected_endpoints", "canary") != 1 || st.Clusters[1].Planes.String() != "1/1 (router, 1 ejected)" {
		t.Fatal("the ejection is not in the gauge or the status")
	}
	router.set("canary", 0, 1, 1) // its health check fails too
	st = h.waitStatus("the failed check", func(s RolloutStatus) bool {
		return hasEventMsg(s, EventHealthChanged, "canary canary: 0/1, 1 ejected healthy endpoints in router (was 1/1, 1 ejected)")
	})
	if gauge("sluice_cluster_healthy_endpoints", "canary") != 0 || st.Clusters[1].Planes[0].Healthy != 0 {
		t.Fatal("the failed check is not in the gauge or the status")
	}
	if got := testutil.ToFloat64(c.metrics.events.WithLabelValues("app", EventHealthChanged)); got != 3 {
		t.Fatalf("healthChanged events counted: %v", got)
	}
	if fmt.Sprint(st.Actions) != "[promote promoteFull abort]" {
		t.Fatalf("actions while paused: %v", st.Actions)
	}

	// A refused reload shows until a reload succeeds.
	c.SetReloadError(errors.New("reload refused: the configuration does not validate"), []string{"c.yaml:3: bad"})
	st = h.waitStatus("the reload error", func(s RolloutStatus) bool { return s.ReloadError != nil })
	if st.ReloadError.Diagnostics[0] != "c.yaml:3: bad" || !st.ReloadError.At.Equal(clock.Now()) {
		t.Fatalf("reload error %+v", st.ReloadError)
	}
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("the reload error cleared", func(s RolloutStatus) bool { return s.ReloadError == nil })
}

// With the canary never healthy, the controller aborts at the deadline, on its own.
func TestControllerAbortsAtProgressDeadline(t *testing.T) {
	cfg := testConfig(weightStep(20))
	cfg.Rollouts[0].ProgressDeadline = 90 * time.Second
	router := &fakeHealth{m: map[string][3]int{"stable": {1, 0, 1}, "canary": {0, 0, 1}}}
	clock := &fakeClock{now: t0}
	h := &harness{t: t, clock: clock, plane: &fakePlane{}, reg: prometheus.NewRegistry()}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{h.plane}, Store: &MemStore{},
		Health: []HealthSource{{Plane: "router", Reporter: router}}})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	runCtx(t, c)
	h.waitStatus("waiting", func(s RolloutStatus) bool { return strings.HasPrefix(s.Message, WaitingForHealthPrefix) })
	clock.Advance(89 * time.Second)
	h.waitStatus("still waiting", func(s RolloutStatus) bool {
		return s.Phase == PhaseProgressing && s.UpdatedAt.Equal(t0.Add(89*time.Second))
	})
	clock.Advance(time.Second)
	st := h.waitStatus("aborted", func(s RolloutStatus) bool { return s.Phase == PhaseDegraded })
	if st.AbortCause != AbortByProgressDeadline || !strings.Contains(st.Message, "progressDeadlineSeconds (90) exceeded") ||
		fmt.Sprint(st.Actions) != "[abort retry start]" || st.StepList[0].State != "aborted" {
		t.Fatalf("%+v", st)
	}
	if h.plane.canaryWeight() > 0 {
		t.Fatal("the data plane was given canary weight")
	}
}
