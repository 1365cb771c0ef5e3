package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// This file is the Controller's replicated mode (Options.Replication: several replicas
// sharing etcd through package ha). The decision goroutine, the publisher and the read
// view stay as they are; what changes is who decides and where states go:
//
//   - A replica decides only while it holds a Term and has loaded the states from etcd
//     through it (decides). Every save is the term's fenced write (save); when etcd
//     refuses it because the term is over (ErrNotLeader), the decision does not take
//     effect — not even an abort, unlike the single process's "abort even if the disk
//     fails": the replica that leads now decides, and nothing this one could not
//     persist may reach a data plane or a webhook. Any other failed save is retried
//     with backoff while the term lasts, with nothing taking effect meanwhile.
//   - Every replica, leading or not, serves the states committed in etcd: a follower
//     adopts each state WatchStates delivers (adopt), the leader serves what it saved.
//     Its local publisher applies them to its own data planes, and what they applied is
//     reported to the fleet (ReportApplied). The machine's Applied input — what makes a
//     step complete and sets actualWeight — comes from WaitApplied: every live replica
//     serves the state, not just this one.
//   - Operator commands given to any replica go through etcd (Replication.Do); the
//     leader takes them from its term and completes each in the same write as the state
//     change it caused, or on its own when it refused it or nothing changed.
//   - Measurements and fleet waits started in a term deliver nothing after it (epoch).

// ErrNotLeader is returned by a Term's writes once the term is over; nothing was written.
var ErrNotLeader = errors.New("not the leader")

// ErrCommandWithdrawn is returned by a Term's Save when the command it completes was
// withdrawn by its submitter meanwhile; nothing was written.
var ErrCommandWithdrawn = errors.New("the command was withdrawn by its submitter")

// Replication connects a Controller to the other replicas of a replicated control plane
// (cmd/sluice adapts package ha to it).
type Replication interface {
	// Terms delivers each term of leadership this replica wins.
	Terms() <-chan Term
	// WatchStates delivers every committed rollout state, then each change, in revision
	// order, until ctx ends (State nil: deleted).
	WatchStates(ctx context.Context) <-chan StoredState
	// ReportApplied records what this replica's data planes serve, per rollout.
	ReportApplied(map[string]ReplicaApplied)
	// WaitApplied returns once every live replica serves rollout's state at revision rev
	// or later (refusal ""), or one of them refused it (refusal says which and why); err
	// when it could not wait (etcd unreachable, ctx done).
	WaitApplied(ctx context.Context, rollout string, rev int64) (refusal string, err error)
	// Do queues an operator command for the leader and waits for its outcome.
	Do(ctx context.Context, cmd Command) (Outcome, error)
	// LeaseTTL is the leadership lease: it bounds a fenced write.
	LeaseTTL() time.Duration
}

// Term is one stretch of leadership (package ha's Term, adapted).
type Term interface {
	// Load reads every rollout state, fenced like a write.
	Load(ctx context.Context) (map[string]StoredState, error)
	// Save writes a rollout's state if the term holds and returns its revision;
	// commandID, when set, completes that command in the same write.
	Save(ctx context.Context, rollout string, state []byte, commandID string) (int64, error)
	// Complete records the outcome of a command that changed no state (refusal "":
	// carried out).
	Complete(ctx context.Context, commandID, refusal string) error
	// Commands delivers the queued operator commands, each once in this term.
	Commands(ctx context.Context) <-chan Command
	// Lost is closed when the term ends.
	Lost() <-chan struct{}
	// Valid reports whether the term still holds.
	Valid() bool
}

// StoredState is a rollout's state as committed in etcd, at its revision.
type StoredState struct {
	Rollout  string
	State    []byte
	Revision int64
}

// Command is an operator command carried out by the leader.
type Command struct {
	ID      string
	Rollout string
	Kind    CommandKind
}

// Outcome is what the leader made of a Command.
type Outcome struct {
	// Error is why it was refused ("": carried out).
	Error string
	// Leader is the replica that decided.
	Leader string
	// Changed: the command changed the rollout's state, committed at Revision.
	Changed  bool
	Revision int64
}

