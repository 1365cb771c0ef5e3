package analyzer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// fakeEtcd is an in-memory stand-in for package ha on etcd: one current term whose
// writes alone pass the fence, a log of committed states that watches replay, the
// replicas' reports, and a command queue. The real thing is tested in package ha and
// end to end (e2e/ha); this one lets the controller's replicated mode be driven step by
// step.
type fakeEtcd struct {
	mu        sync.Mutex
	ambiguous bool // the next Save commits but fails (a request that timed out)
	rev       int64
	log       []StoredState
	leader    *fakeTerm
	reports   map[string]map[string]ReplicaApplied // live replica → its report
	queue     []Command
	taken     map[string]bool
	outcomes  map[string]Outcome
	changed   chan struct{}
	nextID    int
	loadErr   error // Load fails with it (etcd unreachable for reads)
	loads     int   // Load calls
}

func newFakeEtcd() *fakeEtcd {
	return &fakeEtcd{reports: map[string]map[string]ReplicaApplied{}, taken: map[string]bool{},
		outcomes: map[string]Outcome{}, changed: make(chan struct{})}
}

// broadcastLocked wakes every waiter.
func (e *fakeEtcd) broadcastLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// wait calls check under the lock until it returns true or ctx ends.
func (e *fakeEtcd) wait(ctx context.Context, check func() bool) error {
	for {
		e.mu.Lock()
		ok, ch := check(), e.changed
		e.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *fakeEtcd) latest() map[string]StoredState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]StoredState{}
	for _, s := range e.log {
		out[s.Rollout] = s
	}
	return out
}

// elect makes rep the leader with a new term.
func (e *fakeEtcd) elect(rep *fakeRepl) *fakeTerm {
	t := &fakeTerm{e: e, id: rep.id, lost: make(chan struct{})}
	e.mu.Lock()
	e.leader = t
	e.mu.Unlock()
	go func() {
		select {
		case rep.terms <- t:
		case <-t.lost:
		}
	}()
	return t
}

// fence revokes the current term in etcd without telling its holder (a partitioned
// leader): its next write is refused.
func (e *fakeEtcd) fence() {
	e.mu.Lock()
	e.leader = nil
	e.mu.Unlock()
}

// fakeRepl is one replica's Replication.
type fakeRepl struct {
	e     *fakeEtcd
	id    string
	terms chan Term
}

func (r *fakeRepl) Terms() <-chan Term      { return r.terms }
func (r *fakeRepl) LeaseTTL() time.Duration { return time.Second }

func (r *fakeRepl) WatchStates(ctx context.Context) <-chan StoredState {
	ch := make(chan StoredState)
	go func() {
		defer close(ch)
		next := 0
		for {
			var batch []StoredState
			if r.e.wait(ctx, func() bool { batch = append([]StoredState(nil), r.e.log[next:]...); return len(batch) > 0 }) != nil {
				return
			}
			for _, s := range batch {
				select {
				case ch <- s:
				case <-ctx.Done():
					return
				}
			}
			next += len(batch)
		}
	}()
	return ch
}

func (r *fakeRepl) ReportApplied(m map[string]ReplicaApplied) {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	if r.e.reports[r.id] != nil {
		r.e.reports[r.id] = m
		r.e.broadcastLocked()
	}
}

func (r *fakeRepl) WaitApplied(ctx context.Context, rollout string, rev int64) (string, error) {
	refusal := ""
	err := r.e.wait(ctx, func() bool {
		all := true
		for id, rep := range r.e.reports {
			a := rep[rollout]
			if a.Error != "" && a.Refused >= rev {
				refusal = id + ": " + a.Error
				return true
			}
			all = all && a.Revision >= rev
		}
		return all
	})
	return refusal, err
}

func (r *fakeRepl) Do(ctx context.Context, cmd Command) (Outcome, error) {
	r.e.mu.Lock()
	r.e.nextID++
	cmd.ID = fmt.Sprintf("c%d", r.e.nextID)
	r.e.queue = append(r.e.queue, cmd)
	r.e.broadcastLocked()
	r.e.mu.Unlock()
	var o Outcome
	if err := r.e.wait(ctx, func() bool { var ok bool; o, ok = r.e.outcomes[cmd.ID]; return ok }); err != nil {
		return o, err
	}
	return o, nil
}

