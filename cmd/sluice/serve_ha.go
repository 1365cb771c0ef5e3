package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
)

// Environment variables a replica on store.etcd reads.
const (
	// envAdvertise is the admin address the other replicas reach this one at.
	envAdvertise = "SLUICE_ADVERTISE_ADMIN"
	// envReplicaID overrides the replica ID (default: host name and advertised address).
	envReplicaID = "SLUICE_REPLICA_ID"
)

// replicaNode is this process's membership of a replicated control plane
// (ControlPlane.spec.store.etcd): the ha.Replica, the states read from etcd before
// anything was bound, and the Run goroutine.
type replicaNode struct {
	rep     *ha.Replica
	ttl     time.Duration
	prefix  string
	log     *zap.Logger
	initial map[string]analyzer.StoredState
	sticky  [][]byte // the sticky-cookie keys every replica shares

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned (nil before start)
	once   sync.Once
}

// openReplica connects to etcd and reads the rollout states, waiting for etcd as long as
// it takes (ctx ends the wait): a replica serves nothing before it knows the states,
// so it never serves a weight etcd does not hold. adminAddr is the bound admin address.
func openReplica(ctx context.Context, cfg *model.Config, adminAddr string, log *zap.Logger, reg prometheus.Registerer) (*replicaNode, error) {
	advertise, err := advertisedAdmin(adminAddr)
	if err != nil {
		return nil, err
	}
	id := os.Getenv(envReplicaID)
	if id == "" {
		id = ha.DefaultID(advertise)
	}
	rep, err := ha.Open(cfg.ControlPlane.Etcd, ha.Options{ID: id, Admin: advertise, ConfigDigest: ha.ConfigDigest(cfg),
		Logger: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("store.etcd: %w", err)
	}
	n := &replicaNode{rep: rep, ttl: cfg.ControlPlane.Etcd.LeaseTTL, prefix: cfg.ControlPlane.Etcd.Prefix, log: log.With(zap.String("replica", id))}
	n.ctx, n.cancel = context.WithCancel(ctx)
	n.log.Info("replica of a replicated control plane", zap.Strings("etcd", cfg.ControlPlane.Etcd.Endpoints),
		zap.String("prefix", cfg.ControlPlane.Etcd.Prefix), zap.String("advertisedAdmin", advertise),
		zap.String("configDigest", ha.ConfigDigest(cfg)))
	if err := n.readFromEtcd(ctx); err != nil {
		_ = rep.Close()
		return nil, err
	}
	return n, nil
}

// readFromEtcd reads what the data planes need before they serve — every rollout state
// and the shared sticky-cookie keys — trying again until etcd answers.
func (n *replicaNode) readFromEtcd(ctx context.Context) error {
	logged := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, n.ttl)
		err := n.read(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err.Error() != logged {
			logged = err.Error()
			n.log.Error("etcd unreachable: waiting to read the rollout states before serving (a starting replica serves nothing it has not read from etcd)",
				zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.ttl / 5):
		}
	}
}

// stickyKeysName is the shared value holding the sticky-cookie keys, in
// router.LoadStickyKeys's format.
const stickyKeysName = "sticky-cookie.keys"

