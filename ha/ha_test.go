package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-mesh/sluice/internal/testenv"
)

// TestReplicas runs the replicated control plane against one real etcd (Debian's
// etcd-server), each case on its own key prefix.
func TestReplicas(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	eps := etcd.Endpoints()
	t.Run("election and failover", func(t *testing.T) { testFailover(t, eps) })
	t.Run("graceful shutdown resigns", func(t *testing.T) { testResign(t, eps) })
	t.Run("partitioned leader is fenced", func(t *testing.T) { testFencing(t, eps) })
	t.Run("watch delivers every committed state", func(t *testing.T) { testWatch(t, eps) })
	t.Run("commands exactly once", func(t *testing.T) { testCommands(t, eps) })
	t.Run("commands withdrawn", func(t *testing.T) { testWithdraw(t, eps) })
	t.Run("registry", func(t *testing.T) { testRegistry(t, eps) })
	t.Run("config mismatch does not lead", func(t *testing.T) { testMismatch(t, eps) })
	t.Run("import", func(t *testing.T) { testImport(t, eps) })
	t.Run("started while etcd is unreachable", func(t *testing.T) { testStartUnreachable(t, eps) })
	t.Run("fleet gatherer", func(t *testing.T) { testFleetGatherer(t, eps) })
	t.Run("refusal reported", func(t *testing.T) { testRefusal(t, eps) })
}

// testStartUnreachable starts a replica whose only way to etcd is cut: it does not lead,
// reports etcd unreachable, and joins — registered and leading — once the way opens.
func testStartUnreachable(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	proxy := testenv.StartProxy(t, eps[0][len("http://"):])
	proxy.Cut()
	n := g.start("u1", []string{proxy.URL()})
	g.expectNoLead(g.ttl, "etcd is unreachable")
	if st := n.Status(); st.EtcdReachable || st.Leading || st.Leader != "" {
		t.Errorf("status while etcd is unreachable: %+v", st)
	}
	proxy.Restore()
	l := g.nextLead(60 * time.Second)
	if l.n != n {
		t.Fatalf("%s leads", l.n.ID())
	}
	v, err := n.View(ctxTimeout(t, 10*time.Second))
	if err != nil || len(v.Replicas) != 1 || v.Replicas[0].ID != "u1" || v.Leader != "u1" {
		t.Errorf("view after joining: %+v %v", v, err)
	}
}

// testFailover kills the leader (its etcd connection first, as kill -9 does) three
// times; each time another replica leads within about leaseTTL, with a higher fence.
func testFailover(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	seq := 0
	add := func() *node { seq++; return g.start("r"+strconv.Itoa(seq), nil) }
	nodes := []*node{add(), add(), add()}
	l := g.nextLead(30 * time.Second)
	for _, n := range nodes {
		testenv.WaitFor(t, 10*time.Second, n.ID()+" to see the leader", func() bool {
			st := n.Status()
			return st.Leader == l.n.ID() && st.Leading == (n == l.n) && st.EtcdReachable && !st.ConfigMismatch
		})
	}
	var took []time.Duration
	for kill := 0; kill < 3; kill++ {
		fence := l.term.Fence()
		killed := time.Now()
		l.n.crash()
		next := g.nextLead(3*g.ttl + 20*time.Second)
		if next.n == l.n {
			t.Fatalf("the killed replica %s leads again", l.n.ID())
		}
		if next.term.Fence() <= fence {
			t.Errorf("fence went from %d to %d; it must grow with every leader", fence, next.term.Fence())
		}
		d := next.term.Began().Sub(killed)
		took = append(took, d)
		t.Logf("kill %d: %s killed, %s leads after %s (leaseTTL %s)", kill+1, l.n.ID(), next.n.ID(), d.Round(time.Millisecond), g.ttl)
		// The previous leader's writes are refused by etcd from now on.
		if _, err := l.term.Save(ctxTimeout(t, 5*time.Second), "x", []byte("late")); !errors.Is(err, ErrNotLeader) {
			t.Errorf("dead leader's Save: %v, want ErrNotLeader", err)
		}
		add()
		l = next
	}
	slices.Sort(took)
	if med := took[len(took)/2]; med > g.ttl+time.Second {
		t.Errorf("median failover %s > leaseTTL + 1s (%s); all: %v", med, g.ttl+time.Second, took)
	}
}

