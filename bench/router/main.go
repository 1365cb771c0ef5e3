// Command router-bench compares Sluice's native router with nginx, HAProxy and a direct
// connection on 127.0.0.1: saturation throughput at 32 keep-alive connections (wrk),
// latency added at a fixed open-loop rate (p50/p99 over direct), and CPU time per request
// of the proxy process (from /proc). Rounds are interleaved and medians reported.
//
//	go run ./bench/router -rounds 5 -readme bench/README.md
//
// Sluice runs as a child process (this binary with -serve-sluice) with a 90/10 split,
// header routes, an internal-traffic marker and metrics on. nginx, HAProxy and wrk are
// installed with apt-get when missing (-install=false to skip); a row that cannot run is
// skipped with a message.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/bench/internal/readme"
	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
)

func main() {
	var (
		rounds     = flag.Int("rounds", 5, "interleaved rounds")
		satDur     = flag.Duration("sat", 4*time.Second, "saturation run per target and round")
		conns      = flag.Int("c", 32, "keep-alive connections for the saturation run")
		rate       = flag.Int("rate", 300, "open-loop request rate for the latency run (well below saturation)")
		latDur     = flag.Duration("lat", 3*time.Second, "latency run per target and round")
		readmePath = flag.String("readme", "", "write the table into this README's router section")
		install    = flag.Bool("install", true, "apt-get install nginx-light, haproxy and wrk when missing")
		serve      = flag.Bool("serve-sluice", false, "internal: run the Sluice router (child process)")
		listen     = flag.String("listen", "", "internal: router listen address")
		stable     = flag.String("stable", "", "internal: stable backend")
		canary     = flag.String("canary", "", "internal: canary backend")
		metricsAt  = flag.String("metrics", "", "internal: metrics address")
		cpuProf    = flag.String("cpuprofile", "", "internal: write the Sluice child's CPU profile here")
		noFast     = flag.Bool("no-fast-path", false, "internal: run the Sluice child with the net/http path only")
		slowRow    = flag.Bool("nethttp-row", true, "also measure Sluice with its fast path off (net/http + ReverseProxy)")
	)
	flag.Parse()
	if *serve {
		if *cpuProf != "" {
			f, err := os.Create(*cpuProf)
			if err == nil {
				pprof.StartCPUProfile(f)
				defer pprof.StopCPUProfile()
			}
		}
		if err := serveSluice(*listen, *stable, *canary, *metricsAt, *noFast); err != nil {
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		return
	}
	cfg := benchConfig{rounds: *rounds, satDur: *satDur, conns: *conns, rate: *rate, latDur: *latDur, install: *install, netHTTPRow: *slowRow}
	table, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router-bench:", err)
		os.Exit(1)
	}
	fmt.Println(table)
	if *readmePath != "" {
		if err := readme.WriteSection(*readmePath, "router", table); err != nil {
			fmt.Fprintln(os.Stderr, "router-bench:", err)
			os.Exit(1)
		}
		fmt.Println("written to", *readmePath)
	}
}

// serveSluice runs the router the way a user would for a canary at 10%: a 90/10 split,
// two header routes, an internal-traffic marker, and /metrics served.
func serveSluice(listen, stable, canary, metricsAddr string, noFast bool) error {
	reg := prometheus.NewRegistry()
	r, err := router.New(router.Options{Logger: zap.NewNop(), Registerer: reg, DisableFastPath: noFast})
	if err != nil {
		return err
	}
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Protocol: model.ProtocolHTTP1, Endpoints: []model.Endpoint{{Address: canary, Weight: 1}}},
			{Name: "stable", Protocol: model.ProtocolHTTP1, Endpoints: []model.Endpoint{{Address: stable, Weight: 1}}},
		},
		Listeners: []model.Listener{{Name: "bench", Address: listen,
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable", Rollout: "bench",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 90}, {Cluster: "canary", Weight: 10}},
				HeaderRoutes: []model.HeaderRoute{
					{Name: "beta", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-user", Value: model.StringMatch{Prefix: "beta-"}}}},
					{Name: "canary-cookie", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "cookie", Value: model.StringMatch{Regex: `.*\bcanary=yes\b.*`}}}},
				},
				InternalCluster: "canary",
			}},
		}},
	}
	if err := r.Apply(s); err != nil {
		return err
	}
	msrv := &http.Server{Addr: metricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go msrv.ListenAndServe()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msrv.Close()
	return r.Shutdown(ctx)
}

type benchConfig struct {
	rounds  int
	satDur  time.Duration
	conns   int
	rate    int
	latDur  time.Duration
	install bool
	// netHTTPRow adds Sluice with the fast path off.
	netHTTPRow bool
}

