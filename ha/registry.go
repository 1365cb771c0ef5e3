package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Applied is what a replica's data planes have all applied for one rollout: the weight
// and the revision of the state it came from. When a data plane refused a later state
// (an xDS NACK, an ACK timeout), Refused is that state's revision and Error the data
// plane's message; the leader's WaitApplied then fails with a *RefusedError.
type Applied struct {
	Weight   int
	Revision int64
	Refused  int64
	Error    string
}

// Refusal is a state a replica's data planes refused: its revision and their message.
type Refusal struct {
	Revision int64  `json:"revision"`
	Error    string `json:"error"`
}

// RefusedError is WaitApplied's answer when a replica's data planes refused the state.
type RefusedError struct {
	Replica string
	Refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("replica %s refused state revision %d: %s", e.Replica, e.Revision, e.Refusal.Error)
}

// Info is one live replica as registered in etcd (the rows of GET /api/v1/replicas).
type Info struct {
	ID    string `json:"id"`
	Admin string `json:"admin"`
	// Leader is true for the replica that leads (filled in by View; not stored).
	Leader bool `json:"leader"`
	// AppliedWeights is the canary weight every data plane of this replica serves, per
	// rollout; AppliedRevisions the state revision it came from.
	AppliedWeights   map[string]int   `json:"appliedWeights"`
	AppliedRevisions map[string]int64 `json:"appliedRevisions"`
	// Refused lists, per rollout, a newer state this replica's data planes refused.
	Refused      map[string]Refusal `json:"refused,omitempty"`
	ConfigDigest string             `json:"configDigest"`
	// LastSeen is when the replica last wrote its registration (at least every leaseTTL).
	LastSeen time.Time `json:"lastSeen"`
}

// View is the replicated control plane as one replica sees it: GET /api/v1/replicas.
type View struct {
	Self   string `json:"self"`
	Leader string `json:"leader"` // "" when no replica leads
	// ConfigDigest is the leader's config digest.
	ConfigDigest string `json:"configDigest,omitempty"`
	Replicas     []Info `json:"replicas"` // live ones, by ID
}

// ReportApplied records what this replica's data planes have applied, per rollout
// (replacing the previous report). It is written to etcd at once, in the background.
func (r *Replica) ReportApplied(applied map[string]Applied) {
	cp := make(map[string]Applied, len(applied))
	for k, v := range applied {
		cp[k] = v
	}
	r.mu.Lock()
	r.applied = cp
	r.registrationChangedLocked()
	r.mu.Unlock()
}

func (r *Replica) info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := Info{ID: r.id, Admin: r.admin, ConfigDigest: r.digest, LastSeen: time.Now().UTC(),
		AppliedWeights: map[string]int{}, AppliedRevisions: map[string]int64{}}
	for k, a := range r.applied {
		in.AppliedWeights[k] = a.Weight
		in.AppliedRevisions[k] = a.Revision
		if a.Error != "" {
			if in.Refused == nil {
				in.Refused = map[string]Refusal{}
			}
			in.Refused[k] = Refusal{Revision: a.Refused, Error: a.Error}
		}
	}
	return in
}

// register keeps the replica's registration written under the session's lease: at once,
// on every change, and every leaseTTL (LastSeen).
func (s *session) register() {
	r := s.r
	heartbeat := max(r.ttl, time.Second)
	conflict := false
	for {
		err := s.writeRegistration()
		switch {
		case err == nil:
			if conflict {
				r.log.Info("registered after the previous registration of this ID expired")
			}
			conflict = false
			s.regOnce.Do(func() { close(s.registered) })
		case err == errIDTaken && !conflict:
			conflict = true
			r.log.Error("another live replica is registered with this ID: waiting until its lease expires (replica IDs must be unique)")
		}
		wait := heartbeat
		if err != nil {
			wait = r.ttl / 5
		}
		select {
		case <-s.ctx.Done():
			return
		case <-r.changed:
		case <-time.After(wait):
		}
	}
}

var errIDTaken = fmt.Errorf("ha: replica ID registered under another lease")

