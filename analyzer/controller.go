package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// DataPlane serves snapshots: the router (applied at once) or the xDS server (applied
// when every connected proxy has ACKed).
type DataPlane interface {
	// Apply starts serving snap. It must not block for long.
	Apply(*model.Snapshot) error
	// WaitApplied returns nil once version (or a later one) is in effect everywhere, or
	// an error (NACK with the proxies' message, ACK timeout, ctx done).
	WaitApplied(ctx context.Context, version uint64) error
}

// Clock is the time source; tests inject a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configures a Controller. Zero fields take sensible defaults.
type Options struct {
	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics not registered
	Clock      Clock                 // nil: the real clock
	DataPlanes []DataPlane           // none: every change counts as applied at once
	// StateDir holds the durable rollout state; "" uses cfg.ControlPlane.StateDir, and
	// when that is empty too, state lives in memory only.
	StateDir string
	Store    Store // overrides StateDir (tests)
	// Embedded evaluates prometheus metrics that have no address (nil: they are Error).
	Embedded Querier
	// Judge starts judge sessions (nil: judge metrics are Error "not available").
	Judge JudgeFactory
	// Measurer overrides the provider measurer (tests).
	Measurer Measurer
	// Webhooks receive events; nil uses cfg.ControlPlane.Webhooks.
	Webhooks []model.Webhook
	// AckTimeout bounds WaitApplied; 0 uses cfg's xDS AckTimeout, else 10 s.
	AckTimeout time.Duration
	// Tick is the longest the loop sleeps between steps (default 1 s).
	Tick time.Duration
	// Health are the data planes' views of cluster health, asked on every tick: a step
	// that raises the canary's weight waits for a healthy canary endpoint in each
	// (health.go), changes are healthChanged events, and status shows them. None:
	// nothing to wait for.
	Health []HealthSource
	// Discovery tells, on every tick, what endpoint discovery found for each cluster;
	// status shows it beside the cluster's health. nil: nothing to show.
	Discovery DiscoveryReporter
	// Replication, when set, makes this controller one replica of several (leader.go):
	// it decides only while it leads, and states live in etcd (StateDir and Store are
	// not used). InitialStates are the states read from etcd before the data planes
	// were bound: what it serves first.
	Replication   Replication
	InitialStates map[string]StoredState
}

// Controller runs every rollout of a config. Its decisions are serialized on one
// goroutine (Run): it steps the pure machine, persists each decision before it takes
// effect, hands snapshots to the publisher (which applies them to the data planes on its
// own goroutine, retrying a refusal with backoff) and publishes a read view. Reads
// (List, Get, Snapshot) only load that view: they never wait for the disk, a data plane
// or a decision. Commands (Start, Promote, Abort, Retry, Reload) are decisions: Run
// serves them and they return its outcome. All methods are safe for concurrent use.
type Controller struct {
	opts     Options
	log      *zap.Logger
	clock    Clock
	store    Store
	measurer Measurer
	metrics  *metrics
	hooks    *webhooks
	pub      *publisher

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	reqs   chan request

	inboxMu sync.Mutex
	inbox   map[string]*Inputs // measurement results and data-plane outcomes, by rollout
	epoch   atomic.Uint64      // replicated: inputs of an earlier term are dropped (leader.go)

	rep *replica // replicated mode (leader.go); nil alone

	view  atomic.Pointer[readView]
	ackTO atomic.Int64 // WaitApplied bound, nanoseconds

	// Owned by the decision goroutine (Run), or by NewController before it.
	cfg      *model.Config
	states   map[string]*State
	pubGen   map[string]uint64 // rollout → Gen in the last snapshot handed to the publisher
	dirty    bool              // config changed: publish even without a Gen change
	snap     *model.Snapshot
	unsaved  map[string]*saveRetry    // rollouts whose in-memory state is not durable yet
	saveErrs map[string]string        // last save error logged per rollout (logged once each)
	health   map[string]ClusterHealth // the data planes' last view, by cluster
	// discovery is what endpoint discovery last reported, by cluster.
	discovery map[string][]DiscoveryStatus
	recent    map[string][]Event // each rollout's latest events (maxRecentEvents), newest last

	reloadMu  sync.Mutex
	reloadErr *ReloadError // the last reload refused, nil once one succeeds
}