// target is one row: a URL to load and, for proxies, the process tree whose CPU is counted.
type target struct {
	name    string
	url     string
	pid     int // 0: direct (no proxy process)
	stop    func()
	rps     []float64
	cpu     []float64 // µs per request
	p50     []float64 // ms
	p99     []float64
	skipped string
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startBackend() (string, func()) {
	body := bytes.Repeat([]byte("x"), 128)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }
}

func ensure(install bool, pkg string, names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(dir, n); fileExists(p) {
				return p, nil
			}
		}
	}
	if !install {
		return "", fmt.Errorf("%s not installed (apt-get install %s)", names[0], pkg)
	}
	fmt.Fprintf(os.Stderr, "installing %s with apt-get...\n", pkg)
	cmd := exec.Command("apt-get", "install", "-y", "-q", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install %s: %v: %s", pkg, err, lastLine(out))
	}
	return ensure(false, pkg, names...)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s", addr)
}

func startProcess(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, cmd.Start()
}

func stopProcess(cmd *exec.Cmd) func() {
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func startSluice(stable, canary string, noFast bool) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	listen := freePort()
	args := []string{"-serve-sluice", "-listen", listen, "-stable", stable, "-canary", canary, "-metrics", freePort()}
	name := "sluice (90/10, headers, metrics)"
	if noFast {
		args = append(args, "-no-fast-path")
		name = "sluice, fast path off (net/http)"
	}
	cmd, err := startProcess(self, args...)
	if err != nil {
		return nil, err
	}
	if err := waitListening(listen); err != nil {
		stopProcess(cmd)()
		return nil, err
	}
	return &target{name: name, url: "http://" + listen + "/", pid: cmd.Process.Pid, stop: stopProcess(cmd)}, nil
}

func startNginx(install bool, stable, canary string) (*target, error) {
	bin, err := ensure(install, "nginx-light", "nginx")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "router-bench-nginx")
	if err != nil {
		return nil, err
	}
	listen := freePort()
	conf := fmt.Sprintf(`worker_processes 2;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
  upstream stable { server %[2]s; keepalive 256; }
  upstream canary { server %[3]s; keepalive 256; }
  upstream split  { server %[2]s weight=9; server %[3]s weight=1; keepalive 256; }
  map $http_x_user $pool { default split; ~^beta- canary; }
  server {
    listen %[4]s;
    keepalive_requests 100000;
    location / {
      proxy_pass http://$pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, stable, canary, listen)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startProcess(bin, "-c", cf, "-p", dir)
	if err != nil {
		return nil, err
	}
	if err := waitListening(listen); err != nil {
		stopProcess(cmd)()
		return nil, err
	}
	stop := stopProcess(cmd)
	return &target{name: "nginx", url: "http://" + listen + "/", pid: cmd.Process.Pid, stop: func() { stop(); os.RemoveAll(dir) }}, nil
}

func startHAProxy(install bool, stable, canary string) (*target, error) {
	bin, err := ensure(install, "haproxy", "haproxy")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "router-bench-haproxy")
	if err != nil {
		return nil, err
	}
	listen := freePort()
	conf := fmt.Sprintf(`global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind %[3]s
  option forwardfor
  use_backend canary if { req.hdr(x-user) -m beg beta- }
  default_backend split
backend split
  balance roundrobin
  server stable %[1]s weight 90
  server canary %[2]s weight 10
backend canary
  server canary %[2]s
`, stable, canary, listen)
	cf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startProcess(bin, "-db", "-f", cf)
	if err != nil {
		return nil, err
	}
	if err := waitListening(listen); err != nil {
		stopProcess(cmd)()
		return nil, err
	}
	stop := stopProcess(cmd)
	return &target{name: "HAProxy", url: "http://" + listen + "/", pid: cmd.Process.Pid, stop: func() { stop(); os.RemoveAll(dir) }}, nil
}

// cpuTicks sums utime+stime of pid and its descendants (nginx workers), in clock ticks.
func cpuTicks(pid int) int64 {
	var total int64
	var walk func(int)
	walk = func(p int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + st
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, k := range strings.Fields(string(kids)) {
			if c, err := strconv.Atoi(k); err == nil {
				walk(c)
			}
		}
	}
	walk(pid)
	return total
}

const clkTck = 100 // getconf CLK_TCK on Linux

var (
	reqsRe = regexp.MustCompile(`(\d+) requests in`)
	rpsRe  = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	errRe  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)`)
)