// writeRegistration puts the registration if the key is free or already ours; it never
// overwrites another lease's (a replica with the same ID that is still alive, or whose
// lease has not expired yet after a kill -9).
func (s *session) writeRegistration() error {
	r := s.r
	k := r.key(replicasDir, r.id)
	v := mustJSON(r.info())
	ctx, cancel := context.WithTimeout(s.ctx, r.ttl/2)
	defer cancel()
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(k), "=", s.lease)).
		Then(clientv3.OpPut(k, v, clientv3.WithLease(s.lease))).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return errIDTaken
	}
	resp, err = r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, v, clientv3.WithLease(s.lease))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errIDTaken
	}
	return nil
}

// View lists the live replicas and the leader, read from etcd.
func (r *Replica) View(ctx context.Context) (View, error) {
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.key(replicasDir, ""), clientv3.WithPrefix()),
		clientv3.OpGet(r.key(leaderDir, "/"), clientv3.WithFirstCreate()...),
	).Commit()
	if err != nil {
		return View{Self: r.id}, err
	}
	v := View{Self: r.id, Replicas: []Info{}}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		v.Leader = string(kvs[0].Value)
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var in Info
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			r.log.Warn("unreadable registration", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		if in.Leader = in.ID == v.Leader && v.Leader != ""; in.Leader {
			v.ConfigDigest = in.ConfigDigest
		}
		v.Replicas = append(v.Replicas, in)
	}
	sort.Slice(v.Replicas, func(i, j int) bool { return v.Replicas[i].ID < v.Replicas[j].ID })
	return v, nil
}

// AppliedWeight is the canary weight of rollout that every live replica running the
// leader's config serves: the lowest they report. ok is false when none reports one.
func (v View) AppliedWeight(rollout string) (weight int, ok bool) {
	for _, in := range v.Replicas {
		if v.ConfigDigest != "" && in.ConfigDigest != v.ConfigDigest {
			continue
		}
		w, has := in.AppliedWeights[rollout]
		if !has {
			continue
		}
		if !ok || w < weight {
			weight, ok = w, true
		}
	}
	return weight, ok
}

// WaitApplied returns once every live replica running this replica's config digest
// reports, for rollout, a state revision of at least rev (the revision Save returned):
// then every data plane of the fleet serves that state or a later one. When one of them
// reports that its data planes refused rev or a later state, it returns a *RefusedError
// naming the replica with the data plane's message. Replicas with
// another config digest are not waited for (they are reported as mismatched). A replica
// that dies stops counting when its lease expires.
func (r *Replica) WaitApplied(ctx context.Context, rollout string, rev int64) error {
	dir := r.key(replicasDir, "")
	for {
		resp, err := r.cli.Get(ctx, dir, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		regs := map[string]Info{}
		for _, kv := range resp.Kvs {
			var in Info
			if json.Unmarshal(kv.Value, &in) == nil {
				regs[string(kv.Key)] = in
			}
		}
		if done, err := r.fleetApplied(regs, rollout, rev); done {
			return err
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := r.cli.Watch(clientv3.WithRequireLeader(wctx), dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		done := false
		var refused error
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(regs, string(ev.Kv.Key))
					continue
				}
				var in Info
				if json.Unmarshal(ev.Kv.Value, &in) == nil {
					regs[string(ev.Kv.Key)] = in
				}
			}
			if done, refused = r.fleetApplied(regs, rollout, rev); done {
				break
			}
		}
		cancel()
		if done {
			return refused
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// fleetApplied reports whether the wait is over: every live replica with this replica's
// digest applied rev or later (nil), or one refused rev or later (a *RefusedError).
func (r *Replica) fleetApplied(regs map[string]Info, rollout string, rev int64) (bool, error) {
	r.mu.Lock()
	digest := r.digest
	r.mu.Unlock()
	n, all := 0, true
	for _, in := range regs {
		if in.ConfigDigest != digest {
			continue
		}
		if f, ok := in.Refused[rollout]; ok && f.Revision >= rev {
			return true, &RefusedError{Replica: in.ID, Refusal: f}
		}
		if in.AppliedRevisions[rollout] < rev {
			all = false
		}
		n++
	}
	return all && n > 0, nil
}

// Self is this replica's registration as it would write it now (for a view of the
// replica while etcd cannot be read).
func (r *Replica) Self() Info { return r.info() }
