// Command xds measures Sluice's xDS fan-out: N simulated Envoys (ADS streams that
// subscribe to CDS and LDS, then EDS and RDS, and ACK every response the way Envoy does)
// connect to one Sluice xDS server; the canary weight changes several times and each
// change is timed from Apply until WaitApplied reports every stream has ACKed the new
// routes. The simulated Envoys run in a child process (this binary with -clients), so
// the CPU and memory figures are the control plane's alone.
//
// With -change endpoints the canary cluster has -endpoints endpoints (default 1000) and
// each change replaces one of them (one added, one removed: what discovery publishes when
// a pod or VM is replaced), timed until every stream ACKed the new EDS; the bench checks
// that each change was pushed as EDS alone (sluice_xds_eds_only_pushes_total).
//
//	go run ./bench/xds -n 100,1000,5000,10000 -changes 7 -readme bench/README.md
//	go run ./bench/xds -change endpoints -endpoints 1000 -n 1000 -changes 7 -readme bench/README.md
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
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/bench/internal/readme"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// profilePath, when set, receives a CPU profile of the pushes (not the connections).
var profilePath string

// What each timed change is: a new canary weight (RDS), or one endpoint of the canary
// cluster replaced (EDS), and how many endpoints that cluster has.
var (
	changeKind   = "weight"
	canarySize   = 3
	endpointBase = 0 // the first canary endpoint's index: a change moves it by one
	// skimEndpoints: the simulated proxies read only the cluster name of an endpoint
	// assignment (xdstest.Options.SkimEndpoints).
	skimEndpoints bool
)

func main() {
	ns := flag.String("n", "100,1000,5000", "comma-separated fleet sizes")
	changes := flag.Int("changes", 7, "weight changes timed per fleet size")
	perConn := flag.Int("per-conn", 100, "ADS streams per gRPC connection (HTTP/2 multiplexing)")
	readmePath := flag.String("readme", "", "write the table into this file between <!-- xds:begin --> and <!-- xds:end --> (xds-eds with -change endpoints)")
	clients := flag.Bool("clients", false, "internal: run the simulated Envoys (child process)")
	addr := flag.String("addr", "", "internal: xDS server address for -clients")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the control plane's pushes to FILE.N")
	flag.StringVar(&changeKind, "change", "weight", "what each timed change is: weight (RDS) or endpoints (one of the canary's endpoints replaced: EDS)")
	endpoints := flag.Int("endpoints", 0, "endpoints of the canary cluster (default 3, or 1000 with -change endpoints)")
	flag.BoolVar(&skimEndpoints, "skim", false, "the simulated proxies read only the cluster name of endpoint assignments, not the endpoints (the control plane's and the transport's share)")
	flag.Parse()
	profilePath = *cpuprofile
	switch {
	case changeKind != "weight" && changeKind != "endpoints":
		log.Fatalf("bad -change %q: weight or endpoints", changeKind)
	case *endpoints > 0:
		canarySize = *endpoints
	case changeKind == "endpoints":
		canarySize = 1000
	}

	if *clients {
		n, _ := strconv.Atoi(*ns)
		runClients(*addr, n, *perConn)
		return
	}
	var rows []row
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("bad -n %q", f)
		}
		r, err := measure(n, *changes, *perConn)
		if err != nil {
			log.Printf("N=%d: %v", n, err)
			return
		}
		rows = append(rows, r)
		fmt.Println(r.line())
	}
	table := render(rows, *changes)
	fmt.Print(table)
	if *readmePath != "" {
		section := "xds"
		if changeKind == "endpoints" {
			section = "xds-eds"
		}
		if err := readme.WriteSection(*readmePath, section, table); err != nil {
			log.Fatal(err)
		}
	}
}

type row struct {
	n              int
	connect        time.Duration
	median, max    time.Duration
	cpuPerPush     time.Duration
	clientCPU      time.Duration // the simulated fleet's CPU per push (decoding, ACKing)
	heapMiB, rssMB float64
	allocPerPushKB float64
	target         time.Duration
	load           string // 1-minute load average when the row was measured
}

func (r row) line() string {
	return fmt.Sprintf("N=%d connect=%v median=%v max=%v cpu/push=%v fleet-cpu/push=%v heap=%.1fMiB rss=%.1fMiB alloc/push=%.0fKiB",
		r.n, r.connect.Round(time.Millisecond), r.median.Round(time.Millisecond), r.max.Round(time.Millisecond),
		r.cpuPerPush.Round(100*time.Microsecond), r.clientCPU.Round(time.Millisecond), r.heapMiB, r.rssMB, r.allocPerPushKB)
}

