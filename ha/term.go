package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Why a term ends (the reason label of sluice_ha_terms_lost_total).
const (
	reasonKeepalive = "keepalive" // no successful keepalive for TTL/2
	reasonExpired   = "expired"   // etcd reports the lease gone
	reasonDeposed   = "deposed"   // the election key is gone, or etcd refused a fenced write
	reasonShutdown  = "shutdown"  // Run's context ended
)

// ErrNotLeader is returned by a Term's writes once the term is over: etcd refused the
// write, or the replica stopped deciding on its own. Nothing was written.
var ErrNotLeader = errors.New("ha: not the leader")

// errConditionFailed: the fence held, but a caller's own condition did not.
var errConditionFailed = errors.New("ha: condition failed")

// Term is one stretch of leadership. While it is valid its holder alone decides; every
// write it makes is an etcd transaction fenced on the election key's create revision
// and the lease, so etcd refuses it once another replica could lead. Lost is closed when
// the term ends — at the latest TTL/2 after the last successful keepalive, before etcd
// can let the lease expire.
type Term struct {
	r      *Replica
	s      *session
	seq    uint64
	key    string
	rev    int64 // the election key's create revision
	modRev int64 // its mod revision from this term's claim
	began  time.Time

	lost   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	reason string
	lostAt time.Time
}

func (r *Replica) beginTerm(s *session, key string, rev, modRev int64) *Term {
	r.mu.Lock()
	r.termSeq++
	t := &Term{r: r, s: s, seq: r.termSeq, key: key, rev: rev, modRev: modRev, began: time.Now(), lost: make(chan struct{})}
	r.term = t
	r.mu.Unlock()
	r.m.leader.Set(1)
	r.m.terms.Inc()
	r.log.Info("leading", zap.Uint64("term", t.seq), zap.Int64("fence", modRev))
	go func() {
		select {
		case r.terms <- t:
		case <-t.lost:
		}
	}()
	return t
}

func (r *Replica) endTerm(t *Term, reason string) {
	t.lose(reason)
	r.mu.Lock()
	if r.term == t {
		r.term = nil
	}
	r.mu.Unlock()
	r.m.leader.Set(0)
	r.m.termsLost.WithLabelValues(t.Reason()).Inc()
	log := r.log.Warn
	if reason == reasonShutdown {
		log = r.log.Info
	}
	log("stopped leading", zap.Uint64("term", t.seq), zap.String("reason", t.Reason()), zap.Duration("led", time.Since(t.began)))
}

func (t *Term) lose(reason string) {
	t.once.Do(func() {
		t.mu.Lock()
		t.reason, t.lostAt = reason, time.Now()
		t.mu.Unlock()
		close(t.lost)
	})
}

// Lost is closed when the term ends; from then on its holder must not decide or act.
func (t *Term) Lost() <-chan struct{} { return t.lost }

// Valid reports whether the term still holds: not lost, and a keepalive succeeded within
// the last TTL/2.
func (t *Term) Valid() bool {
	select {
	case <-t.lost:
		return false
	default:
		return t.s.valid()
	}
}

// Reason says why the term ended ("" while it holds): keepalive, expired, deposed, shutdown.
func (t *Term) Reason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason
}

// Err is nil while the term is valid, else ErrNotLeader with the reason.
func (t *Term) Err() error {
	if t.Valid() {
		return nil
	}
	reason := t.Reason()
	if reason == "" {
		reason = reasonKeepalive
	}
	return fmt.Errorf("%w: term %d ended (%s)", ErrNotLeader, t.seq, reason)
}

// Began is when the term began.
func (t *Term) Began() time.Time { return t.began }

// LostAt is when the term ended (zero while it holds).
func (t *Term) LostAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lostAt
}

// Fence is the etcd revision at which the term began: it grows with every term, of any
// replica, so it orders them (a fencing token).
func (t *Term) Fence() int64 { return t.modRev }

// fence is the condition every write of the term carries: the election key is still
// the one this term claimed (create and mod revision), bound to this replica's lease.
func (t *Term) fence() []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev),
		clientv3.Compare(clientv3.ModRevision(t.key), "=", t.modRev),
		clientv3.Compare(clientv3.LeaseValue(t.key), "=", t.s.lease),
	}
}