// fakeTerm is a term of fakeEtcd.
type fakeTerm struct {
	e    *fakeEtcd
	id   string
	lost chan struct{}
	once sync.Once
	// expired: the lease ran out and Valid says so, but Lost is not closed yet (the
	// holder has not been told); valid counts the Valid calls after that.
	expired atomic.Bool
	checks  atomic.Int64
}

func (t *fakeTerm) Lost() <-chan struct{} { return t.lost }
func (t *fakeTerm) lose()                 { t.once.Do(func() { close(t.lost) }) }

func (t *fakeTerm) Valid() bool {
	if t.expired.Load() {
		t.checks.Add(1)
		return false
	}
	select {
	case <-t.lost:
		return false
	default:
		return true
	}
}

// fencedLocked: the write of a term that is not the current one is refused.
func (t *fakeTerm) fencedLocked() error {
	if t.e.leader != t {
		return ErrNotLeader
	}
	return nil
}

func (t *fakeTerm) Load(ctx context.Context) (map[string]StoredState, error) {
	t.e.mu.Lock()
	t.e.loads++
	t.e.broadcastLocked()
	err := t.fencedLocked()
	if err == nil {
		err = t.e.loadErr
	}
	t.e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return t.e.latest(), nil
}

func (t *fakeTerm) Save(ctx context.Context, rollout string, state []byte, cmdID string) (int64, error) {
	t.e.mu.Lock()
	defer t.e.mu.Unlock()
	if err := t.fencedLocked(); err != nil {
		return 0, err
	}
	if cmdID != "" && !slices.ContainsFunc(t.e.queue, func(c Command) bool { return c.ID == cmdID }) {
		return 0, ErrCommandWithdrawn
	}
	t.e.rev++
	t.e.log = append(t.e.log, StoredState{Rollout: rollout, State: append([]byte(nil), state...), Revision: t.e.rev})
	if cmdID != "" {
		t.e.outcomes[cmdID] = Outcome{Leader: t.id, Changed: true, Revision: t.e.rev}
		t.e.queue = slices.DeleteFunc(t.e.queue, func(c Command) bool { return c.ID == cmdID })
	}
	t.e.broadcastLocked()
	if t.e.ambiguous {
		t.e.ambiguous = false
		return 0, errors.New("etcdserver: request timed out")
	}
	return t.e.rev, nil
}

func (t *fakeTerm) Complete(ctx context.Context, cmdID, refusal string) error {
	t.e.mu.Lock()
	defer t.e.mu.Unlock()
	if err := t.fencedLocked(); err != nil {
		return err
	}
	if !slices.ContainsFunc(t.e.queue, func(c Command) bool { return c.ID == cmdID }) {
		return ErrCommandWithdrawn
	}
	t.e.queue = slices.DeleteFunc(t.e.queue, func(c Command) bool { return c.ID == cmdID })
	t.e.rev++
	t.e.outcomes[cmdID] = Outcome{Leader: t.id, Error: refusal, Revision: t.e.rev}
	t.e.broadcastLocked()
	return nil
}