// testResign stops the leader gracefully: it resigns, so another leads without waiting
// for the lease, and its registration goes at once.
func testResign(t *testing.T, eps []string) {
	g := newGroup(t, eps, 5*time.Second)
	a := g.start("a1", nil)
	la := g.nextLead(30 * time.Second)
	b := g.start("b1", nil)
	testenv.WaitFor(t, 10*time.Second, "b1 registered", func() bool {
		v, err := b.View(context.Background())
		return err == nil && len(v.Replicas) == 2
	})
	stopped := time.Now()
	a.stop()
	lb := g.nextLead(30 * time.Second)
	if lb.n != b || la.n != a {
		t.Fatalf("leaders %s then %s", la.n.ID(), lb.n.ID())
	}
	if d := lb.term.Began().Sub(stopped); d >= g.ttl {
		t.Errorf("after a graceful stop b1 led after %s, not before the lease TTL %s: the leader did not resign", d, g.ttl)
	} else {
		t.Logf("graceful handover in %s", d.Round(time.Millisecond))
	}
	if got := la.term.Reason(); got != reasonShutdown {
		t.Errorf("a1's term ended with %q, want shutdown", got)
	}
	v, err := b.View(context.Background())
	if err != nil || len(v.Replicas) != 1 || v.Replicas[0].ID != "b1" || !v.Replicas[0].Leader || v.Leader != "b1" {
		t.Errorf("after a1 stopped: %+v %v", v, err)
	}
}

// testFencing cuts the leader's etcd connection (a TCP proxy holds every byte, as a
// pulled cable does) while it writes. It must stop deciding before its lease can
// expire, another replica must take over, and etcd must refuse the old leader's write
// even when the held bytes reach it after the partition heals.
func testFencing(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	proxy := testenv.StartProxy(t, eps[0][len("http://"):])
	a := g.start("a1", []string{proxy.URL()})
	la := g.nextLead(30 * time.Second)
	if la.n != a {
		t.Fatalf("%s leads, want a1", la.n.ID())
	}
	b, c := g.start("b1", nil), g.start("c1", nil)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := la.term.Save(ctx, "web", []byte("a-before")); err != nil {
		t.Fatal(err)
	}
	// Record every value the state ever takes, from etcd's own history.
	var mu sync.Mutex
	var history []string
	watcher, err := clientv3.New(clientv3.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	wch := watcher.Watch(ctx, g.prefix+statesDir+"web", clientv3.WithRev(1))
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				mu.Lock()
				history = append(history, string(ev.Kv.Value))
				mu.Unlock()
			}
		}
	}()

	cut := time.Now()
	proxy.Cut()
	lateErr := make(chan error, 1)
	go func() {
		// Sent while the term is still valid: its bytes wait in the proxy.
		_, err := la.term.Save(context.Background(), "web", []byte("a-late"))
		lateErr <- err
	}()
	next := g.nextLead(3*g.ttl + 20*time.Second)
	if next.n != b && next.n != c {
		t.Fatalf("%s leads during the partition", next.n.ID())
	}
	if la.term.LostAt().IsZero() || !la.term.LostAt().Before(next.term.Began()) {
		t.Fatalf("a1 stopped deciding at %v, the new leader began at %v: two leaders at once", la.term.LostAt(), next.term.Began())
	}
	t.Logf("partition: a1 stopped deciding %s after the cut, %s led %s after the cut (leaseTTL %s)",
		la.term.LostAt().Sub(cut).Round(time.Millisecond), next.n.ID(), next.term.Began().Sub(cut).Round(time.Millisecond), g.ttl)
	if d := la.term.LostAt().Sub(cut); d > g.ttl {
		t.Errorf("a1 decided for %s after losing etcd, longer than the lease TTL %s", d, g.ttl)
	}
	if err := <-lateErr; err == nil {
		t.Errorf("a1's write during the partition reported success")
	}
	if _, err := next.term.Save(ctx, "web", []byte("new-leader")); err != nil {
		t.Fatalf("new leader's Save: %v", err)
	}
	// Heal: the held bytes (a1's late transaction) now reach etcd.
	proxy.Restore()
	// Even bypassing a1's own validity check, etcd refuses its fenced write.
	resp, err := a.cli.Txn(ctx).If(la.term.fence()...).Then(clientv3.OpPut(g.prefix+statesDir+"web", "a-forced")).Commit()
	for err != nil && ctx.Err() == nil { // a1's connection is coming back
		time.Sleep(50 * time.Millisecond)
		resp, err = a.cli.Txn(ctx).If(la.term.fence()...).Then(clientv3.OpPut(g.prefix+statesDir+"web", "a-forced")).Commit()
	}
	if err != nil || resp.Succeeded {
		t.Fatalf("old leader's fenced write after the partition: succeeded=%v err=%v", resp != nil && resp.Succeeded, err)
	}
	if _, err := la.term.Save(ctx, "web", []byte("a-after")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("old term's Save after the partition: %v, want ErrNotLeader", err)
	}
	if _, err := next.term.Save(ctx, "web", []byte("new-leader-2")); err != nil {
		t.Fatalf("new leader's Save after the heal: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "the history to hold the new leader's second write", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(history) > 0 && history[len(history)-1] == "new-leader-2"
	})
	mu.Lock()
	if want := []string{"a-before", "new-leader", "new-leader-2"}; !slices.Equal(history, want) {
		t.Errorf("the state took the values %q, want %q: a deposed leader wrote", history, want)
	}
	mu.Unlock()
	// a1 comes back as a follower with a new lease, registered again.
	testenv.WaitFor(t, 30*time.Second, "a1 back as a follower", func() bool {
		st := a.Status()
		return st.EtcdReachable && !st.Leading && st.Leader == next.n.ID()
	})
	if a.Term() != nil {
		t.Error("a1 still holds a term")
	}
}