func (n *replicaNode) read(ctx context.Context) error {
	states, _, err := n.rep.ReadStates(ctx)
	if err != nil {
		return err
	}
	n.initial = make(map[string]analyzer.StoredState, len(states))
	for name, s := range states {
		n.initial[name] = analyzer.StoredState{Rollout: name, State: s.State, Revision: s.Revision}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	initial := "# Sluice sticky-session cookie keys, hex, one per line: the first signs, all verify.\n" + hex.EncodeToString(key) + "\n"
	b, err := n.rep.Shared(ctx, stickyKeysName, []byte(initial))
	if err != nil {
		return err
	}
	n.sticky, err = router.ParseStickyKeys("etcd "+n.prefix+"shared/"+stickyKeysName, b)
	return err
}

// stickyKeys are the keys that sign sticky-session cookies: replicated, the set every
// replica shares in etcd (a cookie one router set is valid at every other); alone, the
// stateDir's file.
func stickyKeys(cfg *model.Config, node *replicaNode) ([][]byte, error) {
	if node != nil {
		return node.sticky, nil
	}
	return router.LoadStickyKeys(filepath.Join(cfg.ControlPlane.StateDir, stickyKeyFile))
}

// initialSnapshot is what the data planes serve first: etcd's states, as they are.
func (n *replicaNode) initialSnapshot(cfg *model.Config) *model.Snapshot {
	states := map[string]*analyzer.State{}
	for name, sc := range n.initial {
		if st, err := analyzer.DecodeState(sc.State); err == nil {
			states[name] = st
		}
	}
	return analyzer.BuildSnapshot(cfg, states)
}

// start joins the replicated control plane: lease, registration, candidacy.
func (n *replicaNode) start() {
	n.done = make(chan struct{})
	go func() { defer close(n.done); _ = n.rep.Run(n.ctx) }()
}

// stop leaves it (resigning leadership and revoking the lease, so another replica leads
// at once) and closes the etcd client. Safe to call twice.
func (n *replicaNode) stop() {
	n.once.Do(func() {
		n.cancel()
		if n.done != nil {
			<-n.done
		}
		_ = n.rep.Close()
	})
}

// replication adapts the replica to analyzer.Replication.
func (n *replicaNode) replication() analyzer.Replication {
	a := &replication{rep: n.rep, ttl: n.ttl, terms: make(chan analyzer.Term)}
	go func() {
		for {
			select {
			case <-n.ctx.Done():
				return
			case t := <-n.rep.Terms():
				select {
				case a.terms <- haTerm{t}:
				case <-t.Lost():
				case <-n.ctx.Done():
					return
				}
			}
		}
	}()
	return a
}

// advertisedAdmin is the admin address the other replicas reach this one at:
// $SLUICE_ADVERTISE_ADMIN, else the bound address with an unspecified host (0.0.0.0,
// ::) replaced by this machine's first non-loopback IP address.
func advertisedAdmin(bound string) (string, error) {
	if a := os.Getenv(envAdvertise); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", fmt.Errorf("%s=%q: want HOST:PORT", envAdvertise, a)
		}
		return a, nil
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return bound, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("the admin API listens on all interfaces and none can be listed (%v): set %s", err, envAdvertise)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
	}
	return "", fmt.Errorf("the admin API listens on all interfaces and this machine has no other address than loopback: set %s", envAdvertise)
}

type replication struct {
	rep   *ha.Replica
	ttl   time.Duration
	terms chan analyzer.Term
}

func (a *replication) Terms() <-chan analyzer.Term { return a.terms }
func (a *replication) LeaseTTL() time.Duration     { return a.ttl }

