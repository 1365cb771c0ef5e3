package hae2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// fleet is the running replicas.
type fleet struct {
	reps []*replica
	etcd *testenv.EtcdCluster
}

func (f *fleet) live() []*replica {
	var out []*replica
	for _, r := range f.reps {
		if r.alive() {
			out = append(out, r)
		}
	}
	return out
}

// byID finds the replica a replica ID names (host name and admin address).
func (f *fleet) byID(id string) *replica {
	for _, r := range f.reps {
		if strings.HasSuffix(id, "/"+r.admin) {
			return r
		}
	}
	return nil
}

// leader waits until every live replica in among agrees on one leader (not one of
// not), which says it leads, and returns it.
func (f *fleet) leader(t *testing.T, among []*replica, what string, not ...*replica) *replica {
	t.Helper()
	var l *replica
	testenv.WaitFor(t, 30*time.Second, what, func() bool {
		id := ""
		for _, r := range among {
			v, err := r.view()
			if err != nil || v.Leader == "" || (id != "" && v.Leader != id) {
				return false
			}
			id = v.Leader
		}
		l = f.byID(id)
		if l == nil || !l.alive() || slices.Contains(not, l) {
			return false
		}
		v, err := l.view()
		return err == nil && v.Leading
	})
	return l
}

// waitStatus waits until r's rollout status satisfies ok.
func waitStatus(t *testing.T, r *replica, what string, ok func(analyzer.RolloutStatus) bool) analyzer.RolloutStatus {
	t.Helper()
	var st analyzer.RolloutStatus
	testenv.WaitFor(t, 60*time.Second, r.name+": "+what, func() bool {
		var err error
		st, err = r.status()
		return err == nil && ok(st)
	})
	return st
}

// waitServing waits until every live replica serves canary weight w on its router (its
// status) and its xDS server (what the fake Envoy last received), and reports it to etcd.
func (f *fleet) waitServing(t *testing.T, w int) {
	t.Helper()
	for _, r := range f.live() {
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%s serves weight %d", r.name, w), func() bool {
			st, err := r.status()
			r.mu.Lock()
			x := -1
			if n := len(r.xdsWeight); n > 0 {
				x = r.xdsWeight[n-1]
			}
			r.mu.Unlock()
			v, verr := r.view()
			reported := false
			if verr == nil {
				for _, in := range v.Replicas {
					if strings.HasSuffix(in.ID, "/"+r.admin) {
						reported = in.AppliedWeights[rolloutName] == w
					}
				}
			}
			return err == nil && st.SetWeight == w && x == w && reported
		})
	}
}

