// Command ha measures the replicated control plane on a real etcd (Debian's etcd-server):
// failover time — the leader replica kill -9'ed until the new leader's first fenced
// write is committed — over many kills, and the fan-out of a state write to every
// replica's watch. Each replica is a child process (this binary with -replica) running
// ha.Replica; whenever it begins a term it writes a state at once (its first decision).
//
//	go run ./bench/ha -ttl 2s,5s -kills 20 -readme bench/README.md
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

func main() {
	ttls := flag.String("ttl", "2s,5s", "comma-separated lease TTLs")
	kills := flag.Int("kills", 20, "leader kills per TTL")
	replicas := flag.Int("replicas", 3, "replicas")
	writes := flag.Int("writes", 100, "state writes timed for the fan-out")
	readme := flag.String("readme", "", "write the table into this file between <!-- ha:begin --> and <!-- ha:end -->")
	child := flag.Bool("replica", false, "internal: run one replica (child process)")
	id := flag.String("id", "", "internal: replica ID")
	endpoints := flag.String("endpoints", "", "internal: etcd endpoints")
	prefix := flag.String("prefix", "", "internal: key prefix")
	ttl := flag.Duration("lease", 0, "internal: lease TTL")
	flag.Parse()
	if *child {
		runReplica(*id, strings.Split(*endpoints, ","), *prefix, *ttl)
		return
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		log.Fatal("etcd not found: install Debian's etcd-server (make test-deps)")
	}
	etcd, err := testenv.LaunchEtcd(bin, 1, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	var rows []row
	for _, f := range strings.Split(*ttls, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			log.Fatalf("bad -ttl %q", f)
		}
		r, err := measure(etcd.Endpoints(), d, *replicas, *kills, *writes)
		if err != nil {
			log.Fatalf("leaseTTL %s: %v", d, err)
		}
		rows = append(rows, r)
	}
	table := render(rows, *replicas, *kills, *writes)
	fmt.Print(table)
	if *readme != "" {
		if err := writeReadme(*readme, table); err != nil {
			log.Fatal(err)
		}
	}
}

