package ha

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrStateExists is returned by ImportState for a rollout that already has a state.
var ErrStateExists = errors.New("ha: the rollout already has a state in etcd")

// StateChange is a rollout state as committed in etcd.
type StateChange struct {
	Rollout string
	// State is the saved bytes; nil when the state was deleted.
	State []byte
	// Revision is the etcd revision of this change: later changes have higher ones.
	Revision int64
}

// States reads every rollout state (a linearizable read: it sees every committed write)
// and the revision it read at.
func (r *Replica) States(ctx context.Context) (map[string][]byte, int64, error) {
	states, rev, err := r.ReadStates(ctx)
	return stateBytes(states), rev, err
}

// stateBytes drops the revisions of states.
func stateBytes(states map[string]StateChange) map[string][]byte {
	if states == nil {
		return nil
	}
	out := make(map[string][]byte, len(states))
	for k, s := range states {
		out[k] = s.State
	}
	return out
}

// statesOf reads the rollout states in kvs, keys under dir, with their revisions.
func statesOf(dir string, kvs []*mvccpb.KeyValue) map[string]StateChange {
	out := map[string]StateChange{}
	for _, kv := range kvs {
		name := string(kv.Key[len(dir):])
		out[name] = StateChange{Rollout: name, State: kv.Value, Revision: kv.ModRevision}
	}
	return out
}

// ReadStates is States with each state's own revision (of its last write).
func (r *Replica) ReadStates(ctx context.Context) (map[string]StateChange, int64, error) {
	dir := r.key(statesDir, "")
	resp, err := r.cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	return statesOf(dir, resp.Kvs), resp.Header.Revision, nil
}

// WatchStates follows the rollout states: first every current state, then each change
// as it is committed, in revision order. After a broken watch (etcd down, the member it
// talked to cut off from the others, history compacted) it reads everything again and
// sends what differs from what it sent, deletions included, so the receiver always ends
// at etcd's latest states. Apply a change only if its Revision is higher than the last
// one applied for that rollout. The channel closes when ctx is done.
func (r *Replica) WatchStates(ctx context.Context) <-chan StateChange {
	ch := make(chan StateChange)
	go func() {
		defer close(ch)
		dir := r.key(statesDir, "")
		sent := map[string]int64{} // rollout → revision last sent
		send := func(c StateChange) bool {
			select {
			case ch <- c:
				sent[c.Rollout] = c.Revision
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, r.ttl)
			resp, err := r.cli.Get(rctx, dir, clientv3.WithPrefix())
			cancel()
			if err != nil {
				sleep(ctx, r.ttl/5)
				continue
			}
			present := map[string]bool{}
			for _, kv := range resp.Kvs {
				name := string(kv.Key[len(dir):])
				present[name] = true
				if sent[name] != kv.ModRevision && !send(StateChange{Rollout: name, State: kv.Value, Revision: kv.ModRevision}) {
					return
				}
			}
			for name := range sent {
				if !present[name] {
					if !send(StateChange{Rollout: name, Revision: resp.Header.Revision}) {
						return
					}
					delete(sent, name)
				}
			}
			wctx, cancel := context.WithCancel(ctx)
			wch := r.cli.Watch(clientv3.WithRequireLeader(wctx), dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					c := StateChange{Rollout: string(ev.Kv.Key[len(dir):]), Revision: ev.Kv.ModRevision}
					if ev.Type == clientv3.EventTypePut {
						c.State = ev.Kv.Value
					}
					if !send(c) {
						cancel()
						return
					}
					if c.State == nil {
						delete(sent, c.Rollout)
					}
				}
			}
			cancel()
		}
	}()
	return ch
}

// ImportState writes a rollout's state only if it has none in etcd yet (ErrStateExists
// otherwise): for moving a stateDir's rollouts into etcd before the replicas start.
func (r *Replica) ImportState(ctx context.Context, rollout string, state []byte) error {
	if rollout == "" || len(state) == 0 {
		return errors.New("ha: ImportState needs a rollout name and a state")
	}
	k := r.key(statesDir, rollout)
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(state))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return ErrStateExists
	}
	return nil
}

// Shared returns the value every replica shares under name — the keys that sign
// sticky-session cookies, say, which every router must accept from every other: the one
// etcd holds, or initial, written now when etcd holds none (the first replica's wins).
func (r *Replica) Shared(ctx context.Context, name string, initial []byte) ([]byte, error) {
	k := r.key(sharedDir, name)
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(initial))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		return initial, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, errors.New("ha: shared value " + name + " was deleted while read; try again")
	}
	return kvs[0].Value, nil
}