func metricOf(st analyzer.RolloutStatus, name string) analyzer.MetricStatus {
	for _, run := range st.AnalysisRuns {
		if run.Kind != analyzer.KindInline {
			continue
		}
		for _, m := range run.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	return analyzer.MetricStatus{}
}

func others(all []*replica, not ...*replica) []*replica {
	var out []*replica
	for _, r := range all {
		if !slices.Contains(not, r) {
			out = append(out, r)
		}
	}
	return out
}

// TestReplicatedControlPlane runs a rollout on three replicas sharing a three-member
// etcd, under load, through every fault of issue 14's item 6: the leader kill -9'ed
// during a pause and during an analysis, a replica with another config, the leader cut
// off etcd, etcd stopped and restarted, one etcd member down.
func TestReplicatedControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three sluice replicas and a three-member etcd for about a minute")
	}
	etcd := testenv.StartEtcdCluster(t, 3)
	stable, canary := startBackend(t, "stable"), startBackend(t, "canary")
	gateURL, gate := startGate(t)
	states := watchStates(t, etcd.Endpoints())
	f := &fleet{etcd: etcd}
	for i := range 3 {
		f.reps = append(f.reps, newReplica(t, fmt.Sprintf("r%d", i), etcd, stable, canary, gateURL, "60s"))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(f.reps))
	for i, r := range f.reps {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.launch() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	loads := []*load{routerLoad(t, f.reps), xdsLoad(t, f.reps[0]), xdsLoad(t, f.reps[1])}

	// The rollout walks to its timed pause at 20%, served by every replica's router and
	// xDS server, actualWeight set once all applied it.
	l0 := f.leader(t, f.reps, "a leader")
	t.Logf("%s leads", l0.name)
	for _, r := range f.reps {
		waitStatus(t, r, "paused at 20, applied", func(st analyzer.RolloutStatus) bool {
			return st.Phase == analyzer.PhasePaused && st.Step == 1 && st.ActualWeight == 20 && st.PauseEndsAt != nil
		})
	}
	f.waitServing(t, 20)

	t.Run("a replica with another config is reported and does not lead", func(t *testing.T) {
		odd := newReplica(t, "odd", etcd, stable, canary, gateURL, "61s")
		odd.start(t)
		f.reps = append(f.reps, odd)
		defer func() {
			_ = odd.proc.Cmd.Process.Signal(syscall.SIGTERM)
			<-odd.proc.Done()
			odd.watcher.stop()
			odd.poller.stop()
		}()
		testenv.WaitFor(t, 20*time.Second, "the mismatch reported", func() bool {
			v, err := odd.view()
			return err == nil && v.ConfigMismatch && !v.Leading
		})
		if got := odd.metric(t, "sluice_ha_config_mismatch"); got != "1" {
			t.Errorf("sluice_ha_config_mismatch on the odd replica: %q, want 1", got)
		}
		if !strings.Contains(odd.proc.Output(), "config differs from the leader's") {
			t.Error("the odd replica's log does not say its config differs")
		}
		follower := others(f.live(), l0, odd)[0]
		code, out := cli("status", "--admin", follower.admin)
		if code != 0 || !strings.Contains(out, "replicas: 4 live, leader ") || !strings.Contains(out, "DIFFERS FROM THE LEADER'S") {
			t.Errorf("sluice status --admin %s (exit %d):\n%s", follower.admin, code, out)
		}
		t.Logf("sluice status on a follower:\n%s", out)

		// kill -9 the leader mid-pause: another replica — never the odd one — leads, at the
		// same step with the same pause deadline, and the weights stay.
		before := waitStatus(t, follower, "paused", func(st analyzer.RolloutStatus) bool { return st.PauseEndsAt != nil })
		l0.kill9()
		l1 := f.leader(t, others(f.live(), odd), "a new leader after kill -9 mid-pause", l0)
		t.Logf("kill -9 of %s mid-pause: %s leads %s later (leaseTTL %s)", l0.name, l1.name,
			time.Since(l0.killedAt).Round(time.Millisecond), leaseTTL)
		if l1 == odd {
			t.Fatal("the replica with another config leads")
		}
		after := waitStatus(t, l1, "the new leader's view", func(analyzer.RolloutStatus) bool { return true })
		if after.Step != before.Step || after.PauseEndsAt == nil || !after.PauseEndsAt.Equal(*before.PauseEndsAt) ||
			after.SetWeight != 20 || after.ActualWeight != 20 {
			t.Errorf("after failover: step %d, pause ends %v, weight %d/%d; before: step %d, pause ends %v", after.Step,
				after.PauseEndsAt, after.SetWeight, after.ActualWeight, before.Step, before.PauseEndsAt)
		}
	})
	if t.Failed() {
		return
	}
	f.reps = f.reps[:3]

	t.Run("a restarted replica serves etcd's state from its first moment", func(t *testing.T) {
		dead := f.reps[0]
		for _, r := range f.reps {
			if !r.alive() {
				dead = r
			}
		}
		dead.start(t)
		f.waitServing(t, 20)
		dead.mu.Lock()
		fs, fx := dead.firstStatus, dead.firstXDS
		dead.mu.Unlock()
		if fs != 20 || fx != 20 {
			t.Errorf("restarted %s first served weight %d (status) and %d (xDS), want 20", dead.name, fs, fx)
		}
	})

	t.Run("kill -9 of the leader mid-analysis", func(t *testing.T) {
		l := f.leader(t, f.reps, "a leader")
		follower := others(f.reps, l)[0]
		code, out := cli("promote", rolloutName, "--admin", follower.admin)
		if code != 0 || !strings.Contains(out, "promoted") {
			t.Fatalf("sluice promote --admin %s (a follower): exit %d\n%s", follower.admin, code, out)
		}
		t.Logf("promoted into the analysis: %s", strings.TrimSpace(out))
		st := waitStatus(t, l, "three measurements, every replica's routers seen", func(st analyzer.RolloutStatus) bool {
			m := metricOf(st, "replicas-seen")
			return st.Step == 2 && metricOf(st, "error-ratio").Count >= 3 && len(m.Measurements) > 0 &&
				m.Measurements[len(m.Measurements)-1].Value == "[3]"
		})
		run := st.AnalysisRuns[0].Name
		count := metricOf(st, "error-ratio").Count
		l.kill9()
		nl := f.leader(t, f.live(), "a new leader after kill -9 mid-analysis", l)
		t.Logf("kill -9 of %s mid-analysis (%d measurements): %s leads %s later", l.name, count, nl.name,
			time.Since(l.killedAt).Round(time.Millisecond))
		after := waitStatus(t, nl, "the new leader's view", func(analyzer.RolloutStatus) bool { return true })
		if after.Step != 2 || len(after.AnalysisRuns) == 0 || after.AnalysisRuns[0].Name != run ||
			metricOf(after, "error-ratio").Count < count || after.SetWeight != 20 || after.ActualWeight != 20 {
			t.Errorf("after failover: step %d, runs %+v, weight %d/%d; before: run %s with %d measurements", after.Step,
				after.AnalysisRuns, after.SetWeight, after.ActualWeight, run, count)
		}
		waitStatus(t, nl, "measuring again", func(st analyzer.RolloutStatus) bool { return metricOf(st, "error-ratio").Count > count })
		t.Logf("the new leader measures again %s after the kill", time.Since(l.killedAt).Round(time.Millisecond))
		l.start(t)
		t.Logf("%s restarted %s after the kill", l.name, time.Since(l.killedAt).Round(time.Millisecond))
		f.waitServing(t, 20)
		t.Logf("every replica serves 20%% again %s after the kill", time.Since(l.killedAt).Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	t.Run("a leader cut off etcd stops deciding and never writes after its lease is gone", func(t *testing.T) {
		l := f.leader(t, f.reps, "a leader")
		// Cut it off while a measurement is in flight, then let the measurement end: the
		// leader decides on it before it notices the partition, and its write waits in
		// the cut connection until after its lease has expired and another replica leads.
		gate.hold()
		select {
		case <-gate.arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("no measurement reached the gate in 30 s: is the analysis still running?")
		}
		for _, p := range l.proxies {
			p.Cut()
		}
		cutAt := time.Now()
		okAtCut := l.metric(t, `sluice_ha_fenced_writes_total{result="ok"}`)
		failedAtCut := l.metric(t, `sluice_ha_fenced_writes_total{result="error"}`)
		gate.open()
		rest := others(f.reps, l)
		nl := f.leader(t, rest, "another leader while the old one is cut off", l)
		t.Logf("%s cut off etcd: %s leads %s later", l.name, nl.name, time.Since(cutAt).Round(time.Millisecond))
		testenv.WaitFor(t, 10*time.Second, l.name+" to stop leading on its own", func() bool {
			v, err := l.view()
			return err == nil && !v.Leading
		})
		st := waitStatus(t, nl, "the new leader measuring", func(st analyzer.RolloutStatus) bool { return st.Step == 2 })
		c := metricOf(st, "error-ratio").Count
		waitStatus(t, nl, "the new leader measuring", func(st analyzer.RolloutStatus) bool { return metricOf(st, "error-ratio").Count > c })
		for _, p := range l.proxies {
			p.Restore() // what the cut held reaches etcd now: fenced writes of the old term are refused
		}
		testenv.WaitFor(t, 20*time.Second, l.name+" back, following "+nl.name, func() bool {
			v, err := l.view()
			return err == nil && v.EtcdReachable && v.Leader != "" && f.byID(v.Leader) == nl
		})
		if got := l.metric(t, `sluice_ha_fenced_writes_total{result="ok"}`); got != okAtCut {
			t.Errorf("%s: fenced writes ok went from %s at the cut to %s", l.name, okAtCut, got)
		}
		if got := l.metric(t, `sluice_ha_fenced_writes_total{result="error"}`); got == failedAtCut {
			t.Errorf("%s attempted no write while cut off (errors %s): this case tested nothing", l.name, got)
		}
		t.Logf("%s: fenced writes refused %s, failed %s (%s at the cut)", l.name, l.metric(t, `sluice_ha_fenced_writes_total{result="refused"}`),
			l.metric(t, `sluice_ha_fenced_writes_total{result="error"}`), failedAtCut)
		f.waitServing(t, 20)
		states.check(t)
	})
	if t.Failed() {
		return
	}

	t.Run("etcd stopped: nothing is decided, data planes keep serving; it resumes when etcd returns", func(t *testing.T) {
		l := f.leader(t, f.reps, "a leader")
		for i := range 3 {
			etcd.Kill(i)
		}
		down := time.Now()
		for _, r := range f.reps {
			testenv.WaitFor(t, 10*time.Second, r.name+" reports etcd unreachable", func() bool {
				v, err := r.view()
				return err == nil && v.Error != "" && !v.Leading
			})
		}
		frozen, _ := l.status()
		// A command finds no leader; meanwhile the analysis would have gone on.
		code, out := cli("promote", rolloutName, "--admin", f.reps[1].admin)
		if code == 0 || !strings.Contains(out, "not carried out") {
			t.Errorf("promote with etcd down: exit %d\n%s", code, out)
		}
		t.Logf("promote with etcd down: %s", strings.TrimSpace(out))
		for _, r := range f.reps {
			st, err := r.status()
			if err != nil || st.Step != frozen.Step || metricOf(st, "error-ratio").Count != metricOf(frozen, "error-ratio").Count ||
				st.SetWeight != 20 {
				t.Errorf("%s with etcd down: step %d, %d measurements, weight %d (%v); when it went down: step %d, %d measurements",
					r.name, st.Step, metricOf(st, "error-ratio").Count, st.SetWeight, err, frozen.Step, metricOf(frozen, "error-ratio").Count)
			}
		}
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := etcd.Restart(i); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		nl := f.leader(t, f.reps, "a leader once etcd is back")
		t.Logf("etcd down for %s; %s leads", time.Since(down).Round(time.Millisecond), nl.name)
		resumed := waitStatus(t, nl, "the analysis resumed where it stopped", func(st analyzer.RolloutStatus) bool {
			return st.Step == 2 && metricOf(st, "error-ratio").Count > metricOf(frozen, "error-ratio").Count
		})
		if resumed.AnalysisRuns[0].Name != frozen.AnalysisRuns[0].Name {
			t.Errorf("the analysis run changed across the outage: %s, was %s", resumed.AnalysisRuns[0].Name, frozen.AnalysisRuns[0].Name)
		}
		// Skip the rest of the analysis (as Argo's promote does) to the step at 50%.
		if code, out := cli("promote", rolloutName, "--admin", others(f.reps, nl)[0].admin); code != 0 {
			t.Fatalf("promote: exit %d\n%s", code, out)
		}
		waitStatus(t, nl, "the step at 50% applied", func(st analyzer.RolloutStatus) bool {
			return st.Phase == analyzer.PhasePaused && st.Step == 4 && st.ActualWeight == 50
		})
		f.waitServing(t, 50)
	})
	if t.Failed() {
		return
	}

	t.Run("one etcd member of three down: no interruption", func(t *testing.T) {
		l := f.leader(t, f.reps, "a leader")
		member := etcdFollower(t, etcd)
		etcd.Kill(member)
		follower := others(f.reps, l)[1]
		code, out := cli("promote", rolloutName, "--admin", follower.admin)
		if code != 0 {
			t.Fatalf("promote with one member down: exit %d\n%s", code, out)
		}
		for _, r := range f.reps {
			waitStatus(t, r, "promoted to 100%", func(st analyzer.RolloutStatus) bool {
				return st.Phase == analyzer.PhaseHealthy && st.ActualWeight == 100
			})
		}
		f.waitServing(t, 100)
		if nl := f.leader(t, f.reps, "the leader"); nl != l {
			t.Errorf("the leader changed from %s to %s with one etcd member down", l.name, nl.name)
		}
		if err := etcd.Restart(member); err != nil {
			t.Error(err)
		}
	})

	// What every client and every data plane saw over the whole run.
	for _, l := range loads {
		l.stop()
		by := l.snapshot()
		t.Logf("%s: %d calls ok (%v), %d failed", l.name, l.ok.Load(), by, l.failed.Load())
		if n := l.failed.Load(); n != 0 {
			t.Errorf("%s: %d calls failed (last: %s)", l.name, n, l.lastErr)
		}
		if by["stable"] == 0 || by["canary"] == 0 {
			t.Errorf("%s: calls by backend %v: the split was not in effect", l.name, by)
		}
	}
	for _, r := range f.reps {
		r.mu.Lock()
		sh, xh, vs := slices.Clone(r.statusHistory), slices.Clone(r.xdsWeight), slices.Clone(r.violations)
		r.mu.Unlock()
		t.Logf("%s served (status) %v, (xDS) %v", r.name, sh, xh)
		for _, h := range [][]int{sh, xh} {
			if !slices.IsSorted(h) {
				t.Errorf("%s: the canary weight went back: %v", r.name, h)
			}
		}
		if len(vs) > 0 {
			t.Errorf("%s: the fake Envoy saw routes to clusters it did not hold: %v", r.name, vs)
		}
	}
	states.check(t)
}