// ReplicaApplied is what this replica's data planes serve for one rollout: the weight of
// the state at Revision; Refused and Error when they refused a newer one.
type ReplicaApplied struct {
	Weight   int
	Revision int64
	Refused  int64
	Error    string
}

// ReplicationError is a command that did not reach a leader's decision (no leader in
// time, etcd unreachable). HTTPStatus makes the admin API answer 503.
type ReplicationError struct {
	Rollout string
	Err     error
}

func (e *ReplicationError) Error() string {
	return fmt.Sprintf("rollout %s: not carried out: %v", e.Rollout, e.Err)
}

// Unwrap returns the cause.
func (e *ReplicationError) Unwrap() error { return e.Err }

// HTTPStatus is 503 Service Unavailable.
func (e *ReplicationError) HTTPStatus() int { return 503 }

// DecodeState reads a State as the stores write it (JSON), migrating older schemas.
func DecodeState(b []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if err := MigrateState(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// replica is the Controller's replicated-mode state.
type replica struct {
	repl   Replication
	ttl    time.Duration
	terms  <-chan Term
	states <-chan StoredState

	// Owned by the decision goroutine.
	term       Term // nil while following
	termCtx    context.Context
	termCancel context.CancelFunc
	loaded     bool                   // the term's states are loaded: it may decide
	loadErr    string                 // last Load error logged
	cmds       <-chan Command         // the term's commands
	retryCmds  []Command              // commands whose decision could not be saved yet
	cmdID      string                 // the command the next save completes
	revs       map[string]int64       // etcd revision of each c.states entry (0: none yet)
	latest     map[string]StoredState // newest committed state seen per rollout
	waits      map[string]context.CancelFunc
	waitGen    map[string]uint64 // the Gen each fleet wait is for
	reported   map[string]ReplicaApplied
	badStates  map[string]int64 // unreadable states logged, by revision

	mu      sync.Mutex
	planes  map[string]Applied // this replica's publisher's last report per rollout
	known   map[string]int64   // revisions in the published read view
	changed chan struct{}      // closed and replaced when known changes
}

// initReplicated sets the controller up to follow: the states in initial (read from etcd
// before the data planes were bound) are what it serves first.
func (c *Controller) initReplicated(cfg *model.Config, repl Replication, initial map[string]StoredState) {
	r := &replica{repl: repl, ttl: repl.LeaseTTL(), revs: map[string]int64{}, latest: map[string]StoredState{},
		waits: map[string]context.CancelFunc{}, waitGen: map[string]uint64{}, badStates: map[string]int64{},
		planes: map[string]Applied{}, known: map[string]int64{}, changed: make(chan struct{})}
	c.rep = r
	c.cfg = cfg
	maps.Copy(r.latest, initial)
	for i := range cfg.Rollouts {
		rl := &cfg.Rollouts[i]
		fresh := NewState(rl, nil, time.Time{})
		c.states[rl.Name] = &fresh
		if sc, ok := initial[rl.Name]; ok {
			c.adopt(sc)
		}
		c.metrics.setRollout(c.states[rl.Name])
	}
	r.terms = repl.Terms()
	r.states = repl.WatchStates(c.ctx)
}

// Channels for Run's select; nil (never ready) when alone or not applicable.
func (r *replica) termCh() <-chan Term {
	if r == nil {
		return nil
	}
	return r.terms
}

func (r *replica) lostCh() <-chan struct{} {
	if r == nil || r.term == nil {
		return nil
	}
	return r.term.Lost()
}

func (r *replica) stateCh() <-chan StoredState {
	if r == nil {
		return nil
	}
	return r.states
}

func (r *replica) cmdCh() <-chan Command {
	if r == nil {
		return nil
	}
	return r.cmds
}

// valid reports whether this replica holds a valid term (may act outside etcd).
func (r *replica) valid() bool { return r.term != nil && r.term.Valid() }

// decides reports whether the controller may decide now: always when alone; replicated,
// while it holds a valid term whose states it has loaded.
func (c *Controller) decides() bool {
	r := c.rep
	if r == nil {
		return true
	}
	if r.term == nil {
		return false
	}
	if !r.loaded {
		c.loadTerm()
	}
	return r.term != nil && r.loaded && r.term.Valid()
}

// newEpoch drops every input of the previous term: measurements and fleet waits still
// running deliver nothing.
func (c *Controller) newEpoch() {
	c.inboxMu.Lock()
	c.epoch.Add(1)
	clear(c.inbox)
	c.inboxMu.Unlock()
}

// lead begins term t: it reads the states from etcd before deciding anything.
func (c *Controller) lead(t Term) {
	r := c.rep
	if r.term != nil {
		c.follow("a newer term began")
	}
	r.term = t
	r.termCtx, r.termCancel = context.WithCancel(c.ctx)
	c.newEpoch()
	c.log.Info("leading: reading the rollout states from etcd before deciding")
	c.loadTerm()
}

// loadTerm reads the states through the term and makes them the controller's. Until it
// succeeds the term decides nothing (decides retries it).
func (c *Controller) loadTerm() {
	r := c.rep
	ctx, cancel := context.WithTimeout(r.termCtx, r.ttl)
	stored, err := r.term.Load(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, ErrNotLeader) {
			c.follow(err.Error())
			return
		}
		if err.Error() != r.loadErr {
			r.loadErr = err.Error()
			c.log.Warn("leading, but the rollout states cannot be read from etcd: deciding nothing until they are", zap.Error(err))
		}
		return
	}
	r.loadErr = ""
	for n, sc := range stored {
		if sc.Revision > r.latest[n].Revision {
			r.latest[n] = sc
		}
	}
	var summary []string
	for i := range c.cfg.Rollouts {
		name := c.cfg.Rollouts[i].Name
		sc, ok := stored[name]
		if !ok {
			continue // reconcile starts its first release
		}
		st, err := DecodeState(sc.State)
		if err != nil {
			c.log.Error("rollout state in etcd is unreadable: starting a new release over it",
				zap.String("rollout", name), zap.Int64("revision", sc.Revision), zap.Error(err))
			c.setRev(name, 0)
			continue
		}
		// Measurements in flight died with the previous leader's term.
		for i := range st.Runs {
			for j := range st.Runs[i].Metrics {
				st.Runs[i].Metrics[j].InFlight = false
			}
		}
		c.states[name] = st
		c.setRev(name, sc.Revision)
		c.metrics.setRollout(st)
		summary = append(summary, fmt.Sprintf("%s: %s step %d weight %d", name, st.Phase, st.Step, st.SetWeight))
	}
	r.loaded = true
	if r.cmds == nil {
		r.cmds = r.term.Commands(r.termCtx)
	}
	for name := range c.states {
		c.awaitFleet(name)
	}
	sort.Strings(summary)
	c.log.Info("leading: deciding from the rollout states in etcd", zap.Strings("rollouts", summary))
}

// follow ends this replica's term: it stops deciding, drops what the term had started,
// and serves the states committed in etcd.
func (c *Controller) follow(why string) {
	r := c.rep
	if r.term == nil {
		return
	}
	r.termCancel()
	r.term, r.cmds, r.loaded, r.cmdID, r.retryCmds = nil, nil, false, "", nil
	clear(r.waits)
	clear(r.waitGen)
	c.newEpoch()
	for _, st := range c.states {
		c.terminateLive(st)
	}
	clear(c.unsaved)
	clear(c.saveErrs)
	c.log.Warn("stopped deciding: serving the rollout states the leader commits to etcd", zap.String("why", why))
	for _, sc := range r.latest {
		c.adopt(sc)
	}
}

// observe takes a committed state from the watch: a follower serves it; the leader
// serves its own writes and keeps it for when it follows again.
func (c *Controller) observe(sc StoredState) {
	r := c.rep
	if sc.State == nil {
		c.log.Warn("a rollout state was deleted from etcd: replicas keep serving it; the leader starts a new release when its term begins",
			zap.String("rollout", sc.Rollout), zap.Int64("revision", sc.Revision))
		return
	}
	if sc.Revision <= r.latest[sc.Rollout].Revision {
		return
	}
	r.latest[sc.Rollout] = sc
	if r.term == nil {
		c.adopt(sc)
	}
}

// adopt makes a committed state the one this replica serves, if it is newer.
func (c *Controller) adopt(sc StoredState) {
	r := c.rep
	if c.cfg.Rollout(sc.Rollout) == nil || sc.State == nil || sc.Revision <= r.revs[sc.Rollout] {
		return
	}
	st, err := DecodeState(sc.State)
	if err != nil {
		if r.badStates[sc.Rollout] != sc.Revision {
			r.badStates[sc.Rollout] = sc.Revision
			c.log.Error("rollout state in etcd is unreadable: still serving the previous one",
				zap.String("rollout", sc.Rollout), zap.Int64("revision", sc.Revision), zap.Error(err))
		}
		return
	}
	c.states[sc.Rollout] = st
	c.setRev(sc.Rollout, sc.Revision)
	c.metrics.setRollout(st)
}

// setRev records the etcd revision of a rollout's state. A state that replaces one etcd
// never had (a placeholder at weight 0) is published anew, whatever its Gen.
func (c *Controller) setRev(name string, rev int64) {
	r := c.rep
	if r.revs[name] == 0 && rev != 0 {
		r.mu.Lock()
		delete(r.planes, name)
		r.mu.Unlock()
		c.dirty = true
	}
	r.revs[name] = rev
}

// save writes st through the term, completing the pending command in the same write.
func (c *Controller) save(st *State) error {
	if c.rep == nil {
		return c.store.Save(st)
	}
	r := c.rep
	if r.term == nil {
		return ErrNotLeader
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.termCtx, r.ttl)
	defer cancel()
	rev, err := r.term.Save(ctx, st.Rollout, b, r.cmdID)
	if err != nil {
		return err
	}
	r.cmdID = ""
	c.setRev(st.Rollout, rev)
	return nil
}

// notSaved handles a failed save of a replicated decision: nothing takes effect. A term
// that is over ends here. Otherwise the write may have been applied all the same (a
// request that timed out; a command that looks withdrawn because an earlier attempt
// completed it), so the states are read again, fenced, before anything more is decided,
// and the decision is made again from what etcd holds.
func (c *Controller) notSaved(name string, in Inputs, err error, now time.Time) error {
	switch {
	case errors.Is(err, ErrNotLeader):
		c.follow(err.Error())
	case errors.Is(err, ErrCommandWithdrawn):
		c.reloadTerm()
	default:
		c.saveFailed(name, err, now)
		c.reloadTerm()
	}
	return &PersistError{Rollout: name, Err: err}
}

// reloadTerm makes the leader read every state from etcd again before it decides more:
// the inputs of what it had decided so far are dropped (measurements in flight are
// taken again), and the fleet waits start over from the states read.
func (c *Controller) reloadTerm() {
	r := c.rep
	for n, cancel := range r.waits {
		cancel()
		delete(r.waits, n)
	}
	clear(r.waitGen)
	c.newEpoch()
	r.loaded = false
}

// reconcile starts the releases the config asks for and etcd lacks: a rollout without a
// state, or whose revision changed. Leader only.
func (c *Controller) reconcile(now time.Time) {
	r := c.rep
	for i := range c.cfg.Rollouts {
		rl := &c.cfg.Rollouts[i]
		old := c.states[rl.Name]
		if r.revs[rl.Name] != 0 && old != nil && old.Revision == rl.Revision {
			continue
		}
		if !c.decides() {
			return
		}
		var prev *State
		if r.revs[rl.Name] != 0 {
			prev = old
		}
		st := NewState(rl, prev, now)
		ev := &Event{Type: EventStarted, Rollout: rl.Name, Revision: rl.Revision, Time: now,
			Message: fmt.Sprintf("release %s started: stable %s, canary %s", rl.Revision, st.Stable, st.Canary)}
		if prev != nil {
			st.History = prev.History
			ev.Message = fmt.Sprintf("new revision %s (was %s): stable %s, canary %s", rl.Revision, prev.Revision, st.Stable, st.Canary)
		}
		if err := c.save(&st); err != nil {
			if errors.Is(err, ErrNotLeader) {
				c.follow(err.Error())
				return
			}
			c.saveFailed(rl.Name, err, now)
			continue
		}
		c.saved(rl.Name)
		if prev != nil {
			c.terminateLive(prev)
		}
		if old == nil {
			old = &State{}
		}
		c.commit(rl, old, &st, []Action{ev}, Inputs{}, now)
	}
}

// awaitFleet starts waiting until every replica serves the routing of rollout name's
// state, unless its routing is applied or awaited already. Leader only.
func (c *Controller) awaitFleet(name string) {
	r := c.rep
	st := c.states[name]
	if st == nil || st.AppliedGen == st.Gen || r.revs[name] == 0 || r.waitGen[name] == st.Gen {
		return
	}
	if cancel := r.waits[name]; cancel != nil {
		cancel()
	}
	ctx, cancel := context.WithCancel(r.termCtx)
	r.waits[name], r.waitGen[name] = cancel, st.Gen
	rev, gen, weight, epoch := r.revs[name], st.Gen, st.SetWeight, c.epoch.Load()
	go func() {
		delivered := "-"
		for ctx.Err() == nil {
			refusal, err := r.repl.WaitApplied(ctx, name, rev)
			if err != nil {
				sleep(ctx, r.ttl/5)
				continue
			}
			if refusal != delivered {
				a := Applied{Gen: gen, Weight: weight, At: c.clock.Now()}
				if refusal != "" {
					a.Err = errors.New(refusal)
				}
				c.deliver(epoch, name, func(in *Inputs) { in.Applied = append(in.Applied, a) })
				delivered = refusal
			}
			if refusal == "" {
				return
			}
			// A refusal is retried by the refusing replica: wait for it to serve the state.
			sleep(ctx, r.ttl/2)
		}
	}()
}

// carryOut decides an operator command from the term's queue, and completes it.
func (c *Controller) carryOut(cmd Command) {
	r := c.rep
	if !c.decides() {
		r.retryCmds = append(r.retryCmds, cmd)
		return
	}
	st := c.states[cmd.Rollout]
	if c.cfg.Rollout(cmd.Rollout) == nil || st == nil {
		c.complete(cmd, fmt.Sprintf("%v %q", ErrUnknownRollout, cmd.Rollout))
		return
	}
	if err := CheckCommand(st, cmd.Kind); err != nil {
		c.complete(cmd, err.Error())
		return
	}
	c.log.Info("operator command", zap.String("rollout", cmd.Rollout), zap.String("command", string(cmd.Kind)),
		zap.String("id", cmd.ID))
	in := c.takeInputs(cmd.Rollout)
	in.Commands = append(in.Commands, cmd.Kind)
	r.cmdID = cmd.ID
	err := c.step(cmd.Rollout, in)
	pending := r.cmdID != ""
	r.cmdID = ""
	switch {
	case err == nil && pending:
		c.complete(cmd, "") // carried out without changing the state
	case err == nil, errors.Is(err, ErrNotLeader):
	case errors.Is(err, ErrCommandWithdrawn):
		c.log.Info("operator command withdrawn by its submitter before it was carried out", zap.String("id", cmd.ID))
	default:
		if r.term != nil {
			r.retryCmds = append(r.retryCmds, cmd)
		}
	}
	c.publish()
	c.publishView()
}

// complete records a command's outcome without a state change.
func (c *Controller) complete(cmd Command, refusal string) {
	r := c.rep
	ctx, cancel := context.WithTimeout(r.termCtx, r.ttl)
	err := r.term.Complete(ctx, cmd.ID, refusal)
	cancel()
	switch {
	case err == nil, errors.Is(err, ErrCommandWithdrawn):
	case errors.Is(err, ErrNotLeader):
		c.follow(err.Error())
	default:
		c.log.Warn("cannot record an operator command's outcome in etcd; trying again", zap.String("id", cmd.ID), zap.Error(err))
		r.retryCmds = append(r.retryCmds, cmd)
	}
}

// retryCommands decides again the commands whose decision could not be saved.
func (c *Controller) retryCommands() {
	r := c.rep
	cmds := r.retryCmds
	r.retryCmds = nil
	for _, cmd := range cmds {
		c.carryOut(cmd)
	}
}

// planesApplied is the local publisher's report in replicated mode: it goes to the
// fleet (report), not to the machine.
func (c *Controller) planesApplied(gens map[string]Applied) {
	c.rep.mu.Lock()
	maps.Copy(c.rep.planes, gens)
	c.rep.mu.Unlock()
	c.poke()
}

// report tells the fleet what this replica's data planes serve: for each rollout, the
// weight and revision of its current state once they applied its routing (Gen), or the
// previous report with the refusal of the current one.
func (c *Controller) report() {
	r := c.rep
	r.mu.Lock()
	planes := maps.Clone(r.planes)
	r.mu.Unlock()
	out := make(map[string]ReplicaApplied, len(c.states))
	for n, st := range c.states {
		prev, had := r.reported[n]
		a, ok := planes[n]
		rev := r.revs[n]
		switch {
		case !ok || rev == 0 || a.Gen != st.Gen:
			if had {
				out[n] = prev // still serving what it reported
			}
		case a.Err != nil:
			prev.Refused, prev.Error = rev, a.Err.Error()
			out[n] = prev
		default:
			out[n] = ReplicaApplied{Weight: st.SetWeight, Revision: rev}
		}
	}
	if !maps.Equal(out, r.reported) {
		r.reported = out
		r.repl.ReportApplied(maps.Clone(out))
	}
}

// published records the revisions the read view now shows (for command waiters).
func (r *replica) published(revs map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if maps.Equal(r.known, revs) {
		return
	}
	r.known = maps.Clone(revs)
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitKnown waits until the read view shows rollout name at revision rev or later.
func (r *replica) waitKnown(ctx context.Context, name string, rev int64) {
	for {
		r.mu.Lock()
		ok, ch := r.known[name] >= rev, r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// commandTimeout bounds a replicated command: long enough for a failover, shorter than
// the CLI's HTTP timeout (15 s).
func (r *replica) commandTimeout() time.Duration {
	return min(max(10*time.Second, 2*r.ttl+time.Second), 14*time.Second)
}

// commandReplicated queues an operator command in etcd for the leader, waits for its
// outcome, and then until this replica's read view shows its effect.
func (c *Controller) commandReplicated(name string, kind CommandKind) error {
	if _, ok := c.Get(name); !ok {
		return fmt.Errorf("%w %q", ErrUnknownRollout, name)
	}
	timeout := c.rep.commandTimeout()
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	out, err := c.rep.repl.Do(ctx, Command{Rollout: name, Kind: kind})
	if err != nil {
		if c.ctx.Err() != nil {
			return ErrStopped
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("etcd did not take the command within %s: is etcd reachable? (%w)", timeout, err)
		}
		return &ReplicationError{Rollout: name, Err: err}
	}
	if out.Error != "" {
		return errors.New(out.Error)
	}
	if out.Changed {
		c.rep.waitKnown(ctx, name, out.Revision)
	}
	return nil
}

// reloadReplicated switches to cfg without deciding anything itself: rollouts keep the
// states etcd has; the leader starts the releases the new config asks for (reconcile).
func (c *Controller) reloadReplicated(cfg *model.Config) error {
	r := c.rep
	next := map[string]*State{}
	for i := range cfg.Rollouts {
		rl := &cfg.Rollouts[i]
		if st := c.states[rl.Name]; st != nil {
			next[rl.Name] = st
			continue
		}
		fresh := NewState(rl, nil, time.Time{})
		next[rl.Name] = &fresh
	}
	for n, st := range c.states {
		if next[n] != nil {
			continue
		}
		c.terminateLive(st)
		c.metrics.forget(n)
		c.takeInputs(n)
		delete(c.pubGen, n)
		delete(c.unsaved, n)
		delete(c.saveErrs, n)
		delete(r.revs, n)
		if cancel := r.waits[n]; cancel != nil {
			cancel()
		}
		delete(r.waits, n)
		delete(r.waitGen, n)
	}
	c.cfg = cfg
	c.setAckTimeout(cfg)
	c.states = next
	if r.term != nil {
		// A rollout new to this config may have a state in etcd: read them all again,
		// fenced, before deciding.
		c.reloadTerm()
	} else {
		for n := range next {
			if sc, ok := r.latest[n]; ok {
				c.adopt(sc)
			}
		}
	}
	c.dirty = true
	c.tick()
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
