package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-mesh/sluice/internal/testenv"
)

// TestEtcdDownAndBack stops the only etcd member while a leader writes: nobody decides
// or writes while it is down (the leader stops within TTL/2, every replica reports etcd
// unreachable), and when it is back a leader decides again and followers see its writes.
func TestEtcdDownAndBack(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	g := newGroup(t, etcd.Endpoints(), 2*time.Second)
	a, b := g.start("e1", nil), g.start("e2", nil)
	l := g.nextLead(30 * time.Second)
	ctx := ctxTimeout(t, 2*time.Minute)
	follower := b
	if l.n == b {
		follower = a
	}
	changes := follower.WatchStates(ctx)
	if _, err := l.term.Save(ctx, "api", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if c := <-changes; string(c.State) != "before" {
		t.Fatalf("follower saw %q", c.State)
	}

	stopped := time.Now()
	etcd.Kill(0)
	select {
	case <-l.term.Lost():
	case <-time.After(g.ttl + 10*time.Second):
		t.Fatal("the leader kept its term with etcd down")
	}
	t.Logf("etcd down: the leader stopped deciding after %s (leaseTTL %s, reason %s)",
		l.term.LostAt().Sub(stopped).Round(time.Millisecond), g.ttl, l.term.Reason())
	if _, err := l.term.Save(ctx, "api", []byte("while-down")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Save with etcd down: %v, want ErrNotLeader", err)
	}
	for _, n := range []*node{a, b} {
		testenv.WaitFor(t, 10*time.Second, n.ID()+" to report etcd unreachable", func() bool {
			st := n.Status()
			return !st.EtcdReachable && !st.Leading && n.Term() == nil
		})
	}
	// Down for longer than the lease TTL: nobody may lead meanwhile.
	g.expectNoLead(2*g.ttl, "etcd is down")

	if err := etcd.Restart(0); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	next := g.nextLead(3*g.ttl + 30*time.Second)
	t.Logf("etcd back: %s leads after %s (fence %d, was %d)", next.n.ID(), next.term.Began().Sub(back).Round(time.Millisecond),
		next.term.Fence(), l.term.Fence())
	if next.term.Fence() < l.term.Fence() {
		t.Errorf("fence went back from %d to %d", l.term.Fence(), next.term.Fence())
	}
	states, _, err := next.term.Load(ctx)
	if err != nil || string(states["api"]) != "before" {
		t.Fatalf("after the outage the state is %q (%v), want the last one written before it", states["api"], err)
	}
	if _, err := next.term.Save(ctx, "api", []byte("after")); err != nil {
		t.Fatalf("Save after etcd returned: %v", err)
	}
	for c := range changes {
		if string(c.State) == "while-down" {
			t.Fatal("a write made while etcd was down arrived")
		}
		if string(c.State) == "after" {
			break
		}
	}
	for _, n := range []*node{a, b} {
		testenv.WaitFor(t, 20*time.Second, n.ID()+" to report etcd reachable", func() bool { return n.Status().EtcdReachable })
	}
}

// TestEtcdMemberKilled kills one member of a three-member etcd cluster while the Sluice
// leader writes. A raft follower: nothing changes, every write succeeds. The raft
// leader: etcd itself takes no writes until it has elected another (a write in flight
// may time out); the Sluice leader may pause (its keepalives stall too) but keeps its
// election key — no other replica leads — and its writes go on afterwards.
func TestEtcdMemberKilled(t *testing.T) {
	etcd := testenv.StartEtcdCluster(t, 3)
	g := newGroup(t, etcd.Endpoints(), 5*time.Second)
	g.start("k1", nil)
	g.start("k2", nil)
	l := g.nextLead(30 * time.Second)
	ctx := ctxTimeout(t, 2*time.Minute)

	// Write continuously under whatever term the leader holds; record failures.
	var mu sync.Mutex
	var worst time.Duration
	var failures []string
	writes := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			term := l.n.Term()
			if term == nil {
				continue
			}
			start := time.Now()
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := term.Save(wctx, "api", []byte(fmt.Sprint(i)))
			cancel()
			mu.Lock()
			writes++
			worst = max(worst, time.Since(start))
			if err != nil {
				failures = append(failures, err.Error())
			}
			mu.Unlock()
		}
	}()
	waitWrites := func(n int) {
		mu.Lock()
		target := writes + n
		mu.Unlock()
		testenv.WaitFor(t, 60*time.Second, "writes to go on", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return writes >= target
		})
	}
	report := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s: %d writes, slowest %s, %d failed %q", what, writes, worst.Round(time.Millisecond), len(failures), failures)
		writes, worst, failures = 0, 0, nil
	}
	waitWrites(5)

	raftLeader := func() int {
		cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		for i, ep := range etcd.Endpoints() {
			st, err := cli.Status(ctx, ep)
			if err == nil && st.Leader == st.Header.MemberId {
				return i
			}
		}
		t.Fatal("no raft leader")
		return -1
	}
	follower := (raftLeader() + 1) % 3
	etcd.Kill(follower)
	waitWrites(30)
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("writes failed with a raft follower down: %q", failures)
	}
	mu.Unlock()
	if !l.term.Valid() {
		t.Errorf("the Sluice leader's term ended (%s) with a raft follower down", l.term.Reason())
	}
	report("raft follower killed")
	if err := etcd.Restart(follower); err != nil {
		t.Fatal(err)
	}
	waitWrites(5)

	rl := raftLeader()
	etcd.Kill(rl)
	waitWrites(30)
	termLost := !l.term.Valid()
	cur := l.n.Term()
	if cur == nil || cur.rev != l.term.rev {
		t.Errorf("after the raft leader died the Sluice leader does not hold its election key (term %v)", cur)
	}
	report(fmt.Sprintf("raft leader killed (Sluice term paused: %v, for %s)", termLost, pause(l.term, cur)))
	close(stop)
	<-done
	select {
	case other := <-g.leads:
		if other.n != l.n {
			t.Errorf("leadership moved to %s", other.n.ID())
		}
	default:
	}
	states, _, err := l.n.States(ctx)
	if err != nil || len(states["api"]) == 0 {
		t.Errorf("state after the member kills: %q %v", states["api"], err)
	}
}

// pause is how long a replica went without a term between first and next ("" if it
// kept first).
func pause(first, next *Term) string {
	if next == nil || next == first {
		return "0s"
	}
	return next.Began().Sub(first.LostAt()).Round(time.Millisecond).String()
}