// testWatch: a follower sees every state the leader commits, in order, across rollouts.
func testWatch(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	leader := g.start("l1", nil)
	l := g.nextLead(30 * time.Second)
	if l.n != leader {
		t.Fatal("l1 should lead")
	}
	follower := g.start("f1", nil)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := l.term.Save(ctx, "api", []byte("api-0")); err != nil {
		t.Fatal(err)
	}
	changes := follower.WatchStates(ctx)
	first := <-changes
	if first.Rollout != "api" || string(first.State) != "api-0" {
		t.Fatalf("first change %+v, want the current state api-0", first)
	}
	const n = 60
	var revs []int64
	for i := 1; i <= n; i++ {
		name := "api"
		if i%3 == 0 {
			name = "web"
		}
		rev, err := l.term.Save(ctx, name, []byte(fmt.Sprintf("%s-%d", name, i)))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	last := first.Revision
	for i := 1; i <= n; i++ {
		c := <-changes
		name := "api"
		if i%3 == 0 {
			name = "web"
		}
		if want := fmt.Sprintf("%s-%d", name, i); c.Rollout != name || string(c.State) != want || c.Revision != revs[i-1] {
			t.Fatalf("change %d: %s=%q at %d, want %s=%q at %d", i, c.Rollout, c.State, c.Revision, name, want, revs[i-1])
		}
		if c.Revision <= last {
			t.Fatalf("revisions out of order: %d after %d", c.Revision, last)
		}
		last = c.Revision
	}
	states, _, err := follower.States(ctx)
	if err != nil || string(states["api"]) != "api-59" || string(states["web"]) != "web-60" || len(states) != 2 {
		t.Errorf("States: %q %v", states, err)
	}
	loaded, _, err := l.term.Load(ctx)
	if err != nil || len(loaded) != 2 || string(loaded["web"]) != "web-60" {
		t.Errorf("Term.Load: %q %v", loaded, err)
	}
}

// commandLog is the state a test leader keeps: every command it carried out, in order.
type commandLog struct {
	Done []string `json:"done"`
}

// serveCommands carries out commands as a leader would until the term ends: abort is
// refused (Complete with an error), anything else appends its ID to the state of its
// rollout in the same transaction that completes it. crashOn names a rollout whose
// command makes the leader crash before completing it.
func serveCommands(l lead, crashOn string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for c := range l.term.Commands(ctx) {
		if c.Rollout == crashOn {
			go l.n.crash()
			return
		}
		if c.Action == ActionAbort {
			_ = l.term.Complete(ctx, Outcome{ID: c.ID, Error: "abort refused: " + c.Rollout + " is not progressing"})
			continue
		}
		states, _, err := l.term.Load(ctx)
		if err != nil {
			return
		}
		var log commandLog
		_ = json.Unmarshal(states[c.Rollout], &log)
		log.Done = append(log.Done, c.ID)
		b, _ := json.Marshal(log)
		if _, err := l.term.Save(ctx, c.Rollout, b, Outcome{ID: c.ID}); err != nil {
			return
		}
	}
}

// testCommands: commands given to followers are carried out by the leader exactly once
// each, with their outcome reported back — also when the leader dies holding one.
func testCommands(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	nodes := []*node{g.start("c1", nil), g.start("c2", nil), g.start("c3", nil)}
	first := g.nextLead(30 * time.Second)
	go serveCommands(first, "crash")
	var follower *node
	for _, n := range nodes {
		if n != first.n {
			follower = n
			break
		}
	}
	ctx := ctxTimeout(t, 2*time.Minute)
	const n = 12
	var wg sync.WaitGroup
	outcomes := make([]Outcome, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			action := ActionPromote
			if i%4 == 3 {
				action = ActionAbort
			}
			outcomes[i], errs[i] = follower.Do(ctx, Command{Rollout: "api", Action: action})
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		switch {
		case errs[i] != nil:
			t.Errorf("command %d: %v", i, errs[i])
		case i%4 == 3 && outcomes[i].Error == "":
			t.Errorf("command %d (abort) carried out, want refused", i)
		case i%4 != 3 && outcomes[i].Error != "":
			t.Errorf("command %d refused: %s", i, outcomes[i].Error)
		case outcomes[i].Leader != first.n.ID():
			t.Errorf("command %d decided by %q, want the leader %s", i, outcomes[i].Leader, first.n.ID())
		}
	}
	// The leader dies holding a command: the next leader carries it out, once.
	crashed := make(chan Outcome, 1)
	go func() {
		o, err := follower.Do(ctx, Command{Rollout: "crash", Action: ActionPromote})
		if err != nil {
			t.Errorf("command given while the leader died: %v", err)
		}
		crashed <- o
	}()
	second := g.nextLead(3*g.ttl + 20*time.Second)
	go serveCommands(second, "")
	o := <-crashed
	if o.Leader != second.n.ID() || o.Error != "" {
		t.Errorf("outcome %+v, want carried out by %s", o, second.n.ID())
	}
	states, _, err := second.n.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var api, crash commandLog
	_ = json.Unmarshal(states["api"], &api)
	_ = json.Unmarshal(states["crash"], &crash)
	var want []string
	for i := 0; i < n; i++ {
		if i%4 != 3 {
			want = append(want, outcomes[i].ID)
		}
	}
	got := slices.Clone(api.Done)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("carried out %q, want each promote exactly once: %q", got, want)
	}
	if len(crash.Done) != 1 || crash.Done[0] != o.ID {
		t.Errorf("the command in flight at the crash was carried out %d times: %q", len(crash.Done), crash.Done)
	}
	for _, dir := range []string{commandsDir, outcomesDir} {
		resp, err := second.n.cli.Get(ctx, g.prefix+dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Errorf("%s left in etcd: %d %v", dir, resp.Count, err)
		}
	}
}

