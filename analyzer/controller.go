package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
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
}

// Controller runs every rollout of a config: it steps the pure machine, persists each
// decision before it takes effect, publishes snapshots to the data planes, takes
// measurements and emits events. All methods are safe for concurrent use.
type Controller struct {
	opts     Options
	log      *zap.Logger
	clock    Clock
	store    Store
	measurer Measurer
	metrics  *metrics
	hooks    *webhooks

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}

	mu       sync.Mutex
	cfg      *model.Config
	states   map[string]*State
	pending  map[string]*Inputs
	snap     *model.Snapshot
	version  uint64
	sentGen  map[string]uint64 // rollout → Gen in the last published snapshot
	dirty    bool              // config changed: publish even without a Gen change
	failures map[string]int    // consecutive Save failures, for logs
}

// NewController loads the persisted state of cfg's rollouts (a rollout whose stored
// revision differs from the config starts a new release) and publishes nothing until
// Run. cfg must be valid (config package).
func NewController(cfg *model.Config, opts Options) (*Controller, error) {
	c := &Controller{
		opts: opts, log: opts.Logger, clock: opts.Clock, store: opts.Store,
		wake: make(chan struct{}, 1), states: map[string]*State{}, pending: map[string]*Inputs{},
		sentGen: map[string]uint64{}, failures: map[string]int{},
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.store == nil {
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

	loaded, err := c.store.Load()
	if err != nil {
		return nil, fmt.Errorf("load rollout state: %w", err)
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
			return nil, fmt.Errorf("save rollout state: %w", err)
		}
		c.states[r.Name] = &st
	}
	c.dirty = true
	c.mu.Lock()
	c.publishLocked()
	c.mu.Unlock()
	return c, nil
}

// Run steps every rollout until ctx is done. It returns nil on cancellation.
func (c *Controller) Run(ctx context.Context) error {
	defer c.cancel()
	tick := c.opts.Tick
	if tick <= 0 {
		tick = time.Second
	}
	for {
		c.mu.Lock()
		c.tickLocked()
		wait := tick
		now := c.clock.Now()
		for _, st := range c.states {
			if w := NextWake(st); !w.IsZero() && w.Sub(now) < wait {
				wait = max(w.Sub(now), 0)
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-c.clock.After(wait):
		}
	}
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Controller) tickLocked() {
	names := make([]string, 0, len(c.states))
	for n := range c.states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		in := c.pending[n]
		delete(c.pending, n)
		if in == nil {
			in = &Inputs{}
		}
		c.stepLocked(n, *in)
	}
	c.publishLocked()
}

// stateBytes marshals st without its UpdatedAt, to tell real changes apart.
func stateBytes(st *State) []byte {
	s := *st
	s.UpdatedAt = time.Time{}
	b, _ := json.Marshal(&s)
	return b
}

// stepLocked runs the machine for one rollout and persists the result before acting.
func (c *Controller) stepLocked(name string, in Inputs) {
	r := c.cfg.Rollout(name)
	old := c.states[name]
	if r == nil || old == nil {
		return
	}
	now := c.clock.Now()
	st, actions := Step(r, *old, now, in)
	if !bytes.Equal(stateBytes(old), stateBytes(&st)) {
		if err := c.store.Save(&st); err != nil {
			// Not durable: nothing takes effect. Keep the inputs for the next try.
			c.failures[name]++
			c.log.Error("save rollout state; decision deferred", zap.String("rollout", name), zap.Error(err))
			p := c.pendingFor(name)
			p.Results = append(in.Results, p.Results...)
			p.Applied = append(in.Applied, p.Applied...)
			p.Commands = append(in.Commands, p.Commands...)
			return
		}
		c.failures[name] = 0
	}
	c.states[name] = &st
	if old.AbortLatency == nil && st.AbortLatency != nil {
		c.metrics.abortLatency.Observe(*st.AbortLatency)
		c.log.Info("abort applied", zap.String("rollout", name), zap.Float64("latencySeconds", *st.AbortLatency))
	}
	c.countMeasurements(r, old, &st, in)
	c.metrics.setRollout(&st)
	for _, a := range actions {
		switch a := a.(type) {
		case *MeasureAction:
			c.measure(r, &st, a, now)
		case *Event:
			c.emit(a)
		}
	}
}

func (c *Controller) countMeasurements(r *model.Rollout, old, st *State, in Inputs) {
	for _, res := range in.Results {
		run := st.run(res.Run)
		if run == nil {
			continue
		}
		c.metrics.measurements.WithLabelValues(r.Name, res.Metric, string(res.Measurement.Phase)).Inc()
	}
}

func (c *Controller) pendingFor(name string) *Inputs {
	p := c.pending[name]
	if p == nil {
		p = &Inputs{}
		c.pending[name] = p
	}
	return p
}

func (c *Controller) minRequests(m model.Metric) int {
	if m.MinRequests != 0 {
		return max(m.MinRequests, 0)
	}
	return max(c.cfg.ControlPlane.MinRequests, 0)
}

func (c *Controller) measure(r *model.Rollout, st *State, a *MeasureAction, now time.Time) {
	req := MeasureRequest{Rollout: r, Stable: st.Stable, Canary: st.Canary, Run: a.Run, Kind: a.Kind,
		Metric: a.Metric, MinRequests: c.minRequests(a.Metric), Now: now}
	if a.Metric.Provider.Judge != nil {
		req.MinRequests = 0 // the judge has its own minimum samples
	}
	go func() {
		ms := c.measurer.Measure(c.ctx, req)
		// Finished when its answer is in: the next one is due an interval later, and an
		// abort's latency counts from here.
		ms.FinishedAt = c.clock.Now()
		c.log.Debug("measurement", zap.String("rollout", r.Name), zap.String("metric", a.Metric.Name),
			zap.String("phase", string(ms.Phase)), zap.String("value", ms.Value), zap.String("message", ms.Message))
		c.mu.Lock()
		p := c.pendingFor(r.Name)
		p.Results = append(p.Results, Result{Run: a.Run, Metric: a.Metric.Name, Measurement: ms})
		c.mu.Unlock()
		c.poke()
	}()
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
	c.hooks.send(e)
}

func (c *Controller) ackTimeout() time.Duration {
	if c.opts.AckTimeout > 0 {
		return c.opts.AckTimeout
	}
	if x := c.cfg.ControlPlane.XDS; x != nil && x.AckTimeout > 0 {
		return x.AckTimeout
	}
	return 10 * time.Second
}

// publishLocked builds and applies a snapshot when some rollout wants new routing.
func (c *Controller) publishLocked() {
	changed := map[string]uint64{}
	for n, st := range c.states {
		if c.sentGen[n] != st.Gen {
			changed[n] = st.Gen
		}
	}
	if len(changed) == 0 && !c.dirty {
		return
	}
	c.dirty = false
	c.version++
	snap := BuildSnapshot(c.cfg, c.states)
	snap.Version = c.version
	c.snap = snap
	gens := map[string]Applied{}
	for n, st := range c.states {
		c.sentGen[n] = st.Gen
		gens[n] = Applied{Gen: st.Gen, Weight: st.SetWeight}
	}
	var applyErr error
	for _, dp := range c.opts.DataPlanes {
		if err := dp.Apply(snap); err != nil {
			applyErr = errors.Join(applyErr, err)
		}
	}
	version := snap.Version
	finish := func(err error) {
		at := c.clock.Now()
		c.mu.Lock()
		for n, a := range gens {
			if err != nil {
				if _, ok := changed[n]; !ok {
					continue // this snapshot changed nothing of n's
				}
				c.sentGen[n] = 0 // publish again: the next snapshot must carry it
			}
			a.Err, a.At = err, at
			p := c.pendingFor(n)
			p.Applied = append(p.Applied, a)
		}
		c.mu.Unlock()
		c.poke()
	}
	if applyErr != nil {
		c.log.Error("data plane refused snapshot", zap.Uint64("version", version), zap.Error(applyErr))
		go finish(applyErr)
		return
	}
	if len(c.opts.DataPlanes) == 0 {
		go finish(nil)
		return
	}
	timeout := c.ackTimeout()
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(c.opts.DataPlanes))
		for i, dp := range c.opts.DataPlanes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = dp.WaitApplied(ctx, version)
			}()
		}
		wg.Wait()
		err := errors.Join(errs...)
		if err != nil {
			c.log.Error("snapshot not applied", zap.Uint64("version", version), zap.Error(err))
		}
		finish(err)
	}()
}