func (t *fakeTerm) Commands(ctx context.Context) <-chan Command {
	ch := make(chan Command)
	go func() {
		defer close(ch)
		for {
			var c Command
			if t.e.wait(ctx, func() bool {
				for _, q := range t.e.queue {
					if !t.e.taken[q.ID] {
						c = q
						t.e.taken[q.ID] = true
						return true
					}
				}
				return false
			}) != nil {
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// recPlane is a data plane that records every canary weight it was handed, and can
// hold its acknowledgements (an xDS fleet that has not ACKed yet).
type recPlane struct {
	mu      sync.Mutex
	weights []int
	held    chan struct{} // non-nil: WaitApplied blocks until it is closed
}

func (p *recPlane) Apply(s *model.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := s.Listeners[0].Routes[0].WeightOf("canary")
	if n := len(p.weights); n == 0 || p.weights[n-1] != w {
		p.weights = append(p.weights, w)
	}
	return nil
}

func (p *recPlane) WaitApplied(ctx context.Context, v uint64) error {
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *recPlane) hold() {
	p.mu.Lock()
	p.held = make(chan struct{})
	p.mu.Unlock()
}

func (p *recPlane) release() {
	p.mu.Lock()
	close(p.held)
	p.held = nil
	p.mu.Unlock()
}

func (p *recPlane) history() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.weights...)
}

func (p *recPlane) serves() int {
	h := p.history()
	if len(h) == 0 {
		return -1
	}
	return h[len(h)-1]
}

// member is one replica: its controller, data plane, measurer.
type member struct {
	repl  *fakeRepl
	c     *Controller
	plane *recPlane
	meas  *fakeMeasurer
	gate  *gatedMeasurer // replaces meas when set
	stop  func()
}

func startMember(t *testing.T, e *fakeEtcd, id string, cfg *model.Config, gate *gatedMeasurer) *member {
	t.Helper()
	m := &member{repl: &fakeRepl{e: e, id: id, terms: make(chan Term)}, plane: &recPlane{},
		meas: &fakeMeasurer{phases: map[string]MeasurementPhase{}}, gate: gate}
	var meas Measurer = m.meas
	if gate != nil {
		meas = gate
	}
	e.mu.Lock()
	e.reports[id] = map[string]ReplicaApplied{}
	e.mu.Unlock()
	c, err := NewController(cfg, Options{Registerer: prometheus.NewRegistry(), DataPlanes: []DataPlane{m.plane},
		Measurer: meas, Tick: 50 * time.Millisecond, Replication: m.repl, InitialStates: e.latest()})
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
	m.stop = runCtx(t, c)
	return m
}

// kill stops the member as kill -9 would, and drops it from the live replicas.
func (m *member) kill() {
	m.stop()
	m.repl.e.mu.Lock()
	delete(m.repl.e.reports, m.repl.id)
	m.repl.e.broadcastLocked()
	m.repl.e.mu.Unlock()
}

func (m *member) status(t *testing.T) RolloutStatus {
	t.Helper()
	st, ok := m.c.Get("app")
	if !ok {
		t.Fatal("no rollout app")
	}
	return st
}

func (m *member) waitStatus(t *testing.T, what string, ok func(RolloutStatus) bool) RolloutStatus {
	t.Helper()
	var st RolloutStatus
	testenv.WaitFor(t, 10*time.Second, m.repl.id+": "+what, func() bool {
		st, _ = m.c.Get("app")
		return ok(st)
	})
	return st
}

func (m *member) waitServes(t *testing.T, w int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%s serves canary weight %d", m.repl.id, w), func() bool { return m.plane.serves() == w })
}

// TestReplicatedLeaderDecidesEveryReplicaServes: only the leader steps; every replica
// serves its states; a step completes (actualWeight) only when every replica's data
// planes applied it; commands given to a follower are carried out by the leader and
// their effect is visible on the follower when the call returns.
func TestReplicatedLeaderDecidesEveryReplicaServes(t *testing.T) {
	e := newFakeEtcd()
	cfg := testConfig(weightStep(20), pauseStep(time.Hour), weightStep(50), pauseStep(time.Hour))
	ms := []*member{startMember(t, e, "a", cfg, nil), startMember(t, e, "b", cfg, nil), startMember(t, e, "c", cfg, nil)}

	// Nobody leads: nobody decides, every replica serves 100% stable.
	for _, m := range ms {
		m.waitServes(t, 0)
	}
	if n := len(e.latest()); n != 0 {
		t.Fatalf("%d states written with no leader", n)
	}
	e.elect(ms[0].repl)
	paused := func(w int) func(RolloutStatus) bool {
		return func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.SetWeight == w && s.ActualWeight == w }
	}
	first := ms[0].waitStatus(t, "paused at 20", paused(20))
	for _, m := range ms {
		m.waitServes(t, 20)
		st := m.waitStatus(t, "the leader's state", paused(20))
		if st.PauseEndsAt == nil || !st.PauseEndsAt.Equal(*first.PauseEndsAt) {
			t.Errorf("%s: pause ends at %v, the leader's at %v", m.repl.id, st.PauseEndsAt, first.PauseEndsAt)
		}
	}

	// One replica's data plane holds its ACKs: the next step waits for it.
	ms[2].plane.hold()
	if err := ms[1].c.Promote("app", false); err != nil {
		t.Fatal(err)
	}
	if st := ms[1].status(t); st.SetWeight != 50 {
		t.Fatalf("the follower's view after its promote returned: setWeight %d, want 50", st.SetWeight)
	}
	ms[0].waitServes(t, 50)
	ms[2].waitServes(t, 50) // applied, not acknowledged
	time.Sleep(300 * time.Millisecond)
	if st := ms[0].status(t); st.ActualWeight != 20 || st.Phase == PhasePaused {
		t.Fatalf("step completed before every replica applied it: %s actual %d", st.Phase, st.ActualWeight)
	}
	ms[2].plane.release()
	ms[0].waitStatus(t, "paused at 50 once every replica applied it", paused(50))

	// A refused command reports the leader's reason; a command that changes nothing
	// completes too.
	if err := ms[2].c.Retry("app"); err == nil || err.Error() != ErrNotAborted.Error() {
		t.Errorf("retry of a running rollout: %v, want %q", err, ErrNotAborted)
	}
	if err := ms[2].c.Abort("app"); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		m.waitServes(t, 0)
	}
	ms[1].waitStatus(t, "aborted", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	for _, m := range ms[1:] {
		if n := m.meas.count; n != 0 {
			t.Errorf("follower %s measured %d times", m.repl.id, n)
		}
	}
}

// TestReplicatedFailoverKeepsStepAndWeights: a new leader resumes at the same step with
// the same pause deadline, and no replica's data plane ever serves another weight on
// the way (no flap to 0 or 100).
func TestReplicatedFailoverKeepsStepAndWeights(t *testing.T) {
	e := newFakeEtcd()
	m := metric("errors", func(m *model.Metric) { m.Interval = time.Hour; m.Count = 3 })
	cfg := testConfig(weightStep(30), pauseStep(time.Hour), analysisStep(m), weightStep(60))
	ms := []*member{startMember(t, e, "a", cfg, nil), startMember(t, e, "b", cfg, nil), startMember(t, e, "c", cfg, nil)}
	e.elect(ms[0].repl)
	before := ms[0].waitStatus(t, "paused at 30", func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.ActualWeight == 30 })

	ms[0].kill()
	e.fence()
	e.elect(ms[1].repl)
	time.Sleep(200 * time.Millisecond) // the new leader's first decisions
	after := ms[1].status(t)
	if after.Step != before.Step || !after.PauseEndsAt.Equal(*before.PauseEndsAt) || after.SetWeight != 30 || after.ActualWeight != 30 {
		t.Errorf("after failover: step %d pause %v weight %d/%d; before: step %d pause %v", after.Step, after.PauseEndsAt,
			after.SetWeight, after.ActualWeight, before.Step, before.PauseEndsAt)
	}
	// Into the analysis: one measurement counted, then the leader dies mid-analysis.
	if err := ms[2].c.Promote("app", false); err != nil {
		t.Fatal(err)
	}
	mid := ms[1].waitStatus(t, "one measurement", func(s RolloutStatus) bool {
		return len(s.AnalysisRuns) == 1 && s.AnalysisRuns[0].Metrics[0].Count == 1
	})
	ms[1].kill()
	e.fence()
	e.elect(ms[2].repl)
	time.Sleep(200 * time.Millisecond)
	got := ms[2].status(t)
	if got.Step != mid.Step || got.AnalysisRuns[0].Metrics[0].Count != 1 || got.SetWeight != 30 {
		t.Errorf("after the second failover: step %d count %d weight %d, want step %d count 1 weight 30", got.Step,
			got.AnalysisRuns[0].Metrics[0].Count, got.SetWeight, mid.Step)
	}
	if n := ms[2].meas.count; n != 0 {
		t.Errorf("the new leader measured again before the interval: %d", n)
	}
	for _, m := range ms {
		if h := m.plane.history(); strings.Trim(fmt.Sprint(h), "[]") != "0 30" {
			t.Errorf("%s served canary weights %v, want 0 then 30", m.repl.id, h)
		}
	}
}