// maxRecentEvents bounds the events status shows per rollout.
const maxRecentEvents = 20

// ReloadError is a configuration reload that was refused: the running configuration
// stayed. Status shows it until a reload succeeds.
type ReloadError struct {
	Message string `json:"message"`
	// Diagnostics are the problems, one FILE:LINE: message each.
	Diagnostics []string  `json:"diagnostics,omitempty"`
	At          time.Time `json:"at"`
}

// readView is what reads see: the statuses and snapshot of the last decision.
type readView struct {
	order    []string
	statuses map[string]RolloutStatus
	snap     *model.Snapshot
}

// request is a decision asked of the decision goroutine.
type request struct {
	f    func() error
	done chan error
}

// saveRetry is a state that must still be saved, and when to try again.
type saveRetry struct {
	err     error
	next    time.Time
	backoff time.Duration
}

const (
	saveRetryMin = 500 * time.Millisecond
	saveRetryMax = 30 * time.Second
)

// ErrStopped is returned by commands once the controller has stopped.
var ErrStopped = errors.New("rollout controller stopped")

// PersistError is a decision that could not be saved durably. HTTPStatus makes the admin
// API answer 503, so `sluice abort` and friends exit non-zero with the message.
type PersistError struct {
	Rollout string
	// Applied: the decision took effect anyway (an abort reaches the data planes even
	// when the disk fails); false: nothing changed.
	Applied bool
	Err     error
}

func (e *PersistError) Error() string {
	if e.Applied {
		return fmt.Sprintf("rollout %s: applied to the data planes (every request back to stable), but its state could not be saved: %v; Sluice keeps retrying the save", e.Rollout, e.Err)
	}
	return fmt.Sprintf("rollout %s: not applied: its state could not be saved: %v", e.Rollout, e.Err)
}

// Unwrap returns the storage error.
func (e *PersistError) Unwrap() error { return e.Err }

// HTTPStatus is 503 Service Unavailable.
func (e *PersistError) HTTPStatus() int { return 503 }