// Reload switches to cfg, keeping the state of rollouts whose revision is unchanged. A
// changed revision starts a new release (see doc.go); a removed rollout is forgotten.
func (c *Controller) Reload(cfg *model.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	next := map[string]*State{}
	var events []*Event
	for i := range cfg.Rollouts {
		r := &cfg.Rollouts[i]
		prev := c.states[r.Name]
		if prev != nil && prev.Revision == r.Revision {
			next[r.Name] = prev
			continue
		}
		st := NewState(r, prev, now)
		if prev != nil {
			st.History = prev.History
		}
		if err := c.store.Save(&st); err != nil {
			return fmt.Errorf("save rollout state: %w", err)
		}
		next[r.Name] = &st
		events = append(events, &Event{Type: EventStarted, Rollout: r.Name, Revision: r.Revision, Time: now,
			Message: fmt.Sprintf("release %s started: stable %s, canary %s", r.Revision, st.Stable, st.Canary)})
	}
	for n := range c.states {
		if next[n] == nil {
			c.metrics.forget(n)
			delete(c.pending, n)
			delete(c.sentGen, n)
		}
	}
	c.cfg = cfg
	c.states = next
	c.dirty = true
	for _, e := range events {
		c.emit(e)
	}
	c.tickLocked()
	c.poke()
	return nil
}

// ErrUnknownRollout is returned for a name the config does not declare.
var ErrUnknownRollout = errors.New("unknown rollout")

func (c *Controller) command(name string, cmd CommandKind) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.states[name]
	if st == nil {
		return fmt.Errorf("%w %q", ErrUnknownRollout, name)
	}
	if err := CheckCommand(st, cmd); err != nil {
		return err
	}
	c.log.Info("operator command", zap.String("rollout", name), zap.String("command", string(cmd)))
	p := c.pendingFor(name)
	in := *p
	delete(c.pending, name)
	in.Commands = append(in.Commands, cmd)
	c.stepLocked(name, in)
	c.publishLocked()
	c.poke()
	return nil
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

// Abort sends every request back to the stable at once.
func (c *Controller) Abort(name string) error { return c.command(name, CmdAbort) }

// Retry restarts an aborted rollout from step 0.
func (c *Controller) Retry(name string) error { return c.command(name, CmdRetry) }

// Snapshot returns the current snapshot (do not modify it).
func (c *Controller) Snapshot() *model.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// List returns the status of every rollout, by name.
func (c *Controller) List() []RolloutStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]RolloutStatus, 0, len(c.cfg.Rollouts))
	for i := range c.cfg.Rollouts {
		r := &c.cfg.Rollouts[i]
		if st := c.states[r.Name]; st != nil {
			out = append(out, StatusOf(r, st))
		}
	}
	return out
}

// Get returns one rollout's status.
func (c *Controller) Get(name string) (RolloutStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.cfg.Rollout(name)
	st := c.states[name]
	if r == nil || st == nil {
		return RolloutStatus{}, false
	}
	return StatusOf(r, st), true
}
