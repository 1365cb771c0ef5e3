// Command ha measures Sluice's replicated control plane end to end: three real
// `sluice serve` replicas on a real three-member etcd (Debian's etcd-server), all on
// this machine. It measures two things:
//
//   - Failover: the leading replica is kill -9'ed while a rollout analyses (a metric
//     every 200 ms); the time runs from the kill until another replica claims the
//     leadership in etcd, and until that new leader's first decision is committed (the
//     first rollout state written after its claim). A replacement replica joins before
//     the next kill.
//   - Fan-out: each replica serves N simulated Envoys (bench/xds's fleet, one child
//     process per replica); an operator's promote, given to a follower, changes the
//     canary weight; the time runs from the commit of the new weight in etcd until the
//     leader commits actualWeight = that weight, which it does once every replica's router
//     and every one of its Envoys has ACKed it (3 × N proxies).
//
// Run it as make bench-ha does:
//
//	go run ./bench/ha -ttl 2s,5s -kills 20 -n 100,1000 -readme bench/README.md
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/bench/internal/readme"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

func main() {
	ttls := flag.String("ttl", "2s,5s", "comma-separated lease TTLs for the failover rows")
	kills := flag.Int("kills", 20, "leader kills per TTL")
	ns := flag.String("n", "100,1000", "comma-separated numbers of simulated Envoys per replica for the fan-out rows")
	changes := flag.Int("changes", 8, "weight changes timed per fan-out row")
	readmePath := flag.String("readme", "", "write the tables into this file between <!-- ha:begin --> and <!-- ha:end -->")
	flag.Parse()

	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		log.Fatal("etcd not found: install Debian's etcd-server (make test-deps)")
	}
	dir, err := os.MkdirTemp("", "sluice-bench-ha-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir}
	if b.sluice, err = testenv.BuildSluice(dir); err != nil {
		log.Fatal(err)
	}
	if b.fleet, err = buildFleet(dir); err != nil {
		log.Fatal(err)
	}
	etcd, err := testenv.LaunchEtcd(etcdBin, 3, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	b.endpoints = etcd.Endpoints()
	if b.cli, err = clientv3.New(clientv3.Config{Endpoints: b.endpoints, Logger: zap.NewNop()}); err != nil {
		log.Fatal(err)
	}
	defer b.cli.Close()

	var fails []failRow
	for _, f := range strings.Split(*ttls, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			log.Fatalf("bad -ttl %q", f)
		}
		r, err := b.failover(d, *kills)
		if err != nil {
			log.Fatalf("failover, leaseTTL %s: %v", d, err)
		}
		fails = append(fails, r)
	}
	var fans []fanRow
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("bad -n %q", f)
		}
		r, err := b.fanout(n, *changes)
		if err != nil {
			log.Fatalf("fan-out, N=%d: %v", n, err)
		}
		fans = append(fans, r)
	}
	table := render(fails, fans, *kills, *changes)
	fmt.Print(table)
	if *readmePath != "" {
		if err := readme.WriteSection(*readmePath, "ha", table); err != nil {
			log.Fatal(err)
		}
	}
}

// buildFleet builds bench/xds, whose -clients mode runs the simulated Envoys.
func buildFleet(dir string) (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "xds-fleet")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./bench/xds")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building bench/xds: %v\n%s", err, out)
	}
	return bin, nil
}

type bench struct {
	dir, sluice, fleet string
	endpoints          []string
	cli                *clientv3.Client
	seq                int
}

// The replicas' configuration: ${ROLLOUT} is one of the two rollouts below.
const configTemplate = `apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: "${ADMIN}"}
  xds: {address: "${XDS}", ackTimeout: 30s}
  minRequests: 0
${STORE}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: api-stable}
spec: {protocol: h2c, endpoints: [{address: "127.0.0.1:1"}]}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: api-canary}
spec: {protocol: h2c, endpoints: [{address: "127.0.0.1:2"}]}
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: api}
spec:
  address: "${LISTEN}"
  routes: [{hosts: ["*"], pathPrefix: /, cluster: api-stable}]
---
${ROLLOUT}
`