// testWithdraw: a command nobody leads to carry out is withdrawn when its submitter
// stops waiting, and then never runs; one withdrawn while the leader works on it makes
// the leader's Save fail without writing.
func testWithdraw(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	// No replica runs: nobody leads.
	lonely, err := Open(g.store(nil), Options{ID: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	defer lonely.Close()
	ctx := ctxTimeout(t, time.Minute)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = lonely.Do(short, Command{Rollout: "api", Action: ActionPromote})
	cancel()
	if !errors.Is(err, ErrNoOutcome) {
		t.Fatalf("Do with no leader: %v, want ErrNoOutcome", err)
	}
	resp, err := lonely.cli.Get(ctx, g.prefix+commandsDir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("the withdrawn command is still queued: %d %v", resp.Count, err)
	}
	if _, err := lonely.Submit(ctx, Command{Rollout: "api", Action: "rollback"}); err == nil {
		t.Error("unknown action accepted")
	}
	if _, err := lonely.Submit(ctx, Command{Rollout: "api", Action: ActionAbort, Full: true}); err == nil {
		t.Error("full on abort accepted")
	}

	g.start("w1", nil)
	l := g.nextLead(30 * time.Second)
	cmds := l.term.Commands(ctx)
	c, err := lonely.Submit(ctx, Command{Rollout: "api", Action: ActionPromote})
	if err != nil {
		t.Fatal(err)
	}
	got := <-cmds
	if got.ID != c.ID || got.From != "cli" || got.Action != ActionPromote || got.Rollout != "api" {
		t.Fatalf("leader got %+v, want %+v", got, c)
	}
	if ok, err := lonely.Withdraw(ctx, c.ID); !ok || err != nil {
		t.Fatalf("withdraw: %v %v", ok, err)
	}
	if _, err := l.term.Save(ctx, "api", []byte("promoted"), Outcome{ID: c.ID}); !errors.Is(err, ErrCommandWithdrawn) {
		t.Fatalf("Save completing a withdrawn command: %v, want ErrCommandWithdrawn", err)
	}
	if st, _, _ := lonely.States(ctx); st["api"] != nil {
		t.Errorf("the state was written with a withdrawn command: %q", st["api"])
	}
	if !l.term.Valid() {
		t.Error("a withdrawn command ended the term")
	}

	// A malformed command is refused with an outcome, not delivered.
	if _, err := lonely.cli.Put(ctx, g.prefix+commandsDir+"bad", "{not json"); err != nil {
		t.Fatal(err)
	}
	o, err := lonely.WaitOutcome(ctx, Command{ID: "bad", Revision: 1})
	if err != nil || o.Error == "" || o.Leader != "w1" {
		t.Errorf("malformed command: %+v %v", o, err)
	}
	select {
	case c := <-cmds:
		t.Errorf("malformed command delivered: %+v", c)
	default:
	}
}

// testRegistry: replicas register under their lease, report what they applied, and
// vanish when they die; WaitApplied waits for every live replica with the leader's config.
func testRegistry(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	a := g.start("g1", nil)
	l := g.nextLead(30 * time.Second)
	b := g.start("g2", nil)
	c := g.start("g3", nil)
	odd := g.start("g4", nil, func(o *Options) { o.ConfigDigest = "other" })
	ctx := ctxTimeout(t, time.Minute)
	testenv.WaitFor(t, 10*time.Second, "four registrations", func() bool {
		v, err := b.View(ctx)
		return err == nil && len(v.Replicas) == 4
	})
	v, _ := c.View(ctx)
	if v.Self != "g3" || v.Leader != "g1" || v.ConfigDigest != "d1" {
		t.Errorf("view: %+v", v)
	}
	for _, in := range v.Replicas {
		if in.Leader != (in.ID == "g1") || in.Admin == "" || time.Since(in.LastSeen) > time.Minute {
			t.Errorf("registration %+v", in)
		}
	}
	if st := odd.Status(); !st.ConfigMismatch || st.Leader != "g1" {
		t.Errorf("g4 status %+v, want a config mismatch", st)
	}
	rev, err := l.term.Save(ctx, "api", []byte("w20"))
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.WaitApplied(ctx, "api", rev) }()
	a.ReportApplied(map[string]Applied{"api": {Weight: 20, Revision: rev}})
	b.ReportApplied(map[string]Applied{"api": {Weight: 20, Revision: rev}})
	c.ReportApplied(map[string]Applied{"api": {Weight: 10, Revision: rev - 1}}) // lags
	testenv.WaitFor(t, 10*time.Second, "reports in the registry", func() bool {
		v, err := a.View(ctx)
		w, ok := v.AppliedWeight("api")
		return err == nil && ok && w == 10
	})
	select {
	case err := <-waited:
		t.Fatalf("WaitApplied returned (%v) while g3 lags", err)
	default:
	}
	c.ReportApplied(map[string]Applied{"api": {Weight: 20, Revision: rev}})
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	v, _ = a.View(ctx)
	if w, ok := v.AppliedWeight("api"); !ok || w != 20 {
		t.Errorf("applied weight %d %v, want 20 (g4's other config does not count)", w, ok)
	}

	// A replica that dies is waited for only until its lease expires.
	rev2, err := l.term.Save(ctx, "api", []byte("w50"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		n.ReportApplied(map[string]Applied{"api": {Weight: 50, Revision: rev2}})
	}
	c.crash()
	start := time.Now()
	if err := a.WaitApplied(ctx, "api", rev2); err != nil {
		t.Fatal(err)
	}
	t.Logf("WaitApplied gave up on the dead g3 after %s (leaseTTL %s)", time.Since(start).Round(time.Millisecond), g.ttl)
	v, _ = a.View(ctx)
	if len(v.Replicas) != 3 {
		t.Errorf("dead replica still listed: %+v", v.Replicas)
	}

	// A second replica with a live replica's ID does not register or lead.
	dup := g.start("g2", nil, func(o *Options) { o.Admin = "127.0.0.1:1" })
	testenv.WaitFor(t, 10*time.Second, "the duplicate to hold a lease", func() bool { return dup.Status().EtcdReachable })
	v, _ = a.View(ctx)
	for _, in := range v.Replicas {
		if in.ID == "g2" && in.Admin == "127.0.0.1:1" {
			t.Errorf("the duplicate overwrote g2's registration")
		}
	}
	b.stop()
	testenv.WaitFor(t, 15*time.Second, "the duplicate to register once g2 is gone", func() bool {
		v, err := a.View(ctx)
		for _, in := range v.Replicas {
			if err == nil && in.ID == "g2" && in.Admin == "127.0.0.1:1" {
				return true
			}
		}
		return false
	})
}

// testMismatch: a replica whose config differs from the leader's does not stand for
// leader, and withdraws when the leader it disagrees with appears; once digests agree
// again it may lead.
func testMismatch(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	a := g.start("m1", nil)
	l := g.nextLead(30 * time.Second)
	odd := g.start("m2", nil, func(o *Options) { o.ConfigDigest = "d2" })
	testenv.WaitFor(t, 10*time.Second, "m2 to report the mismatch", func() bool { return odd.Status().ConfigMismatch })
	a.crash()
	// m2 is alone now: with no leader to disagree with, it may lead.
	l2 := g.nextLead(3*g.ttl + 20*time.Second)
	if l2.n != odd {
		t.Fatalf("%s leads", l2.n.ID())
	}
	_ = l
	// A replica with the old config joins: it sees the mismatch and does not stand.
	b := g.start("m3", nil)
	testenv.WaitFor(t, 10*time.Second, "m3 to report the mismatch", func() bool { return b.Status().ConfigMismatch })
	resp, err := b.cli.Get(context.Background(), g.prefix+leaderDir+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Errorf("election candidates: %d %v, want only the leader (m3 must not stand)", resp.Count, err)
	}
	// The leader reloads m3's config: they agree, and m3 stands again.
	odd.SetConfigDigest("d1")
	testenv.WaitFor(t, 10*time.Second, "m3 to agree", func() bool { return !b.Status().ConfigMismatch && b.Status().LeaderDigest == "d1" })
	odd.stop()
	l3 := g.nextLead(30 * time.Second)
	if l3.n != b {
		t.Fatalf("%s leads, want m3", l3.n.ID())
	}
}

// testImport: ImportState writes only a rollout that has no state yet.
func testImport(t *testing.T, eps []string) {
	g := newGroup(t, eps, 2*time.Second)
	r, err := Open(g.store(nil), Options{ID: "importer"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxTimeout(t, time.Minute)
	if err := r.ImportState(ctx, "api", []byte(`{"step":3}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.ImportState(ctx, "api", []byte(`{"step":0}`)); !errors.Is(err, ErrStateExists) {
		t.Fatalf("second import: %v, want ErrStateExists", err)
	}
	st, _, err := r.States(ctx)
	if err != nil || string(st["api"]) != `{"step":3}` {
		t.Errorf("states %q %v", st, err)
	}
}
