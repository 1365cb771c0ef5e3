package ha

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The operator actions a Command may carry.
const (
	ActionStart   = "start"
	ActionPromote = "promote"
	ActionAbort   = "abort"
	ActionRetry   = "retry"
)

var (
	// ErrCommandWithdrawn: the command's submitter withdrew it (it gave up waiting)
	// before the leader completed it; the leader must not carry it out.
	ErrCommandWithdrawn = errors.New("ha: the command was withdrawn by its submitter")
	// ErrNoOutcome: no leader took the command before the wait ended; it was withdrawn
	// and will never be carried out.
	ErrNoOutcome = errors.New("ha: no leader carried out the command in time; it was withdrawn and will not run")
)

// Command is an operator command given to any replica and carried out by the leader.
type Command struct {
	ID      string `json:"id"`
	Rollout string `json:"rollout"`
	Action  string `json:"action"` // start, promote, abort, retry
	// Full is promote --full: skip every remaining step.
	Full bool `json:"full,omitempty"`
	// From is the ID of the replica that queued it; At when.
	From string    `json:"from"`
	At   time.Time `json:"at"`
	// Revision is the etcd revision at which it was queued.
	Revision int64 `json:"-"`
}

// Outcome is what the leader made of a command.
type Outcome struct {
	ID string `json:"id"`
	// Error is why the command was refused; "" when it was carried out.
	Error string `json:"error,omitempty"`
	// Leader is the ID of the replica that decided; At when.
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
	// Changed is true when the command changed its rollout's state: the outcome was
	// written together with that state (Term.Save), at Revision.
	Changed bool `json:"changed,omitempty"`
	// Revision is the etcd revision at which the outcome was written (set by
	// WaitOutcome and Do); with Changed, the revision of the state the command caused.
	Revision int64 `json:"-"`
}

func validAction(a string) bool {
	switch a {
	case ActionStart, ActionPromote, ActionAbort, ActionRetry:
		return true
	}
	return false
}