// NewController loads the persisted state of cfg's rollouts (a rollout whose stored
// revision differs from the config starts a new release) and publishes the first
// snapshot; Run makes the decisions from then on. cfg must be valid (config package).
func NewController(cfg *model.Config, opts Options) (*Controller, error) {
	c := &Controller{
		opts: opts, log: opts.Logger, clock: opts.Clock, store: opts.Store,
		wake: make(chan struct{}, 1), reqs: make(chan request), states: map[string]*State{},
		inbox: map[string]*Inputs{}, pubGen: map[string]uint64{}, unsaved: map[string]*saveRetry{},
		saveErrs: map[string]string{}, recent: map[string][]Event{},
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.store == nil && opts.Replication == nil {
		dir := opts.StateDir
		if dir == "" {
			dir = cfg.ControlPlane.StateDir
		}
		if dir == "" {
			c.store = &MemStore{}
		} else {
			fs, err := NewFileStore(dir)
			if err != nil {
				return nil, err
			}
			c.store = fs
		}
	}
	c.measurer = opts.Measurer
	if c.measurer == nil {
		c.measurer = &ProviderMeasurer{Embedded: opts.Embedded, Judge: opts.Judge}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c.metrics = m
	hooks := opts.Webhooks
	if hooks == nil {
		hooks = cfg.ControlPlane.Webhooks
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.hooks = newWebhooks(c.ctx, hooks, c.log)
	report := c.applied
	if opts.Replication != nil {
		c.initReplicated(cfg, opts.Replication, opts.InitialStates)
		report = c.planesApplied
	} else if err := c.restore(cfg); err != nil {
		c.cancel()
		return nil, err
	}
	c.setAckTimeout(cfg)
	c.pollHealth()
	c.pollDiscovery()
	c.pub = newPublisher(c.ctx, opts.DataPlanes, c.log, c.ackTimeout, c.clock, report)
	c.dirty = true
	c.publish()
	c.publishView()
	return c, nil
}

// restore loads the stored states of cfg's rollouts (a changed revision starts a new
// release) and saves them.
func (c *Controller) restore(cfg *model.Config) error {
	loaded, err := c.store.Load()
	if err != nil {
		return fmt.Errorf("load rollout state: %w", err)
	}
	now := c.clock.Now()
	c.cfg = cfg
	for i := range cfg.Rollouts {
		r := &cfg.Rollouts[i]
		prev := loaded[r.Name]
		var st State
		switch {
		case prev != nil && prev.Revision == r.Revision:
			st = *prev
			// Measurements in flight died with the old process; data planes are new.
			for i := range st.Runs {
				for j := range st.Runs[i].Metrics {
					st.Runs[i].Metrics[j].InFlight = false
				}
			}
			st.Gen++
			c.log.Info("rollout state restored", zap.String("rollout", r.Name), zap.Int("step", st.Step),
				zap.Int("setWeight", st.SetWeight), zap.String("phase", string(st.Phase)), zap.Bool("aborted", st.Aborted))
		case prev != nil:
			st = NewState(r, prev, now)
			c.emit(&Event{Type: EventStarted, Rollout: r.Name, Revision: r.Revision, Time: now,
				Message: fmt.Sprintf("new revision %s (was %s): stable %s, canary %s", r.Revision, prev.Revision, st.Stable, st.Canary)})
		default:
			st = NewState(r, nil, now)
			c.emit(&Event{Type: EventStarted, Rollout: r.Name, Revision: r.Revision, Time: now,
				Message: fmt.Sprintf("release %s started: stable %s, canary %s", r.Revision, st.Stable, st.Canary)})
		}
		if err := c.store.Save(&st); err != nil {
			return fmt.Errorf("save rollout state: %w", err)
		}
		c.states[r.Name] = &st
		c.metrics.setRollout(&st)
	}
	return nil
}

// Run makes the decisions until ctx is done: it steps every rollout when something
// happened or a timer is due, and serves commands. It returns nil on cancellation; the
// controller is stopped afterwards.
func (c *Controller) Run(ctx context.Context) error {
	defer c.cancel()
	tick := c.opts.Tick
	if tick <= 0 {
		tick = time.Second
	}
	for {
		c.tick()
		wait := c.nextWait(tick)
		select {
		case <-ctx.Done():
			return nil
		case req := <-c.reqs:
			req.done <- req.f()
		case <-c.wake:
		case <-c.clock.After(wait):
		// Replicated (leader.go): leadership begins and ends, committed states arrive,
		// operator commands come from the term.
		case t := <-c.rep.termCh():
			c.lead(t)
		case <-c.rep.lostCh():
			c.follow("the term of leadership ended")
		case sc, ok := <-c.rep.stateCh():
			if !ok {
				c.rep.states = nil
				continue
			}
			c.observe(sc)
		case cmd, ok := <-c.rep.cmdCh():
			if !ok {
				c.rep.cmds = nil
				continue
			}
			c.carryOut(cmd)
		}
	}
}

// do runs f on the decision goroutine and returns its error.
func (c *Controller) do(f func() error) error {
	req := request{f: f, done: make(chan error, 1)}
	select {
	case c.reqs <- req:
	case <-c.ctx.Done():
		return ErrStopped
	}
	return <-req.done
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// nextWait is how long the loop may sleep: until the next timer of a rollout or the
// next save retry, at most tick.
func (c *Controller) nextWait(tick time.Duration) time.Duration {
	wait := tick
	now := c.clock.Now()
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Sub(now) < wait {
			wait = max(t.Sub(now), 0)
		}
	}
	for _, st := range c.states {
		earlier(NextWake(st))
	}
	for _, r := range c.unsaved {
		earlier(r.next)
	}
	return wait
}

// deliver queues inputs for rollout name and wakes the loop, unless they belong to an
// earlier epoch (replicated: a term that has ended).
func (c *Controller) deliver(epoch uint64, name string, f func(*Inputs)) {
	c.inboxMu.Lock()
	if c.epoch.Load() != epoch {
		c.inboxMu.Unlock()
		return
	}
	in := c.inbox[name]
	if in == nil {
		in = &Inputs{}
		c.inbox[name] = in
	}
	f(in)
	c.inboxMu.Unlock()
	c.poke()
}

// takeInputs removes and returns rollout name's queued inputs.
func (c *Controller) takeInputs(name string) Inputs {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	in := c.inbox[name]
	delete(c.inbox, name)
	if in == nil {
		return Inputs{}
	}
	return *in
}

// requeue puts inputs back in front of what arrived since (a decision that could not
// be saved is made again on the next tick).
func (c *Controller) requeue(name string, in Inputs) {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	p := c.inbox[name]
	if p == nil {
		p = &Inputs{}
		c.inbox[name] = p
	}
	p.Results = append(in.Results, p.Results...)
	p.Applied = append(in.Applied, p.Applied...)
}

// tick reads the data planes' health, steps every rollout with its queued inputs,
// retries saves that failed, publishes. Replicated, only the leader steps (decides);
// every replica publishes and reports.
func (c *Controller) tick() {
	c.pollHealth()
	c.pollDiscovery()
	if c.decides() {
		if c.rep != nil {
			c.reconcile(c.clock.Now())
		}
		names := make([]string, 0, len(c.states))
		for n := range c.states {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if !c.decides() {
				break
			}
			if c.rep != nil && c.rep.revs[n] == 0 {
				continue // its first release is not in etcd yet (reconcile retries)
			}
			_ = c.step(n, c.takeInputs(n))
		}
		if c.rep != nil && c.decides() {
			c.retryCommands()
		}
	}
	c.publish()
	c.publishView()
	if c.rep != nil {
		c.report()
	}
}

// stateBytes marshals st without its UpdatedAt, to tell real changes apart.
func stateBytes(st *State) []byte {
	s := *st
	s.UpdatedAt = time.Time{}
	b, err := json.Marshal(&s)
	if err != nil {
		return []byte(err.Error()) // never equal to a good encoding: the state is saved and the error seen
	}
	return b
}

// step runs the machine for one rollout and persists the result before acting on it.
// When the save fails, a decision that is safe unsaved (an abort; measuring without
// moving on) still takes effect and the save is retried with backoff; any other
// decision is not made (its inputs wait for the next tick). Either way step returns a
// *PersistError.
func (c *Controller) step(name string, in Inputs) error {
	r := c.cfg.Rollout(name)
	old := c.states[name]
	if r == nil || old == nil {
		return fmt.Errorf("%w %q", ErrUnknownRollout, name)
	}
	now := c.clock.Now()
	in.Health = c.health
	st, actions := Step(r, *old, now, in)
	retry := c.unsaved[name]
	// Replicated, nothing takes effect unsaved: another replica may lead (leader.go).
	safe := c.rep == nil && safeUnsaved(old, &st, in)
	if retry != nil && now.Before(retry.next) {
		// Backing off from a failed save: only a decision that is safe unsaved takes
		// effect meanwhile.
		if !safe {
			c.requeue(name, in)
			return &PersistError{Rollout: name, Err: retry.err}
		}
		c.commit(r, old, &st, actions, in, now)
		return &PersistError{Rollout: name, Applied: true, Err: retry.err}
	}
	if retry != nil || !bytes.Equal(stateBytes(old), stateBytes(&st)) {
		if err := c.save(&st); err != nil {
			if c.rep != nil {
				return c.notSaved(name, in, err, now)
			}
			c.saveFailed(name, err, now)
			if !safe {
				c.requeue(name, in)
				return &PersistError{Rollout: name, Err: err}
			}
			// Safe without the disk: nothing is promoted. Take it to the data planes
			// now; keep retrying the save.
			c.commit(r, old, &st, actions, in, now)
			return &PersistError{Rollout: name, Applied: true, Err: err}
		}
		c.saved(name)
	}
	c.commit(r, old, &st, actions, in, now)
	return nil
}

// safeUnsaved reports whether the decision from old to st may take effect before it is
// saved: an abort (every request back to stable), or, without an operator command, a
// decision that leaves the routing, the step and the pause as they were or safer
// (measurements asked for and recorded, a pause for an inconclusive result). Anything
// that moves the rollout forward waits for the disk.
func safeUnsaved(old, st *State, in Inputs) bool {
	if st.Aborted {
		return true
	}
	return len(in.Commands) == 0 && !old.Aborted && st.Gen == old.Gen && st.Step == old.Step &&
		st.Completed == old.Completed && st.Switched == old.Switched && (st.Paused || !old.Paused)
}

// commit makes st the rollout's state and carries out its actions.
func (c *Controller) commit(r *model.Rollout, old, st *State, actions []Action, in Inputs, now time.Time) {
	c.states[r.Name] = st
	if c.rep != nil {
		c.awaitFleet(r.Name)
	}
	if old.AbortLatency == nil && st.AbortLatency != nil {
		c.metrics.abortLatency.Observe(*st.AbortLatency)
		c.log.Info("abort applied", zap.String("rollout", r.Name), zap.String("cause", st.AbortCause),
			zap.Float64("latencySeconds", *st.AbortLatency))
	}
	for _, res := range in.Results {
		c.metrics.measurements.WithLabelValues(r.Name, res.Metric, string(res.Measurement.Phase)).Inc()
	}
	c.metrics.setRollout(st)
	for _, a := range actions {
		switch a := a.(type) {
		case *MeasureAction:
			c.measure(r, st, a, now)
		case *TerminateAction:
			c.terminate(r.Name, a.Run, a.Metrics)
		case *Event:
			c.emit(a)
		}
	}
}

// saveFailed records a failed save: logged once per distinct error, retried with backoff.
func (c *Controller) saveFailed(name string, err error, now time.Time) {
	r := c.unsaved[name]
	limit, msg := saveRetryMax, "cannot save rollout state: only aborts take effect until it is saved; retrying with backoff"
	if c.rep != nil {
		limit, msg = c.rep.ttl, "cannot save rollout state to etcd: nothing takes effect until it is saved; retrying with backoff"
	}
	if r == nil {
		r = &saveRetry{backoff: saveRetryMin}
		c.unsaved[name] = r
	} else {
		r.backoff = min(r.backoff*2, limit)
	}
	r.err = err
	r.next = now.Add(r.backoff)
	if c.saveErrs[name] != err.Error() {
		c.saveErrs[name] = err.Error()
		c.log.Error(msg, zap.String("rollout", name), zap.Error(err))
	}
	c.metrics.saveErrors.Inc()
}

func (c *Controller) saved(name string) {
	if c.unsaved[name] != nil {
		c.log.Info("rollout state saved again", zap.String("rollout", name))
	}
	delete(c.unsaved, name)
	delete(c.saveErrs, name)
}

func (c *Controller) minRequests(m model.Metric) int {
	if m.MinRequests != 0 {
		return max(m.MinRequests, 0)
	}
	return max(c.cfg.ControlPlane.MinRequests, 0)
}

func (c *Controller) measure(r *model.Rollout, st *State, a *MeasureAction, now time.Time) {
	req := MeasureRequest{Rollout: r, Stable: st.Stable, Canary: st.Canary, Run: a.Run, Kind: a.Kind,
		Metric: a.Metric, MinRequests: c.minRequests(a.Metric), Now: now, ProviderState: a.ProviderState}
	if a.Metric.Provider.Judge != nil {
		req.MinRequests = 0 // the judge has its own minimum samples
	}
	epoch := c.epoch.Load()
	go func() {
		ms := c.measurer.Measure(c.ctx, req)
		// Finished when its answer is in: the next one is due an interval later, and an
		// abort's latency counts from here.
		ms.FinishedAt = c.clock.Now()
		c.log.Debug("measurement", zap.String("rollout", r.Name), zap.String("metric", a.Metric.Name),
			zap.String("phase", string(ms.Phase)), zap.String("value", ms.Value), zap.String("message", ms.Message))
		c.deliver(epoch, r.Name, func(in *Inputs) {
			in.Results = append(in.Results, Result{Run: a.Run, Metric: a.Metric.Name, Measurement: ms})
		})
	}()
}

// Terminator is implemented by a Measurer that keeps state per metric of a run (judge
// sessions): Terminate is called when the run ends, as Argo's runMeasurements terminates
// a run's in-flight measurements through their provider.
type Terminator interface {
	Terminate(rollout string, run int, metrics []string)
}

func (c *Controller) terminate(rollout string, run int, metrics []string) {
	if t, ok := c.measurer.(Terminator); ok {
		t.Terminate(rollout, run, metrics)
	}
}

// terminateLive ends the provider sessions of st's runs that are still live (a release
// replaced by a new revision, or a rollout removed from the config).
func (c *Controller) terminateLive(st *State) {
	for _, r := range st.Runs {
		if r.Done {
			continue
		}
		names := make([]string, 0, len(r.Metrics))
		for _, mr := range r.Metrics {
			names = append(names, mr.Name)
		}
		c.terminate(st.Rollout, r.ID, names)
	}
}

func (c *Controller) emit(e *Event) {
	fields := []zap.Field{zap.String("event", e.Type), zap.String("rollout", e.Rollout), zap.String("revision", e.Revision),
		zap.Int("step", e.Step), zap.Int("weight", e.Weight), zap.String("message", e.Message)}
	switch e.Type {
	case EventAborted, EventAnalysisFailed:
		c.log.Warn("rollout event", fields...)
	default:
		c.log.Info("rollout event", fields...)
	}
	c.metrics.events.WithLabelValues(e.Rollout, e.Type).Inc()
	if c.rep != nil && !c.rep.valid() {
		c.log.Warn("event not sent to webhooks: this replica no longer leads", zap.String("event", e.Type), zap.String("rollout", e.Rollout))
	} else {
		c.hooks.send(e)
	}
	rec := append(c.recent[e.Rollout], *e)
	if len(rec) > maxRecentEvents {
		rec = rec[len(rec)-maxRecentEvents:]
	}
	c.recent[e.Rollout] = rec
}

// ackTimeout bounds WaitApplied; the publisher reads it on its own goroutine.
func (c *Controller) ackTimeout() time.Duration { return time.Duration(c.ackTO.Load()) }

func (c *Controller) setAckTimeout(cfg *model.Config) {
	d := 10 * time.Second
	if c.opts.AckTimeout > 0 {
		d = c.opts.AckTimeout
	} else if x := cfg.ControlPlane.XDS; x != nil && x.AckTimeout > 0 {
		d = x.AckTimeout
	}
	c.ackTO.Store(int64(d))
}

// publish hands the publisher a new snapshot when some rollout wants new routing.
func (c *Controller) publish() {
	changed := false
	for n, st := range c.states {
		if c.pubGen[n] != st.Gen {
			changed = true
		}
	}
	if !changed && !c.dirty {
		return
	}
	c.dirty = false
	snap := BuildSnapshot(c.cfg, c.states)
	c.snap = snap
	gens := map[string]Applied{}
	for n, st := range c.states {
		c.pubGen[n] = st.Gen
		gens[n] = Applied{Gen: st.Gen, Weight: st.SetWeight}
	}
	c.pub.submit(snap, gens) // sets snap.Version
}

// applied is the publisher's report: the data planes applied (or refused) gens.
func (c *Controller) applied(gens map[string]Applied) {
	for n, a := range gens {
		c.deliver(c.epoch.Load(), n, func(in *Inputs) { in.Applied = append(in.Applied, a) })
	}
}

// publishView makes the current statuses and snapshot what reads return.
func (c *Controller) publishView() {
	v := &readView{statuses: make(map[string]RolloutStatus, len(c.states)), snap: c.snap}
	c.reloadMu.Lock()
	reloadErr := c.reloadErr
	c.reloadMu.Unlock()
	for i := range c.cfg.Rollouts {
		r := &c.cfg.Rollouts[i]
		st := c.states[r.Name]
		if st == nil {
			continue
		}
		s := StatusOf(r, st)
		if u := c.unsaved[r.Name]; u != nil {
			s.PersistError = u.err.Error()
		}
		for _, cl := range []struct{ name, role string }{{st.Stable, "stable"}, {st.Canary, "canary"}} {
			if cl.name != "" {
				s.Clusters = append(s.Clusters, ClusterStatus{Name: cl.name, Role: cl.role,
					Planes: append(ClusterHealth{}, c.health[cl.name]...), Discovery: c.discovery[cl.name]})
			}
		}
		s.Events = append([]Event{}, c.recent[r.Name]...)
		s.ReloadError = reloadErr
		v.order = append(v.order, r.Name)
		v.statuses[r.Name] = s
	}
	c.view.Store(v)
	if c.rep != nil {
		c.rep.published(c.rep.revs)
	}
}

// Reload switches to cfg, keeping the state of rollouts whose revision is unchanged. A
// changed revision starts a new release (see doc.go); a removed rollout is forgotten.
// Nothing changes when a new release's state cannot be saved.
func (c *Controller) Reload(cfg *model.Config) error {
	return c.do(func() error { return c.reload(cfg) })
}

func (c *Controller) reload(cfg *model.Config) error {
	if c.rep != nil {
		return c.reloadReplicated(cfg)
	}
	now := c.clock.Now()
	next := map[string]*State{}
	var events []*Event
	var replaced []*State
	for i := range cfg.Rollouts {
		r := &cfg.Rollouts[i]
		prev := c.states[r.Name]
		if prev != nil && prev.Revision == r.Revision {
			next[r.Name] = prev
			continue
		}
		st := NewState(r, prev, now)
		if prev != nil {
			replaced = append(replaced, prev)
		}
		if err := c.store.Save(&st); err != nil {
			return fmt.Errorf("reload not applied: save rollout state of %s: %w", r.Name, err)
		}
		next[r.Name] = &st
		events = append(events, &Event{Type: EventStarted, Rollout: r.Name, Revision: r.Revision, Time: now,
			Message: fmt.Sprintf("release %s started: stable %s, canary %s", r.Revision, st.Stable, st.Canary)})
	}
	for n, st := range c.states {
		if next[n] == nil {
			replaced = append(replaced, st)
			c.metrics.forget(n)
			c.takeInputs(n)
			delete(c.pubGen, n)
			delete(c.unsaved, n)
			delete(c.saveErrs, n)
			delete(c.recent, n)
		}
	}
	for _, st := range replaced {
		c.terminateLive(st)
	}
	c.cfg = cfg
	c.setAckTimeout(cfg)
	c.states = next
	c.dirty = true
	c.reloadMu.Lock()
	c.reloadErr = nil
	c.reloadMu.Unlock()
	for _, e := range events {
		c.emit(e)
	}
	c.tick()
	return nil
}

// SetReloadError records a refused configuration reload, for status (nil clears it; a
// successful Reload clears it too): why, the diagnostics (FILE:LINE: message each) and
// when. The running configuration is unaffected.
func (c *Controller) SetReloadError(err error, diagnostics []string) {
	var re *ReloadError
	if err != nil {
		re = &ReloadError{Message: err.Error(), Diagnostics: append([]string(nil), diagnostics...), At: c.clock.Now()}
	}
	c.reloadMu.Lock()
	c.reloadErr = re
	c.reloadMu.Unlock()
	c.poke() // the next tick publishes it
}

// ErrUnknownRollout is returned for a name the config does not declare.
var ErrUnknownRollout = errors.New("unknown rollout")

func (c *Controller) command(name string, cmd CommandKind) error {
	if c.rep != nil {
		return c.commandReplicated(name, cmd)
	}
	return c.do(func() error {
		st := c.states[name]
		if st == nil {
			return fmt.Errorf("%w %q", ErrUnknownRollout, name)
		}
		if err := CheckCommand(st, cmd); err != nil {
			return err
		}
		c.log.Info("operator command", zap.String("rollout", name), zap.String("command", string(cmd)))
		in := c.takeInputs(name)
		in.Commands = append(in.Commands, cmd)
		err := c.step(name, in)
		c.publish()
		c.publishView()
		return err
	})
}

// Start starts a new release of a completed or aborted rollout (after a completed one
// the roles swap: see doc.go).
func (c *Controller) Start(name string) error { return c.command(name, CmdStart) }

// Promote ends the current pause or skips the current pause/analysis step; with full it
// skips every remaining step and sends 100% to the canary.
func (c *Controller) Promote(name string, full bool) error {
	if full {
		return c.command(name, CmdPromoteFull)
	}
	return c.command(name, CmdPromote)
}

// Abort sends every request back to the stable at once. It takes effect even when the
// state cannot be saved; the error then says so (a *PersistError with Applied set).
func (c *Controller) Abort(name string) error { return c.command(name, CmdAbort) }

// Retry restarts an aborted rollout from step 0.
func (c *Controller) Retry(name string) error { return c.command(name, CmdRetry) }

// Snapshot returns the current snapshot (do not modify it).
func (c *Controller) Snapshot() *model.Snapshot { return c.view.Load().snap }

// List returns the status of every rollout, in config order. It never waits.
func (c *Controller) List() []RolloutStatus {
	v := c.view.Load()
	out := make([]RolloutStatus, 0, len(v.order))
	for _, n := range v.order {
		out = append(out, v.statuses[n])
	}
	return out
}

// Get returns one rollout's status. It never waits.
func (c *Controller) Get(name string) (RolloutStatus, bool) {
	s, ok := c.view.Load().statuses[name]
	return s, ok
}