// snapshot is a small mesh: one listener, a stable cluster of 3 endpoints and a canary
// cluster of canarySize endpoints (10.x addresses, never dialled), starting at
// endpointBase.
func snapshot(version uint64, canary int) *model.Snapshot {
	eps := func(base, n int) []model.Endpoint {
		var out []model.Endpoint
		for i := base; i < base+n; i++ {
			out = append(out, model.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255), Weight: 1})
		}
		return out
	}
	return &model.Snapshot{
		Version: version,
		Clusters: []model.Cluster{
			{Name: "api-canary", Endpoints: eps(1<<16+endpointBase, canarySize), Protocol: model.ProtocolH2C, ConnectTimeout: time.Second},
			{Name: "api-stable", Endpoints: eps(10, 3), Protocol: model.ProtocolH2C, ConnectTimeout: time.Second},
		},
		Listeners: []model.Listener{{
			Name: "api", Address: "0.0.0.0:8080",
			Routes: []model.Route{{
				Name: "api", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "api-stable", Rollout: "api",
				Split: []model.WeightedCluster{{Cluster: "api-stable", Weight: 100 - canary}, {Cluster: "api-canary", Weight: canary}},
				HeaderRoutes: []model.HeaderRoute{{Name: "canary", Cluster: "api-canary",
					Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Exact: "yes"}}}}},
			}},
		}},
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