// saturate runs wrk against t and returns rps and CPU µs per request of t's process.
func saturate(wrk string, t *target, d time.Duration, conns int) (float64, float64, error) {
	var before int64
	if t.pid != 0 {
		before = cpuTicks(t.pid)
	}
	out, err := exec.Command(wrk, "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), t.url).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	var after int64
	if t.pid != 0 {
		after = cpuTicks(t.pid)
	}
	if m := errRe.FindSubmatch(out); m != nil {
		return 0, 0, fmt.Errorf("wrk saw errors against %s: %s", t.name, m[0])
	}
	m := reqsRe.FindSubmatch(out)
	r := rpsRe.FindSubmatch(out)
	if m == nil || r == nil {
		return 0, 0, fmt.Errorf("cannot parse wrk output: %s", out)
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64)
	rps, _ := strconv.ParseFloat(string(r[1]), 64)
	cpu := float64(after-before) * (1e6 / clkTck) / n
	return rps, cpu, nil
}

// openLoop sends requests at a fixed rate regardless of how fast answers come (latency
// is measured from each request's scheduled time, so queueing is not hidden) and returns
// p50 and p99 in milliseconds.
func openLoop(url string, rate int, d time.Duration) (float64, float64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	n := int(d.Seconds() * float64(rate))
	lat := make([]float64, n)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			resp, err := client.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			lat[i] = float64(time.Since(at)) / 1e6
		}(i, at)
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	sort.Float64s(lat)
	return lat[n/2], lat[n*99/100], nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func run(cfg benchConfig) (string, error) {
	wrk, err := ensure(cfg.install, "wrk", "wrk")
	if err != nil {
		return "", fmt.Errorf("no load generator: %v", err)
	}
	stable, stopS := startBackend()
	defer stopS()
	canary, stopC := startBackend()
	defer stopC()
	targets := []*target{{name: "direct (no proxy)", url: "http://" + stable + "/"}}
	var skipped []string
	starts := []func() (*target, error){
		func() (*target, error) { return startNginx(cfg.install, stable, canary) },
		func() (*target, error) { return startHAProxy(cfg.install, stable, canary) },
		func() (*target, error) { return startSluice(stable, canary, false) },
	}
	if cfg.netHTTPRow {
		starts = append(starts, func() (*target, error) { return startSluice(stable, canary, true) })
	}
	for _, start := range starts {
		t, err := start()
		if err != nil {
			skipped = append(skipped, err.Error())
			fmt.Fprintln(os.Stderr, "SKIPPED:", err)
			continue
		}
		defer t.stop()
		targets = append(targets, t)
	}
	for round := 1; round <= cfg.rounds; round++ {
		// Rotate the order each round so no target always runs first or last.
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			rps, cpu, err := saturate(wrk, t, cfg.satDur, cfg.conns)
			if err != nil {
				return "", err
			}
			p50, p99, err := openLoop(t.url, cfg.rate, cfg.latDur)
			if err != nil {
				return "", fmt.Errorf("%s latency run: %v", t.name, err)
			}
			t.rps, t.cpu, t.p50, t.p99 = append(t.rps, rps), append(t.cpu, cpu), append(t.p50, p50), append(t.p99, p99)
			fmt.Fprintf(os.Stderr, "round %d %-36s %8.0f rps  %6.1f µs/req  p50 %.3f ms  p99 %.3f ms\n", round, t.name, rps, cpu, p50, p99)
		}
	}
	return render(cfg, targets, skipped), nil
}

func render(cfg benchConfig, targets []*target, skipped []string) string {
	var nginx *target
	for _, t := range targets {
		if t.name == "nginx" {
			nginx = t
		}
	}
	direct := targets[0]
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s, `make bench-router` (= `go run ./bench/router -rounds %d -readme bench/README.md`): %d interleaved rounds, medians.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cfg.rounds, cfg.rounds)
	fmt.Fprintf(&b, "Saturation: wrk -t2 -c%d, %v per run. Latency: open loop at %d rps for %v, measured from each request's scheduled time, added over direct. CPU: utime+stime of the proxy process tree from /proc per request during the saturation run.\n\n",
		cfg.conns, cfg.satDur, cfg.rate, cfg.latDur)
	b.WriteString("| target | rps | rps / nginx | CPU µs/req | CPU / nginx | p50 added ms | p99 added ms |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		rps, cpu := median(t.rps), median(t.cpu)
		rr, cr := "", ""
		if nginx != nil && t != direct {
			rr = fmt.Sprintf("%.2f×", rps/median(nginx.rps))
			cr = fmt.Sprintf("%.2f×", cpu/median(nginx.cpu))
		}
		cpuS := "–"
		if t != direct {
			cpuS = fmt.Sprintf("%.1f", cpu)
		}
		p50, p99 := "–", "–"
		if t != direct {
			p50 = fmt.Sprintf("%+.3f", median(t.p50)-median(direct.p50))
			p99 = fmt.Sprintf("%+.3f", median(t.p99)-median(direct.p99))
		} else {
			p50 = fmt.Sprintf("(%.3f)", median(t.p50))
			p99 = fmt.Sprintf("(%.3f)", median(t.p99))
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s |\n", t.name, rps, rr, cpuS, cr, p50, p99)
	}
	for _, s := range skipped {
		fmt.Fprintf(&b, "\nSKIPPED: %s\n", s)
	}
	return b.String()
}