// runReplica is a child: it runs one replica. On every term it writes the state
// "bench" (its first decision); on "fan N" on stdin, the leader writes N states 20 ms
// apart. It prints every state it sees with the time it saw it.
func runReplica(id string, endpoints []string, prefix string, ttl time.Duration) {
	r, err := ha.Open(&model.EtcdStore{Endpoints: endpoints, Prefix: prefix, LeaseTTL: ttl}, ha.Options{ID: id, Admin: id})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	go func() { _ = r.Run(ctx) }()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	go func() {
		for c := range r.WatchStates(ctx) {
			say("saw %s %d", c.State, time.Now().UnixNano())
		}
	}()
	go func() {
		for t := range r.Terms() {
			for t.Valid() {
				wctx, cancel := context.WithTimeout(ctx, ttl)
				_, err := t.Save(wctx, "bench", []byte("lead-"+id))
				cancel()
				if err == nil {
					break
				}
			}
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, _ := strconv.Atoi(strings.TrimPrefix(in.Text(), "fan "))
		t := r.Term()
		if t == nil {
			continue
		}
		for i := 0; i < n; i++ {
			_, _ = t.Save(ctx, "fan", []byte(fmt.Sprintf("fan-%d-%d", i, time.Now().UnixNano())))
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// proc is a replica child process as the parent sees it.
type proc struct {
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

type row struct {
	ttl                time.Duration
	failovers          []time.Duration
	fanMedian, fanP99  time.Duration
	fanMax             time.Duration
	commitMedian       time.Duration
	load               string
	kills, fanReceived int
}

func measure(endpoints []string, ttl time.Duration, replicas, kills, writes int) (row, error) {
	prefix := fmt.Sprintf("/bench-%d/", time.Now().UnixNano())
	self, err := os.Executable()
	if err != nil {
		return row{}, err
	}
	obs, err := ha.Open(&model.EtcdStore{Endpoints: endpoints, Prefix: prefix, LeaseTTL: ttl}, ha.Options{ID: "observer"})
	if err != nil {
		return row{}, err
	}
	defer obs.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints})
	if err != nil {
		return row{}, err
	}
	defer cli.Close()
	ctx := context.Background()

	// Every line any child prints, with the child's ID.
	type line struct{ id, text string }
	lines := make(chan line, 10000)
	procs := map[string]*proc{}
	seq := 0
	start := func() error {
		seq++
		id := fmt.Sprintf("r%d", seq)
		cmd := exec.Command(self, "-replica", "-id", id, "-endpoints", strings.Join(endpoints, ","), "-prefix", prefix, "-lease", ttl.String())
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() {
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				lines <- line{id, s.Text()}
			}
		}()
		procs[id] = &proc{id: id, cmd: cmd, stdin: stdin}
		return nil
	}
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	waitFleet := func() (string, error) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			v, err := obs.View(ctx)
			if err == nil && v.Leader != "" && len(v.Replicas) == replicas {
				return v.Leader, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "", fmt.Errorf("no leader with %d live replicas after 60s", replicas)
	}
	for i := 0; i < replicas; i++ {
		if err := start(); err != nil {
			return row{}, err
		}
	}
	r := row{ttl: ttl, load: loadAvg()}
	key := prefix + "states/bench"
	for k := 0; k < kills; k++ {
		leader, err := waitFleet()
		if err != nil {
			return r, err
		}
		// Watch the state the leaders write when they begin; kill the leader; the
		// first write by another replica is the new leader's first decision.
		wctx, cancel := context.WithCancel(ctx)
		get, err := cli.Get(ctx, key)
		if err != nil {
			cancel()
			return r, err
		}
		wch := cli.Watch(wctx, key, clientv3.WithRev(get.Header.Revision+1))
		p := procs[leader]
		killed := time.Now()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		delete(procs, leader)
		var took time.Duration
	wait:
		for wr := range wch {
			for _, ev := range wr.Events {
				if v := string(ev.Kv.Value); strings.HasPrefix(v, "lead-") && v != "lead-"+leader {
					took = time.Since(killed)
					break wait
				}
			}
		}
		cancel()
		if took == 0 {
			return r, fmt.Errorf("kill %d: no new leader wrote", k+1)
		}
		r.failovers = append(r.failovers, took)
		fmt.Fprintf(os.Stderr, "leaseTTL %s kill %d/%d: %s killed, new leader's first write after %s\n", ttl, k+1, kills, leader, took.Round(time.Millisecond))
		if err := start(); err != nil {
			return r, err
		}
	}
	r.kills = len(r.failovers)

	// Fan-out: the leader writes states; each replica reports when it saw each one.
	if _, err := waitFleet(); err != nil {
		return r, err
	}
	for len(lines) > 0 {
		<-lines
	}
	for _, p := range procs {
		fmt.Fprintf(p.stdin, "fan %d\n", writes)
	}
	latest := map[string]time.Duration{} // write → slowest replica's delay
	seen := map[string]int{}
	timeout := time.After(time.Duration(writes)*20*time.Millisecond + 30*time.Second)
	for len(seen) < writes || minCount(seen) < replicas {
		select {
		case l := <-lines:
			f := strings.Fields(l.text)
			if len(f) != 3 || f[0] != "saw" || !strings.HasPrefix(f[1], "fan-") {
				continue
			}
			parts := strings.Split(f[1], "-")
			sent, _ := strconv.ParseInt(parts[2], 10, 64)
			got, _ := strconv.ParseInt(f[2], 10, 64)
			d := time.Duration(got - sent)
			seen[f[1]]++
			latest[f[1]] = max(latest[f[1]], d)
		case <-timeout:
			return r, fmt.Errorf("fan-out: %d of %d writes seen by every replica", countFull(seen, replicas), writes)
		}
	}
	var fan []time.Duration
	for _, d := range latest {
		fan = append(fan, d)
	}
	slices.Sort(fan)
	r.fanMedian, r.fanP99, r.fanMax = fan[len(fan)/2], fan[(len(fan)-1)*99/100], fan[len(fan)-1]
	r.fanReceived = len(fan)
	return r, nil
}

func minCount(m map[string]int) int {
	n := -1
	for _, c := range m {
		if n < 0 || c < n {
			n = c
		}
	}
	return n
}

func countFull(m map[string]int, want int) int {
	n := 0
	for _, c := range m {
		if c >= want {
			n++
		}
	}
	return n
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func render(rows []row, replicas, kills, writes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `make bench-ha` (`go run ./bench/ha -ttl 2s,5s -kills %d`), measured %s.\n\n",
		kills, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "%d replicas (child processes running `ha.Replica`) on one real etcd (Debian etcd-server 3.4.23,\n", replicas)
	b.WriteString("client v3.7.3). **Failover**: the leading replica is `kill -9`ed; the time is from the kill until\n")
	b.WriteString("etcd delivers the new leader's first fenced write (each replica writes a state the moment it\n")
	b.WriteString("begins a term), then a replacement replica joins before the next kill. **Fan-out**: the leader\n")
	fmt.Fprintf(&b, "writes %d states 20 ms apart; the time is from just before each `Save` until the slowest replica's\n", writes)
	b.WriteString("`WatchStates` delivered it (commit included). Target: failover median ≤ leaseTTL + 1 s.\n\n")
	b.WriteString("| leaseTTL | kills | failover median | failover max | target | fan-out median | p99 | max | load |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		f := slices.Clone(r.failovers)
		slices.Sort(f)
		med, mx := f[len(f)/2], f[len(f)-1]
		ok := "✓"
		if med > r.ttl+time.Second {
			ok = "✗"
		}
		fmt.Fprintf(&b, "| %s | %d | %v | %v | ≤ %v %s | %v | %v | %v | %s |\n", r.ttl, r.kills,
			med.Round(time.Millisecond), mx.Round(time.Millisecond), r.ttl+time.Second, ok,
			r.fanMedian.Round(100*time.Microsecond), r.fanP99.Round(100*time.Microsecond), r.fanMax.Round(100*time.Microsecond), r.load)
	}
	b.WriteString("\nReading it: after a kill -9 nothing revokes the dead leader's lease, so etcd expires it\n")
	b.WriteString("leaseTTL after its last keepalive (renewals go every leaseTTL/5, so 0–20 % of the TTL has\n")
	b.WriteString("already passed at the kill) and its expiry sweep runs every 500 ms; the next candidate's\n")
	b.WriteString("`Campaign` returns on the delete event, claims the key and writes. A graceful stop (SIGTERM)\n")
	b.WriteString("resigns instead and hands over in tens of milliseconds (`ha.TestReplicas/graceful_shutdown_resigns`).\n")
	b.WriteString("The load column is the 1-minute load average when the row started: the machine's 2 cores are\n")
	b.WriteString("shared with other work.\n")
	return b.String()
}

func writeReadme(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	const begin, end = "<!-- ha:begin -->", "<!-- ha:end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s section", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