// TestReplicatedDeposedLeaderNeverActsUnsaved: a leader whose term etcd has revoked (a
// partition it has not noticed) decides an abort on a failed measurement; etcd refuses
// the write, so its data plane never serves the abort, no webhook hears of it, and it
// follows.
func TestReplicatedDeposedLeaderNeverActsUnsaved(t *testing.T) {
	e := newFakeEtcd()
	m := metric("errors", func(m *model.Metric) { m.Interval = 100 * time.Millisecond; m.Count = 100 })
	cfg := testConfig(weightStep(40), analysisStep(m), weightStep(80))
	ms := []*member{startMember(t, e, "a", cfg, gated()), startMember(t, e, "b", cfg, nil)}
	term := e.elect(ms[0].repl)
	g := ms[0].gate
	<-g.started
	g.answer <- MeasurementSuccessful
	<-g.started // the second measurement is in flight: its start is saved
	e.fence()
	g.answer <- MeasurementFailed
	testenv.WaitFor(t, 10*time.Second, "the deposed leader to follow", func() bool { return stoppedDeciding(ms[0]) })
	if !term.Valid() {
		t.Error("the fake term was closed: this test is about a leader that has not noticed")
	}
	for _, mb := range ms {
		if h := mb.plane.history(); strings.Trim(fmt.Sprint(h), "[]") != "0 40" {
			t.Errorf("%s served %v, want 0 then 40: an unsaved abort took effect", mb.repl.id, h)
		}
		if st := mb.status(t); st.Aborted {
			t.Errorf("%s shows an abort etcd never committed", mb.repl.id)
		}
	}
	for _, s := range e.latest() {
		st, err := DecodeState(s.State)
		if err != nil || st.Aborted {
			t.Errorf("etcd holds %v %v", st, err)
		}
	}
}