// pulse analyses forever, a measurement every 200 ms: a leader always has a decision due.
const pulseRollout = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  strategy:
    canary:
      stableService: api-stable
      canaryService: api-canary
      steps:
        - setWeight: 10
        - analysis: {templates: [{templateName: pulse}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: pulse}
spec:
  metrics:
    - name: pulse
      interval: 200ms
      count: 100000000
      successCondition: result[0] == 1
      provider: {prometheus: {query: "vector(1)"}}
`

// stairsRollout changes the weight by 10 at every promote.
func stairsRollout() string {
	var steps []string
	for w := 10; w <= 90; w += 10 {
		steps = append(steps, fmt.Sprintf("        - setWeight: %d\n        - pause: {}", w))
	}
	return `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  strategy:
    canary:
      stableService: api-stable
      canaryService: api-canary
      steps:
` + strings.Join(steps, "\n")
}

// replica is one `sluice serve`.
type replica struct {
	admin, xds string
	cmd        *exec.Cmd
	fleet      *exec.Cmd
	fleetIn    io.WriteCloser
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a replica with the given rollout on prefix and waits until it is ready; an
// empty prefix runs a single Sluice with a stateDir instead.
func (b *bench) start(prefix string, ttl time.Duration, rollout string) (*replica, error) {
	b.seq++
	r := &replica{admin: freeAddr(), xds: freeAddr()}
	var eps []string
	for _, e := range b.endpoints {
		eps = append(eps, strconv.Quote(e))
	}
	store := fmt.Sprintf("  store:\n    etcd: {endpoints: [%s], prefix: %q, leaseTTL: %s}", strings.Join(eps, ", "), prefix, ttl)
	if prefix == "" {
		store = fmt.Sprintf("  stateDir: %q", filepath.Join(b.dir, fmt.Sprintf("state-%d", b.seq)))
	}
	cfg := strings.NewReplacer("${ADMIN}", r.admin, "${XDS}", r.xds, "${LISTEN}", freeAddr(), "${STORE}", store,
		"${ROLLOUT}", rollout).Replace(configTemplate)
	path := filepath.Join(b.dir, fmt.Sprintf("r%d.yaml", b.seq))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("r%d.log", b.seq)))
	if err != nil {
		return nil, err
	}
	r.cmd = exec.Command(b.sluice, "serve", "-f", path, "--log-format", "json", "--log-level", "warn")
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = r.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + r.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.kill()
	b2, _ := os.ReadFile(logf.Name())
	return nil, fmt.Errorf("replica not ready after 60s:\n%s", b2)
}

func (r *replica) kill() {
	if r.fleetIn != nil {
		_ = r.fleetIn.Close()
		_ = r.fleet.Wait()
	}
	_ = r.cmd.Process.Kill()
}

// view is GET /api/v1/replicas.
type view struct {
	Leader   string `json:"leader"`
	Replicas []struct {
		ID string `json:"id"`
	} `json:"replicas"`
}

func getJSON(addr, path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitFleet waits until n replicas are live with a leader among reps, and returns it.
func waitFleet(reps []*replica, n int) (*replica, error) {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		var v view
		if err := getJSON(reps[0].admin, "/api/v1/replicas", &v); err == nil && v.Leader != "" && len(v.Replicas) == n {
			for _, r := range reps {
				if strings.HasSuffix(v.Leader, "/"+r.admin) {
					return r, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader with %d live replicas after 90s", n)
}

// event is a put under the prefix as the bench's watch saw it.
type event struct {
	key, value string
	rev        int64
	at         time.Time
}

// watch delivers every put under prefix with the time it arrived.
func (b *bench) watch(ctx context.Context, prefix string) <-chan event {
	ch := make(chan event, 100000)
	go func() {
		for wr := range b.cli.Watch(ctx, prefix, clientv3.WithPrefix()) {
			at := time.Now()
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					ch <- event{key: strings.TrimPrefix(string(ev.Kv.Key), prefix), value: string(ev.Kv.Value), rev: ev.Kv.ModRevision, at: at}
				}
			}
		}
	}()
	return ch
}

type failRow struct {
	ttl             time.Duration
	claims, decides []time.Duration
	load            string
}

// failover kills the leader kills times and times the new leader's claim and first
// decision.
func (b *bench) failover(ttl time.Duration, kills int) (failRow, error) {
	r := failRow{ttl: ttl, load: loadAvg()}
	prefix, events, reps, done, err := b.three("failover", ttl, pulseRollout, 0)
	defer done()
	if err != nil {
		return r, err
	}
	for k := range kills {
		leader, err := waitFleet(*reps, 3)
		if err != nil {
			return r, err
		}
		var v view
		_ = getJSON(leader.admin, "/api/v1/replicas", &v)
		old := v.Leader
		// Drain what happened so far: only events after the kill count.
		for len(events) > 0 {
			<-events
		}
		killed := time.Now()
		leader.kill()
		*reps = slices.DeleteFunc(*reps, func(x *replica) bool { return x == leader })
		var claimRev int64
		var claim, decide time.Duration
		timeout := time.After(ttl*3 + 30*time.Second)
	wait:
		for {
			select {
			case ev := <-events:
				switch {
				case claimRev == 0 && strings.HasPrefix(ev.key, "leader/") && ev.value != old:
					claimRev, claim = ev.rev, ev.at.Sub(killed)
				case claimRev != 0 && strings.HasPrefix(ev.key, "states/") && ev.rev > claimRev:
					decide = ev.at.Sub(killed)
					break wait
				}
			case <-timeout:
				return r, fmt.Errorf("kill %d: no new leader's decision (claim after %v)", k+1, claim)
			}
		}
		r.claims, r.decides = append(r.claims, claim), append(r.decides, decide)
		fmt.Fprintf(os.Stderr, "leaseTTL %s kill %d/%d: claimed after %s, first decision after %s\n", ttl, k+1, kills,
			claim.Round(time.Millisecond), decide.Round(time.Millisecond))
		x, err := b.start(prefix, ttl, pulseRollout)
		if err != nil {
			return r, err
		}
		*reps = append(*reps, x)
	}
	return r, nil
}

// three starts three replicas on a new prefix with a watch on it (each with n simulated
// Envoys when n > 0). done kills whatever replicas *reps holds then.
func (b *bench) three(kind string, ttl time.Duration, rollout string, n int) (prefix string, events <-chan event, reps *[]*replica, done func(), err error) {
	prefix = fmt.Sprintf("/bench-%s-%d/", kind, time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	events = b.watch(ctx, prefix)
	reps = &[]*replica{}
	done = func() {
		cancel()
		for _, x := range *reps {
			x.kill()
		}
		*reps = nil
	}
	for range 3 {
		x, err := b.start(prefix, ttl, rollout)
		if err != nil {
			return prefix, events, reps, done, err
		}
		*reps = append(*reps, x)
		if n > 0 {
			if err := b.startFleet(x, n); err != nil {
				return prefix, events, reps, done, err
			}
		}
	}
	return prefix, events, reps, done, nil
}

type fanRow struct {
	n                       int
	fanout, command, single []time.Duration
	load                    string
}

// fanout times weight changes with n simulated Envoys on each of three replicas.
func (b *bench) fanout(n, changes int) (fanRow, error) {
	r := fanRow{n: n, load: loadAvg()}
	_, events, reps, done, err := b.three("fanout", 2*time.Second, stairsRollout(), n)
	defer done()
	if err != nil {
		return r, err
	}
	leader, err := waitFleet(*reps, 3)
	if err != nil {
		return r, err
	}
	follower := (*reps)[0]
	if follower == leader {
		follower = (*reps)[1]
	}
	state := func(ev event) (*analyzer.State, bool) {
		if ev.key != "states/api" {
			return nil, false
		}
		st, err := analyzer.DecodeState([]byte(ev.value))
		return st, err == nil
	}
	waitApplied := func(w int) (committed, applied time.Time, err error) {
		timeout := time.After(2 * time.Minute)
		for {
			select {
			case ev := <-events:
				st, ok := state(ev)
				if !ok || st.SetWeight != w {
					continue
				}
				if committed.IsZero() {
					committed = ev.at
				}
				if st.ActualWeight == w && st.AppliedGen == st.Gen {
					return committed, ev.at, nil
				}
			case <-timeout:
				return committed, applied, fmt.Errorf("weight %d not applied fleet-wide within 2 minutes", w)
			}
		}
	}
	if _, _, err := waitApplied(10); err != nil {
		return r, err
	}
	for i := range min(changes, 8) {
		w := 20 + 10*i
		t0 := time.Now()
		if err := promote(follower.admin); err != nil {
			return r, err
		}
		committed, applied, err := waitApplied(w)
		if err != nil {
			return r, err
		}
		r.fanout = append(r.fanout, applied.Sub(committed))
		r.command = append(r.command, applied.Sub(t0))
		fmt.Fprintf(os.Stderr, "N=%d×3 weight %d: commit → fleet ACKed %s, command → fleet ACKed %s\n", n, w,
			applied.Sub(committed).Round(100*time.Microsecond), applied.Sub(t0).Round(100*time.Microsecond))
		time.Sleep(100 * time.Millisecond)
	}
	done()
	if r.single, err = b.single(3*n, changes); err != nil {
		return r, err
	}
	return r, nil
}

// startFleet starts n simulated Envoys on x's xDS server and waits until they are up.
func (b *bench) startFleet(x *replica, n int) error {
	x.fleet = exec.Command(b.fleet, "-clients", "-addr", x.xds, "-n", strconv.Itoa(n), "-per-conn", "100")
	x.fleet.Stderr = os.Stderr
	x.fleetIn, _ = x.fleet.StdinPipe()
	out, _ := x.fleet.StdoutPipe()
	if err := x.fleet.Start(); err != nil {
		return err
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready") {
		return fmt.Errorf("simulated Envoys: %q %v", line, err)
	}
	return nil
}

// single is the same weight change on one Sluice alone (stateDir) with all n Envoys, on
// the same machine: from the promote until its status shows actualWeight = the new weight.
func (b *bench) single(n, changes int) ([]time.Duration, error) {
	x, err := b.start("", 0, stairsRollout())
	if err != nil {
		return nil, err
	}
	defer x.kill()
	if err := b.startFleet(x, n); err != nil {
		return nil, err
	}
	applied := func(w int) (bool, error) {
		var st analyzer.RolloutStatus
		if err := getJSON(x.admin, "/api/v1/rollouts/api", &st); err != nil {
			return false, err
		}
		return st.SetWeight == w && st.ActualWeight == w, nil
	}
	waitApplied := func(w int) error {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			if ok, err := applied(w); err == nil && ok {
				return nil
			}
			time.Sleep(2 * time.Millisecond)
		}
		return fmt.Errorf("alone: weight %d not applied within 2 minutes", w)
	}
	if err := waitApplied(10); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range min(changes, 8) {
		w := 20 + 10*i
		t0 := time.Now()
		if err := promote(x.admin); err != nil {
			return nil, err
		}
		if err := waitApplied(w); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
		fmt.Fprintf(os.Stderr, "alone, N=%d weight %d: command → ACKed %s\n", n, w, time.Since(t0).Round(100*time.Microsecond))
		time.Sleep(100 * time.Millisecond)
	}
	return out, nil
}

// promote asks the admin API at addr to promote the rollout api.
func promote(addr string) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/rollouts/api/promote", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("promote: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

func medianMax(d []time.Duration) (time.Duration, time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// budget is bench/xds's target for one replica's fleet of n Envoys.
func budget(n int) time.Duration {
	switch {
	case n <= 1000:
		return 100 * time.Millisecond
	case n <= 5000:
		return 500 * time.Millisecond
	}
	return time.Second
}

func render(fails []failRow, fans []fanRow, kills, changes int) string {
	var b strings.Builder
	var ns []string
	var ttls []string
	for _, f := range fans {
		ns = append(ns, strconv.Itoa(f.n))
	}
	for _, f := range fails {
		ttls = append(ttls, f.ttl.String())
	}
	fmt.Fprintf(&b, "Command: `make bench-ha` (`go run ./bench/ha -ttl %s -kills %d -n %s`), measured %s.\n\n",
		strings.Join(ttls, ","), kills, strings.Join(ns, ","), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("Three real `sluice serve` replicas on a real three-member etcd (Debian etcd-server 3.4.23, client\n")
	b.WriteString("v3.7.3), all on this machine.\n\n")
	b.WriteString("**Failover**: the leading replica is `kill -9`ed while its rollout analyses (a measurement every\n")
	b.WriteString("200 ms, so a decision is always due); the times run from the kill until another replica's claim\n")
	b.WriteString("of the leadership reaches the bench's etcd watch, and until the new leader's first decision (the\n")
	b.WriteString("first rollout state it commits). A replacement replica joins before the next kill. Target: median\n")
	b.WriteString("≤ leaseTTL + 1 s.\n\n")
	b.WriteString("| leaseTTL | kills | claim median | first decision median | first decision max | target | load |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range fails {
		cm, _ := medianMax(r.claims)
		dm, dx := medianMax(r.decides)
		ok := "✓"
		if dm > r.ttl+time.Second {
			ok = "✗"
		}
		fmt.Fprintf(&b, "| %s | %d | %v | %v | %v | ≤ %v %s | %s |\n", r.ttl, len(r.decides), cm.Round(time.Millisecond),
			dm.Round(time.Millisecond), dx.Round(time.Millisecond), r.ttl+time.Second, ok, r.load)
	}
	fmt.Fprintf(&b, "\n**Fan-out**: each replica serves N simulated Envoys (bench/xds's fleet: ADS streams that ACK like\n")
	b.WriteString("Envoy, in one child process per replica), 3 × N in all; an operator's `promote`, given to a\n")
	fmt.Fprintf(&b, "follower, moves the canary weight by 10 points, %d times. \"Commit → fleet ACKed\" runs from the\n", changes)
	b.WriteString("commit of the new weight in etcd until the leader commits `actualWeight` = that weight, which it\n")
	b.WriteString("does once every replica reported that its router and all its Envoys applied it (each replica:\n")
	b.WriteString("watch → router and xDS push → ACKs → its report in etcd; the leader: watch of the reports →\n")
	b.WriteString("decision → write). \"Command → fleet ACKed\" adds the command's trip through etcd to the leader.\n")
	b.WriteString("Side by side, in the same run: one Sluice alone (`stateDir`, no etcd) with all 3 × N Envoys,\n")
	b.WriteString("from the same `promote` until its status shows the new `actualWeight`. Targets: bench/xds's\n")
	b.WriteString("budget for one control plane — for the 3 × N Envoys this machine serves in all (the replicas\n")
	b.WriteString("share its 2 cores), and for N (each replica on its own machine, as deployed).\n\n")
	b.WriteString("| Envoys | commit → fleet ACKed median | max | command → fleet ACKed median | max | alone, command → ACKed median | max | target 3 × N / N | load |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range fans {
		fm, fx := medianMax(r.fanout)
		cm, cx := medianMax(r.command)
		sm, sx := medianMax(r.single)
		mark := func(d time.Duration) string {
			if fm <= d {
				return "✓"
			}
			return "✗"
		}
		fmt.Fprintf(&b, "| 3 × %d | %v | %v | %v | %v | %v | %v | ≤ %v %s / ≤ %v %s | %s |\n", r.n, fm.Round(100*time.Microsecond),
			fx.Round(100*time.Microsecond), cm.Round(100*time.Microsecond), cx.Round(100*time.Microsecond),
			sm.Round(100*time.Microsecond), sx.Round(100*time.Microsecond), budget(3*r.n), mark(budget(3*r.n)),
			budget(r.n), mark(budget(r.n)), r.load)
	}
	b.WriteString("\nReading it: after a kill -9 nothing revokes the dead leader's lease, so etcd expires it\n")
	b.WriteString("leaseTTL after its last keepalive (renewals go every leaseTTL/5, so up to a fifth of the TTL\n")
	b.WriteString("has passed at the kill; etcd's expiry sweep runs every 500 ms); the next candidate's `Campaign`\n")
	b.WriteString("returns on the delete event, it claims the key, reads the states fenced and decides. A graceful\n")
	b.WriteString("stop (SIGTERM) resigns instead and hands over in tens of milliseconds. The load column is the\n")
	b.WriteString("1-minute load average when the row started: the machine's 2 cores are shared with other work,\n")
	b.WriteString("and here they also run the three etcd members, the three replicas and the simulated Envoys.\n")
	return b.String()
}