// txn runs ops when the fence and cmps hold. It refuses without asking etcd when the
// term is over, and stops waiting for etcd when the term ends meanwhile.
//
// A failure that may pass — etcd electing a leader after a member died, the member the
// request went to gone mid-request — is tried again while the term lasts and ctx allows.
// The attempt that failed may have been applied all the same: a state written twice is
// the same state; a command it completed is no longer queued, so the retry fails with
// errConditionFailed (ErrCommandWithdrawn), and the caller reads the states again.
func (t *Term) txn(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	for {
		resp, err := t.txnOnce(ctx, cmps, ops...)
		if err == nil || !transient(err) || t.Err() != nil || ctx.Err() != nil {
			return resp, err
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

func (t *Term) txnOnce(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	if err := t.Err(); err != nil {
		t.r.m.writes.WithLabelValues("refused").Inc()
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.lost:
			cancel()
		case <-cctx.Done():
		}
	}()
	resp, err := t.r.cli.Txn(cctx).If(append(t.fence(), cmps...)...).Then(ops...).Else(clientv3.OpGet(t.key)).Commit()
	if err != nil {
		t.r.m.writes.WithLabelValues("error").Inc()
		if terr := t.Err(); terr != nil {
			return nil, fmt.Errorf("%w (etcd: %v)", terr, err)
		}
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 || kvs[0].CreateRevision != t.rev || kvs[0].ModRevision != t.modRev || clientv3.LeaseID(kvs[0].Lease) != t.s.lease {
			t.lose(reasonDeposed)
			t.r.m.writes.WithLabelValues("refused").Inc()
			return nil, t.Err()
		}
		t.r.m.writes.WithLabelValues("error").Inc()
		return nil, errConditionFailed
	}
	t.r.m.writes.WithLabelValues("ok").Inc()
	return resp, nil
}

// Load reads every rollout state, in a transaction fenced like a write: what it returns
// includes every state any earlier leader saved. Call it when a term begins, before
// deciding anything. It returns the revision it read at.
func (t *Term) Load(ctx context.Context) (map[string][]byte, int64, error) {
	states, rev, err := t.LoadStates(ctx)
	return stateBytes(states), rev, err
}

// LoadStates is Load with each state's own revision (the revision of its last write,
// which is what replicas report in ReportApplied once they serve it).
func (t *Term) LoadStates(ctx context.Context) (map[string]StateChange, int64, error) {
	dir := t.r.key(statesDir, "")
	resp, err := t.txn(ctx, nil, clientv3.OpGet(dir, clientv3.WithPrefix()))
	if err != nil {
		return nil, 0, err
	}
	return statesOf(dir, resp.Responses[0].GetResponseRange().Kvs), resp.Header.Revision, nil
}

// Save writes a rollout's state (opaque bytes: the analyzer's State JSON) if this term
// still holds, and returns the revision it was written at (what WaitApplied waits for).
// Each outcome in done completes a command in the same transaction, so the state change
// a command caused and its completion happen together or not at all; if one of those
// commands was withdrawn by its submitter meanwhile, nothing is written and the error is
// ErrCommandWithdrawn. After ErrNotLeader nothing was written and the term is over.
func (t *Term) Save(ctx context.Context, rollout string, state []byte, done ...Outcome) (int64, error) {
	if rollout == "" || len(state) == 0 {
		return 0, errors.New("ha: Save needs a rollout name and a state")
	}
	done = append([]Outcome(nil), done...)
	for i := range done {
		done[i].Changed = true
	}
	cmps, ops := t.completions(done)
	ops = append(ops, clientv3.OpPut(t.r.key(statesDir, rollout), string(state)))
	resp, err := t.txn(ctx, cmps, ops...)
	if errors.Is(err, errConditionFailed) {
		return 0, ErrCommandWithdrawn
	}
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// Complete records the outcome of a command that changed no state (typically a refused
// one: its Error set). It is fenced like Save.
func (t *Term) Complete(ctx context.Context, o Outcome) error {
	cmps, ops := t.completions([]Outcome{o})
	_, err := t.txn(ctx, cmps, ops...)
	if errors.Is(err, errConditionFailed) {
		return ErrCommandWithdrawn
	}
	return err
}

// completions are the conditions and operations that complete commands: each command
// must still be queued; it is removed and its outcome written under the leader's lease
// (so outcomes do not pile up: they go with the leader that decided them).
func (t *Term) completions(done []Outcome) ([]clientv3.Cmp, []clientv3.Op) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, o := range done {
		if o.Leader == "" {
			o.Leader = t.r.id
		}
		if o.At.IsZero() {
			o.At = time.Now().UTC()
		}
		ck := t.r.key(commandsDir, o.ID)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ck), ">", 0))
		ops = append(ops, clientv3.OpDelete(ck), clientv3.OpPut(t.r.key(outcomesDir, o.ID), mustJSON(o), clientv3.WithLease(t.s.lease)))
	}
	return cmps, ops
}