// gatedMeasurer hands out one measurement at a time: started says one began, answer
// gives its phase.
type gatedMeasurer struct {
	started chan struct{}
	answer  chan MeasurementPhase
}

func gated() *gatedMeasurer {
	return &gatedMeasurer{started: make(chan struct{}), answer: make(chan MeasurementPhase)}
}

func (g *gatedMeasurer) Measure(ctx context.Context, req MeasureRequest) Measurement {
	select {
	case g.started <- struct{}{}:
	case <-ctx.Done():
		return Measurement{Phase: MeasurementError}
	}
	select {
	case p := <-g.answer:
		return Measurement{Phase: p, Value: "[1]", StartedAt: req.Now, FinishedAt: req.Now}
	case <-ctx.Done():
		return Measurement{Phase: MeasurementError}
	}
}

// stoppedDeciding reports whether m's controller has no term (read on its goroutine).
func stoppedDeciding(m *member) bool {
	done := make(chan bool, 1)
	if err := m.c.do(func() error { done <- m.c.rep.term == nil; return nil }); err != nil {
		return false
	}
	return <-done
}

// TestReplicatedAmbiguousSaveIsReadBack: a save that etcd applied although the leader saw
// it fail (a request that timed out) is not decided over: the leader reads the states
// again, serves the committed one, and the command it carried is reported done once.
func TestReplicatedAmbiguousSaveIsReadBack(t *testing.T) {
	e := newFakeEtcd()
	cfg := testConfig(weightStep(20), model.Step{Pause: &model.Pause{}}, weightStep(50), model.Step{Pause: &model.Pause{}})
	ms := []*member{startMember(t, e, "a", cfg, nil), startMember(t, e, "b", cfg, nil)}
	e.elect(ms[0].repl)
	ms[0].waitStatus(t, "paused at 20", func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.ActualWeight == 20 })
	e.mu.Lock()
	e.ambiguous = true
	e.mu.Unlock()
	if err := ms[1].c.Promote("app", false); err != nil {
		t.Fatalf("promote whose save was applied but reported failed: %v", err)
	}
	for _, m := range ms {
		m.waitStatus(t, "paused at 50", func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.Step == 3 && s.ActualWeight == 50 })
	}
	var steps []int
	for _, s := range e.log {
		st, err := DecodeState(s.State)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(steps); n == 0 || steps[n-1] != st.Step {
			steps = append(steps, st.Step)
		}
	}
	if !slices.IsSorted(steps) {
		t.Errorf("steps committed: %v: the leader decided over a save etcd had applied", steps)
	}
}