func measure(n, changes, perConn int) (row, error) {
	r := row{n: n, load: loadAvg()}
	switch {
	case n <= 1000:
		r.target = 100 * time.Millisecond
	case n <= 5000:
		r.target = 500 * time.Millisecond
	default:
		r.target = time.Second
	}
	reg := prometheus.NewRegistry()
	s, err := xds.New(xds.Options{Logger: zap.NewNop(), Registerer: reg, Address: "127.0.0.1:0", AckTimeout: time.Minute})
	if err != nil {
		return r, err
	}
	if err := s.Start(context.Background()); err != nil {
		return r, err
	}
	defer s.Stop()
	if err := s.Apply(snapshot(1, 0)); err != nil {
		return r, err
	}
	exe, err := os.Executable()
	if err != nil {
		return r, err
	}
	start := time.Now()
	cmd := exec.Command(exe, "-clients", "-addr", s.Addr().String(), "-n", strconv.Itoa(n), "-per-conn", strconv.Itoa(perConn), "-change", changeKind, "-skim="+strconv.FormatBool(skimEndpoints))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe() // closing it stops the child
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		return r, fmt.Errorf("clients: %q %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for connected(s) < n { // a stream counts once its first request is processed
		if ctx.Err() != nil {
			return r, fmt.Errorf("%d nodes connected, want %d", connected(s), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.WaitApplied(ctx, 1); err != nil {
		return r, err
	}
	r.connect = time.Since(start)
	runtime.GC()

	if profilePath != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", profilePath, n))
		if err != nil {
			return r, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
		defer pprof.StopCPUProfile()
	}
	var durs []time.Duration
	var cpu time.Duration
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	edsOnly0 := edsOnlyPushes(reg)
	for i := 0; i < changes; i++ {
		v := uint64(i + 2)
		weight := 10 * (i%9 + 1)
		if changeKind == "endpoints" {
			weight, endpointBase = 0, endpointBase+1
		}
		snap := snapshot(v, weight)
		c0, k0 := cpuTime(), procCPU(cmd.Process.Pid)
		t0 := time.Now()
		if err := s.Apply(snap); err != nil {
			return r, err
		}
		if err := s.WaitApplied(ctx, v); err != nil {
			return r, err
		}
		durs = append(durs, time.Since(t0))
		cpu += cpuTime() - c0
		r.clientCPU += procCPU(cmd.Process.Pid) - k0
		time.Sleep(50 * time.Millisecond) // let stragglers settle between changes
	}
	runtime.ReadMemStats(&ms1)
	if got := edsOnlyPushes(reg) - edsOnly0; changeKind == "endpoints" && got != float64(changes) {
		return r, fmt.Errorf("%v of %d endpoint changes were pushed as EDS alone", got, changes)
	}
	slices.Sort(durs)
	r.median, r.max = durs[len(durs)/2], durs[len(durs)-1]
	r.cpuPerPush = cpu / time.Duration(changes)
	r.clientCPU /= time.Duration(changes)
	r.allocPerPushKB = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(changes) / 1024
	r.heapMiB = float64(ms1.HeapInuse) / (1 << 20)
	r.rssMB = rssMiB()
	return r, nil
}

// procCPU returns the user and system CPU time a process has used (from /proc, in
// clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// edsOnlyPushes reads sluice_xds_eds_only_pushes_total.
func edsOnlyPushes(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == "sluice_xds_eds_only_pushes_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func connected(s *xds.Server) int {
	n := 0
	for _, ns := range s.Nodes() {
		if ns.Connected {
			n++
		}
	}
	return n
}

// runClients starts n simulated Envoys, prints "ready" once every stream is open, and
// runs until stdin closes.
func runClients(addr string, n, perConn int) {
	var conns []*grpc.ClientConn
	var mu sync.Mutex
	var all []*xdstest.Client
	for i := 0; i < n; i++ {
		if i%perConn == 0 {
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				log.Fatal(err)
			}
			conns = append(conns, cc)
		}
		c, err := xdstest.Start(context.Background(), conns[len(conns)-1], xdstest.Options{
			Node: &corev3.Node{Id: fmt.Sprintf("envoy-%05d", i), Cluster: "bench"},
			// The fake Envoys still warm clusters and check routes, but skip re-validating
			// every resource: their CPU is not the control plane's, yet it competes for it.
			Lenient:       true,
			SkimEndpoints: skimEndpoints,
		})
		if err != nil {
			log.Fatal(err)
		}
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range all {
		c.Stop()
	}
	for _, cc := range conns {
		_ = cc.Close()
	}
}

func render(rows []row, changes int) string {
	var b strings.Builder
	var ns []string
	for _, r := range rows {
		ns = append(ns, strconv.Itoa(r.n))
	}
	if changeKind == "endpoints" {
		fmt.Fprintf(&b, "Command: `go run ./bench/xds -change endpoints -endpoints %d -n %s -changes %d`, measured %s.\n\n",
			canarySize, strings.Join(ns, ","), changes, time.Now().UTC().Format("2006-01-02"))
		b.WriteString("N simulated Envoys (as above) hold a canary cluster of ")
		fmt.Fprintf(&b, "%d endpoints. Each change replaces one endpoint\n", canarySize)
		b.WriteString("(one added, one removed, as discovery publishes a replaced pod): time = `Apply` until\n")
		b.WriteString("`WaitApplied` saw every stream ACK the new EDS. Every change was pushed as EDS alone (the bench\n")
		b.WriteString("checks `sluice_xds_eds_only_pushes_total`): CDS, LDS and RDS keep their versions. The budget is a\n")
		b.WriteString("weight change's. The load column is the 1-minute load average when the row started.\n\n")
	} else {
		fmt.Fprintf(&b, "Command: `make bench-xds` (`go run ./bench/xds -n %s -changes %d`), measured %s.\n\n",
			strings.Join(ns, ","), changes, time.Now().UTC().Format("2006-01-02"))
		b.WriteString("N simulated Envoys (ADS streams subscribed to LDS/RDS/CDS/EDS, ACKing like Envoy; in a child\n")
		b.WriteString("process, 100 streams per HTTP/2 connection) on one Sluice. Time = `Apply` of a new canary weight\n")
		b.WriteString("until `WaitApplied` saw every stream ACK the new RDS version (the weight change travels as RDS\n")
		b.WriteString("only). CPU and memory are the control plane process's alone. The machine has 2 cores shared with\n")
		b.WriteString("other work: the load column is the 1-minute load average when the row started.\n\n")
	}
	b.WriteString("| N | median | max | target | CPU per push | CPU per stream | alloc per push | heap in use | RSS | connect + first ACK | load |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		ok := "✓"
		if r.max > r.target {
			ok = "✗"
		}
		fmt.Fprintf(&b, "| %d | %v | %v | ≤ %v %s | %v | %.0f µs | %.0f KiB | %.1f MiB | %.1f MiB | %v | %s |\n",
			r.n, r.median.Round(100*time.Microsecond), r.max.Round(100*time.Microsecond), r.target, ok,
			r.cpuPerPush.Round(100*time.Microsecond), float64(r.cpuPerPush.Microseconds())/float64(r.n),
			r.allocPerPushKB, r.heapMiB, r.rssMB, r.connect.Round(time.Millisecond), r.load)
	}
	if changeKind == "endpoints" {
		return b.String()
	}
	b.WriteString("\nReading it: \"CPU per push\" is the control plane's own cost of one weight change for the\n")
	b.WriteString("whole fleet (one marshalled RouteConfiguration shared by every node, then per node gRPC\n")
	b.WriteString("framing and Sluice's ACK bookkeeping); on an idle machine the latency is close to it, while\n")
	b.WriteString("under load the wall-clock figures grow with the load column (the simulated Envoys compete\n")
	b.WriteString("for the same 2 cores). Only RDS is sent on a weight change: LDS, CDS and EDS keep their\n")
	b.WriteString("versions (checked by xds.TestServerEnvoyFleetWeightChangeIsRDSOnly).\n")
	return b.String()
}
