package ha

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sluice-mesh/sluice/model"
)

var groupSeq atomic.Int64

// group is a set of replicas sharing one etcd prefix, as one Sluice deployment.
type group struct {
	t         *testing.T
	endpoints []string
	prefix    string
	ttl       time.Duration
	leads     chan lead // every term any replica of the group begins
}

type lead struct {
	n    *node
	term *Term
}

// newGroup makes a group on a fresh prefix of the etcd at endpoints.
func newGroup(t *testing.T, endpoints []string, ttl time.Duration) *group {
	return &group{t: t, endpoints: endpoints, ttl: ttl, leads: make(chan lead, 100),
		prefix: fmt.Sprintf("/test-%d-%d/", time.Now().UnixNano(), groupSeq.Add(1))}
}

// node is a running Replica in a test.
type node struct {
	*Replica
	g      *group
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (g *group) store(endpoints []string) *model.EtcdStore {
	if endpoints == nil {
		endpoints = g.endpoints
	}
	return &model.EtcdStore{Endpoints: endpoints, Prefix: g.prefix, LeaseTTL: g.ttl}
}

// start opens and runs a replica named id; endpoints nil means the group's.
func (g *group) start(id string, endpoints []string, opts ...func(*Options)) *node {
	g.t.Helper()
	o := Options{ID: id, Admin: "127.0.0.1:99" + id[len(id)-1:], ConfigDigest: "d1",
		Logger: zaptest.NewLogger(g.t, zaptest.Level(zap.WarnLevel)).Named(id)}
	for _, f := range opts {
		f(&o)
	}
	r, err := Open(g.store(endpoints), o)
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{Replica: r, g: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		_ = r.Run(ctx)
	}()
	go func() {
		for {
			select {
			case t := <-r.Terms():
				g.leads <- lead{n: n, term: t}
			case <-n.done:
				return
			}
		}
	}()
	g.t.Cleanup(n.stop)
	return n
}

// stop shuts the replica down gracefully (resign, revoke) and waits.
func (n *node) stop() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
		n.Close()
	})
}

// crash stops the replica as kill -9 would: its etcd connection goes first, so nothing
// it does afterwards (resign, revoke) reaches etcd; its lease has to expire. It does not
// wait for the replica's goroutines (they wind down in the background).
func (n *node) crash() {
	n.once.Do(func() {
		n.Close()
		n.cancel()
		n.g.t.Cleanup(func() { <-n.done })
	})
}

// nextLead waits for the next term any replica of the group begins.
func (g *group) nextLead(timeout time.Duration) lead {
	g.t.Helper()
	select {
	case l := <-g.leads:
		return l
	case <-time.After(timeout):
		g.t.Fatalf("no replica began leading within %s", timeout)
		return lead{}
	}
}

// noLead fails if a term begins within d (used only where time is the point: a window
// in which leading must be impossible).
func (g *group) expectNoLead(d time.Duration, why string) {
	g.t.Helper()
	select {
	case l := <-g.leads:
		g.t.Fatalf("%s: %s began leading (term fence %d)", why, l.n.ID(), l.term.Fence())
	case <-time.After(d):
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