// Submit queues a command for the leader and returns it with its ID and Revision set.
func (r *Replica) Submit(ctx context.Context, c Command) (Command, error) {
	if !validAction(c.Action) {
		return c, fmt.Errorf("ha: unknown action %q; use start, promote, abort or retry", c.Action)
	}
	if c.Rollout == "" {
		return c, errors.New("ha: a command needs a rollout")
	}
	if c.Full && c.Action != ActionPromote {
		return c, errors.New("ha: full applies to promote only")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c.ID = time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
	c.From, c.At = r.id, time.Now().UTC()
	k, v := r.key(commandsDir, c.ID), mustJSON(c)
	// A failure that may pass (an etcd leader election after a member died, a member that
	// went away mid-request) is tried again until ctx ends. A request that timed out may
	// have committed all the same: then the key holds this very command.
	for {
		resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, v)).Else(clientv3.OpGet(k)).Commit()
		switch {
		case err == nil && resp.Succeeded:
			c.Revision = resp.Header.Revision
			return c, nil
		case err == nil:
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && string(kvs[0].Value) == v {
				c.Revision = kvs[0].CreateRevision
				return c, nil
			}
			return c, errors.New("ha: command ID collision; submit again")
		case ctx.Err() != nil || !transient(err):
			return c, err
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// transient reports whether an etcd error may pass on its own: a request that timed out,
// no etcd leader or a leader change, a member that cannot be reached.
func transient(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

// Withdraw removes a queued command that no leader has taken yet. withdrawn is false
// when it was already completed (its outcome then exists) or never queued.
func (r *Replica) Withdraw(ctx context.Context, id string) (withdrawn bool, err error) {
	resp, err := r.cli.Delete(ctx, r.key(commandsDir, id))
	if err != nil {
		return false, err
	}
	return resp.Deleted == 1, nil
}

// WaitOutcome waits for the outcome of a submitted command, and then removes it from
// etcd (the submitter is its only reader). When ctx ends first, it withdraws the command:
// if that succeeds the command will never run and the error is ErrNoOutcome; if the
// leader had completed it meanwhile, its outcome is returned.
func (r *Replica) WaitOutcome(ctx context.Context, c Command) (Outcome, error) {
	o, err := r.waitOutcome(ctx, c)
	if err == nil {
		dctx, cancel := context.WithTimeout(context.Background(), r.ttl)
		_, _ = r.cli.Delete(dctx, r.key(outcomesDir, c.ID))
		cancel()
	}
	return o, err
}

func (r *Replica) waitOutcome(ctx context.Context, c Command) (Outcome, error) {
	k := r.key(outcomesDir, c.ID)
	from := c.Revision
	for ctx.Err() == nil {
		// From the submit revision, the outcome's put is in the watch even if the
		// leader that wrote it has died since (its outcomes go with its lease).
		wctx, cancel := context.WithCancel(ctx)
		wch := r.cli.Watch(wctx, k, clientv3.WithRev(from))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					cancel()
					return decodeOutcome(ev.Kv)
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
		// The watch broke (etcd down, history compacted): look, then watch again.
		gctx, gcancel := context.WithTimeout(ctx, r.ttl)
		resp, err := r.cli.Get(gctx, k)
		gcancel()
		if err != nil {
			sleep(ctx, r.ttl/5)
			continue
		}
		if len(resp.Kvs) > 0 {
			return decodeOutcome(resp.Kvs[0])
		}
		from = resp.Header.Revision + 1
	}
	// Out of time: withdraw it, or learn that the leader took it meanwhile.
	cctx, cancel := context.WithTimeout(context.Background(), r.ttl)
	defer cancel()
	withdrawn, err := r.Withdraw(cctx, c.ID)
	if err != nil {
		return Outcome{}, fmt.Errorf("no outcome in time and etcd unreachable: the command may still run (%v)", err)
	}
	if withdrawn {
		return Outcome{}, ErrNoOutcome
	}
	resp, err := r.cli.Get(cctx, k)
	if err == nil && len(resp.Kvs) > 0 {
		return decodeOutcome(resp.Kvs[0])
	}
	return Outcome{}, fmt.Errorf("ha: the leader took the command but its outcome is gone (the leader died since): check the rollout's status")
}

// Do submits c and waits for its outcome (see Submit and WaitOutcome).
func (r *Replica) Do(ctx context.Context, c Command) (Outcome, error) {
	c, err := r.Submit(ctx, c)
	if err != nil {
		return Outcome{}, err
	}
	return r.WaitOutcome(ctx, c)
}

func decodeOutcome(kv *mvccpb.KeyValue) (Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(kv.Value, &o); err != nil {
		return o, fmt.Errorf("ha: unreadable outcome: %w", err)
	}
	o.Revision = kv.ModRevision
	return o, nil
}

// Commands delivers the queued commands to the leader, oldest first, each once in this
// term; the channel closes when the term ends or ctx is done. Complete each with Save
// (when it changed a state) or Complete (when it was refused); one the term could not
// complete stays queued and is delivered again in the next term, of whichever replica
// leads. A malformed command is refused here and not delivered.
func (t *Term) Commands(ctx context.Context) <-chan Command {
	ch := make(chan Command)
	go func() {
		defer close(ch)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-t.lost:
				cancel()
			case <-ctx.Done():
			}
		}()
		dir := t.r.key(commandsDir, "")
		seen := map[string]bool{}
		deliver := func(kv []byte, key string) bool {
			id := key[len(dir):]
			if seen[id] {
				return true
			}
			seen[id] = true
			var c Command
			err := json.Unmarshal(kv, &c)
			switch {
			case err != nil:
				err = fmt.Errorf("unreadable command: %v", err)
			case c.ID != id:
				err = fmt.Errorf("command id %q under key %q", c.ID, id)
			case !validAction(c.Action):
				err = fmt.Errorf("unknown action %q", c.Action)
			}
			if err != nil {
				t.r.log.Warn("refusing a malformed command", zap.String("id", id), zap.Error(err))
				if cerr := t.Complete(ctx, Outcome{ID: id, Error: err.Error()}); cerr != nil {
					t.r.log.Warn("complete malformed command", zap.String("id", id), zap.Error(cerr))
				}
				return true
			}
			select {
			case ch <- c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, t.r.ttl)
			resp, err := t.r.cli.Get(rctx, dir, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
			rcancel()
			if err != nil {
				sleep(ctx, t.r.ttl/5)
				continue
			}
			for _, kv := range resp.Kvs {
				if !deliver(kv.Value, string(kv.Key)) {
					return
				}
			}
			wctx, wcancel := context.WithCancel(ctx)
			wch := t.r.cli.Watch(clientv3.WithRequireLeader(wctx), dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypePut && ev.IsCreate() {
						if !deliver(ev.Kv.Value, string(ev.Kv.Key)) {
							wcancel()
							return
						}
					}
				}
			}
			wcancel()
		}
	}()
	return ch
}
