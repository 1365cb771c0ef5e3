package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/model"
)

// bindError: an address Sluice must serve could not be bound at start. `sluice serve`
// then exits before the rollout controller runs, so no rollout state is written.
type bindError struct {
	What string // "the admin address", "listener NAME", "the xDS address"
	Addr string
	Err  error // the cause: EADDRINUSE, EACCES, …
}

func (e *bindError) Error() string {
	msg := fmt.Sprintf("cannot bind %s %s: %v", e.What, e.Addr, e.Err)
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		msg += " (another process listens there — an earlier `sluice serve` or `sluice demo`? `ss -ltnp` shows which; change the address or stop it)"
	case errors.Is(e.Err, syscall.EACCES):
		msg += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		msg += " (no interface of this machine has that IP address)"
	}
	return msg + "; stopped before any rollout ran: no rollout state was written"
}

func (e *bindError) Unwrap() error { return e.Err }

// asBindError turns a listen error into a *bindError for what at addr, or returns nil
// when err is not about binding an address.
func asBindError(what, addr string, err error) *bindError {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" {
		return nil
	}
	cause := op.Err
	var sys *os.SyscallError
	if errors.As(cause, &sys) {
		cause = sys.Err
	}
	if addr == "" && op.Addr != nil {
		addr = op.Addr.String()
	}
	return &bindError{What: what, Addr: addr, Err: cause}
}

// routerBindError explains a router Apply that failed to bind one of cfg's listeners,
// naming the listener whose address it was; nil when err is another refusal.
func routerBindError(cfg *model.Config, err error) *bindError {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" {
		return nil
	}
	failed := ""
	if op.Addr != nil {
		failed = op.Addr.String()
	}
	for _, l := range cfg.Listeners {
		same := l.Address == failed
		if a, rerr := net.ResolveTCPAddr("tcp", l.Address); rerr == nil && a.String() == failed {
			same = true
		}
		if same {
			return asBindError("listener "+l.Name, l.Address, err)
		}
	}
	return asBindError("a listener address", failed, err)
}

// initialSnapshot is what the data planes serve before the controller's first decision:
// the routing the stored rollout states ask for (as the controller will restore them),
// 100% stable for a rollout without state. Applying it binds every listener, so that a
// taken port stops `sluice serve` before any rollout state is written. It only reads
// stateDir ("": no stored state).
func initialSnapshot(cfg *model.Config, stateDir string, now time.Time) (*model.Snapshot, error) {
	loaded := map[string]*analyzer.State{}
	if stateDir != "" {
		var err error
		if loaded, err = (&analyzer.FileStore{Dir: stateDir}).Load(); err != nil {
			return nil, fmt.Errorf("load rollout state from %s: %w", stateDir, err)
		}
	}
	states := map[string]*analyzer.State{}
	for i := range cfg.Rollouts {
		r := &cfg.Rollouts[i]
		prev := loaded[r.Name]
		switch {
		case prev == nil: // BuildSnapshot starts it at 100% stable
		case prev.Revision == r.Revision:
			states[r.Name] = prev
		default: // a new revision: a new release from the stored one, as NewController does
			st := analyzer.NewState(r, prev, now)
			states[r.Name] = &st
		}
	}
	return analyzer.BuildSnapshot(cfg, states), nil
}