// TestReplicatedNewLeaderDecidesNothingUntilItReadTheStates: a new leader that cannot
// read the rollout states back from etcd (reads failing) decides nothing — not even a
// timed pause that ran out meanwhile: what it last saw as a follower may be older than
// etcd's state — and catches up once the read succeeds.
func TestReplicatedNewLeaderDecidesNothingUntilItReadTheStates(t *testing.T) {
	e := newFakeEtcd()
	cfg := testConfig(weightStep(20), pauseStep(time.Second), weightStep(50), model.Step{Pause: &model.Pause{}})
	ms := []*member{startMember(t, e, "a", cfg, nil), startMember(t, e, "b", cfg, nil)}
	e.elect(ms[0].repl)
	st := ms[1].waitStatus(t, "paused at 20", func(s RolloutStatus) bool {
		return s.Phase == PhasePaused && s.ActualWeight == 20 && s.PauseEndsAt != nil
	})
	ms[0].kill()
	e.mu.Lock()
	e.loadErr = errors.New("etcdserver: request timed out")
	written, loads := len(e.log), e.loads
	e.mu.Unlock()
	e.elect(ms[1].repl)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Failed reads, each a tick in which the new leader could have decided, until the
	// pause has run out.
	if err := e.wait(ctx, func() bool { return e.loads >= loads+5 && time.Now().After(st.PauseEndsAt.Add(200*time.Millisecond)) }); err != nil {
		t.Fatalf("the new leader stopped trying to read the states: %v", err)
	}
	e.mu.Lock()
	n := len(e.log)
	e.loadErr = nil
	e.broadcastLocked()
	e.mu.Unlock()
	if n != written {
		t.Fatalf("the leader wrote %d states while it could not read them", n-written)
	}
	ms[1].waitStatus(t, "paused at 50", func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.Step == 3 && s.ActualWeight == 50 })
}

// TestReplicatedExpiredTermDecidesNothing: once its term is no longer valid (the lease
// ran out) a leader carries out nothing, even before it is told the term is lost, and
// even though etcd would still take its write here.
func TestReplicatedExpiredTermDecidesNothing(t *testing.T) {
	e := newFakeEtcd()
	cfg := testConfig(weightStep(20), model.Step{Pause: &model.Pause{}}, weightStep(50), model.Step{Pause: &model.Pause{}})
	ms := []*member{startMember(t, e, "a", cfg, nil), startMember(t, e, "b", cfg, nil)}
	term := e.elect(ms[0].repl)
	ms[0].waitStatus(t, "paused at 20", func(s RolloutStatus) bool { return s.Phase == PhasePaused && s.ActualWeight == 20 })
	e.mu.Lock()
	written := len(e.log)
	e.mu.Unlock()
	term.expired.Store(true)
	go ms[1].c.Promote("app", false) // fails when the test ends: nobody may carry it out
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.wait(ctx, func() bool { return len(e.queue) == 1 }); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "ten ticks of the expired leader", func() bool { return term.checks.Load() >= 10 })
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.log) != written || len(e.outcomes) != 0 {
		t.Fatalf("a leader whose term expired wrote %d states and completed %d commands", len(e.log)-written, len(e.outcomes))
	}
}