func (a *replication) WatchStates(ctx context.Context) <-chan analyzer.StoredState {
	out := make(chan analyzer.StoredState)
	go func() {
		defer close(out)
		for c := range a.rep.WatchStates(ctx) {
			select {
			case out <- analyzer.StoredState{Rollout: c.Rollout, State: c.State, Revision: c.Revision}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (a *replication) ReportApplied(m map[string]analyzer.ReplicaApplied) {
	out := make(map[string]ha.Applied, len(m))
	for k, v := range m {
		out[k] = ha.Applied{Weight: v.Weight, Revision: v.Revision, Refused: v.Refused, Error: v.Error}
	}
	a.rep.ReportApplied(out)
}

func (a *replication) WaitApplied(ctx context.Context, rollout string, rev int64) (string, error) {
	err := a.rep.WaitApplied(ctx, rollout, rev)
	var refused *ha.RefusedError
	if errors.As(err, &refused) {
		return refused.Error(), nil
	}
	return "", err
}

func (a *replication) Do(ctx context.Context, c analyzer.Command) (analyzer.Outcome, error) {
	cmd := ha.Command{Rollout: c.Rollout}
	switch c.Kind {
	case analyzer.CmdStart:
		cmd.Action = ha.ActionStart
	case analyzer.CmdPromote:
		cmd.Action = ha.ActionPromote
	case analyzer.CmdPromoteFull:
		cmd.Action, cmd.Full = ha.ActionPromote, true
	case analyzer.CmdAbort:
		cmd.Action = ha.ActionAbort
	case analyzer.CmdRetry:
		cmd.Action = ha.ActionRetry
	}
	o, err := a.rep.Do(ctx, cmd)
	return analyzer.Outcome{Error: o.Error, Leader: o.Leader, Changed: o.Changed, Revision: o.Revision}, err
}

// haTerm adapts an ha.Term to analyzer.Term.
type haTerm struct{ t *ha.Term }

func (h haTerm) Lost() <-chan struct{} { return h.t.Lost() }
func (h haTerm) Valid() bool           { return h.t.Valid() }

func (h haTerm) Load(ctx context.Context) (map[string]analyzer.StoredState, error) {
	states, _, err := h.t.LoadStates(ctx)
	if err != nil {
		return nil, termErr(err)
	}
	out := make(map[string]analyzer.StoredState, len(states))
	for k, s := range states {
		out[k] = analyzer.StoredState{Rollout: s.Rollout, State: s.State, Revision: s.Revision}
	}
	return out, nil
}

func (h haTerm) Save(ctx context.Context, rollout string, state []byte, commandID string) (int64, error) {
	var done []ha.Outcome
	if commandID != "" {
		done = append(done, ha.Outcome{ID: commandID})
	}
	rev, err := h.t.Save(ctx, rollout, state, done...)
	return rev, termErr(err)
}

func (h haTerm) Complete(ctx context.Context, commandID, refusal string) error {
	return termErr(h.t.Complete(ctx, ha.Outcome{ID: commandID, Error: refusal}))
}

func (h haTerm) Commands(ctx context.Context) <-chan analyzer.Command {
	out := make(chan analyzer.Command)
	go func() {
		defer close(out)
		for c := range h.t.Commands(ctx) {
			kind := analyzer.CommandKind(c.Action)
			if c.Action == ha.ActionPromote && c.Full {
				kind = analyzer.CmdPromoteFull
			}
			select {
			case out <- analyzer.Command{ID: c.ID, Rollout: c.Rollout, Kind: kind}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// termErr maps package ha's term errors to the analyzer's.
func termErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ha.ErrNotLeader):
		return fmt.Errorf("%w (%v)", analyzer.ErrNotLeader, err)
	case errors.Is(err, ha.ErrCommandWithdrawn):
		return fmt.Errorf("%w (%v)", analyzer.ErrCommandWithdrawn, err)
	}
	return err
}

// replicasView is GET /api/v1/replicas: the replicated control plane as this replica
// sees it. When etcd cannot be read, Replicas holds this replica alone and Error says why.
type replicasView struct {
	Self          string `json:"self"`
	Leader        string `json:"leader"`
	Leading       bool   `json:"leading"`
	EtcdReachable bool   `json:"etcdReachable"`
	// ConfigDigest is this replica's; LeaderConfigDigest the leader's.
	ConfigDigest       string    `json:"configDigest"`
	LeaderConfigDigest string    `json:"leaderConfigDigest,omitempty"`
	ConfigMismatch     bool      `json:"configMismatch"`
	Error              string    `json:"error,omitempty"`
	Replicas           []ha.Info `json:"replicas"`
}

// view answers GET /api/v1/replicas.
func (n *replicaNode) view(ctx context.Context) any {
	st := n.rep.Status()
	out := replicasView{Self: st.ID, Leading: st.Leading, EtcdReachable: st.EtcdReachable, ConfigDigest: st.ConfigDigest,
		ConfigMismatch: st.ConfigMismatch}
	vctx, cancel := context.WithTimeout(ctx, max(n.ttl/2, time.Second))
	v, err := n.rep.View(vctx)
	cancel()
	if err != nil {
		out.Error = "etcd: " + err.Error()
		out.Leader = st.Leader
		out.LeaderConfigDigest = st.LeaderDigest
		out.Replicas = []ha.Info{n.rep.Self()}
		return out
	}
	out.Leader, out.LeaderConfigDigest, out.Replicas = v.Leader, v.ConfigDigest, v.Replicas
	return out
}

// sameStore reports whether two configs name the same store (where they were written
// aside).
func sameStore(a, b *model.EtcdStore) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Pos, y.Pos = model.Pos{}, model.Pos{}
	return reflect.DeepEqual(x, y)
}
