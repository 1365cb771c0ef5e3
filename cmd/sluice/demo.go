package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/admin"
	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/demobackend"
)

// demoConfig is the configuration the demo runs, a text/template with ${...} fields.
//
//go:embed demo.yaml
var demoConfig string

// demoRollout is the Rollout in demo.yaml.
const demoRollout = "demo-api"

func init() {
	c := &command{
		name:    "demo",
		usage:   "[--fast] [--admin ADDR] [--rps N]",
		summary: "Watch Sluice abort a bad canary and promote a good one, with nothing else installed (~2 min)",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		var o demoOptions
		fs.BoolVar(&o.Fast, "fast", false, "short pauses and intervals: the whole demo in well under a minute")
		fs.StringVar(&o.Admin, "admin", "127.0.0.1:9900", "admin API and web view address (a free port is used if this one is taken)")
		fs.IntVar(&o.RPS, "rps", 0, "steady load sent through the router, requests per second (default 100, 200 with --fast)")
		fs.StringVar(&o.Dir, "dir", "", "work directory for the config, state and log (default: a new temporary directory, removed at the end)")
		if code, ok := parseFlags(fs, args, stdout); !ok {
			return code
		}
		if fs.NArg() > 0 || o.RPS < 0 {
			fs.Usage()
			return exitUsage
		}
		o.Out = stdout
		o.TTY = isTerminal(stdout)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		res, err := runDemo(ctx, o)
		if err != nil && ctx.Err() != nil {
			fmt.Fprintln(stderr, "sluice demo: interrupted; the backends, the load and Sluice have stopped")
			return exitInvalid
		}
		if err != nil {
			fmt.Fprintf(stderr, "sluice demo: %v\n", err)
			return exitInvalid
		}
		if !res.AsExpected() {
			return exitInvalid
		}
		return exitOK
	}
	register(c)
}

// demoOptions configures runDemo.
type demoOptions struct {
	Fast  bool
	Admin string // preferred admin address; a free port when taken or empty
	RPS   int
	Dir   string // "" : a temporary directory, removed afterwards
	Out   io.Writer
	TTY   bool // redraw a live screen; otherwise print one line per change
	// Started, when set, is called with the admin address once Sluice serves.
	Started func(adminAddr string)
}

// demoTimings are the ${...} fields of demo.yaml that set the pace. A pause is never
// shorter than the analysis window, so the window after a pause holds only traffic
// that the current canary served.
type demoTimings struct {
	Pause, Interval, Window string
	Count                   int
	WindowDur               time.Duration
	MaxP95                  string // seconds
}

func (o demoOptions) timings() demoTimings {
	if o.Fast {
		// The fast mode runs in tests, under the race detector on a busy machine: the
		// latency bound leaves room for that (the backends answer in 25±15 ms).
		return demoTimings{Pause: "5s", Interval: "2s", Window: "5s", Count: 2, WindowDur: 5 * time.Second, MaxP95: "1"}
	}
	return demoTimings{Pause: "20s", Interval: "5s", Window: "20s", Count: 3, WindowDur: 20 * time.Second, MaxP95: "0.5"}
}

// demoOutcome is how one release of the demo ended.
type demoOutcome struct {
	Release  string
	Phase    analyzer.Phase
	Aborted  bool
	Message  string
	Why      []string // the measurements that decided
	Latency  *float64 // abort latency, seconds
	Duration time.Duration
}

// demoResult is both releases' outcomes.
type demoResult struct {
	Outcomes []demoOutcome
}

// AsExpected reports whether the bad canary was aborted and the good one promoted.
func (r demoResult) AsExpected() bool {
	return len(r.Outcomes) == 2 &&
		r.Outcomes[0].Phase == analyzer.PhaseDegraded && r.Outcomes[0].Aborted &&
		r.Outcomes[1].Phase == analyzer.PhaseHealthy && !r.Outcomes[1].Aborted
}

// freeAddr returns want when it can be bound, else a free 127.0.0.1 port.
func freeAddr(want string) (string, error) {
	if want != "" {
		if ln, err := net.Listen("tcp", want); err == nil {
			a := ln.Addr().String()
			ln.Close()
			return a, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	a := ln.Addr().String()
	ln.Close()
	return a, nil
}

// runDemo plays the demo until both releases are decided or ctx ends.
func runDemo(ctx context.Context, o demoOptions) (res demoResult, err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.RPS <= 0 {
		o.RPS = 100
		if o.Fast {
			o.RPS = 200 // short windows need more requests for a clear answer
		}
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return res, err
		}
		// Kept when something went wrong, so that its log can be read.
		defer func() {
			if err == nil && res.AsExpected() {
				os.RemoveAll(d)
			} else if ctx.Err() == nil {
				fmt.Fprintf(o.Out, "The demo's files are kept in %s (config, state, sluice.log).\n", d)
			} else {
				os.RemoveAll(d)
			}
		}()
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	logFile, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	lf := logFlags{format: "console", level: "info"}
	log, err := lf.build(logFile)
	if err != nil {
		return res, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: everything started below has stopped
	defer cancel()

	// The two versions of the service, in-process.
	startBackend := func(name string, errorRate float64) (*demobackend.Backend, string, error) {
		reg := prometheus.NewRegistry()
		b, err := demobackend.New(reg, reg, demobackend.Options{Name: name, ErrorRate: errorRate,
			Latency: 25 * time.Millisecond, Jitter: 15 * time.Millisecond})
		if err != nil {
			return nil, "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Serve(ctx, ln, nil, log.Named(name)); err != nil {
				log.Error("demo backend stopped", zap.String("name", name), zap.Error(err))
			}
		}()
		return b, ln.Addr().String(), nil
	}
	_, stableAddr, err := startBackend("stable", 0)
	if err != nil {
		return res, err
	}
	canary, canaryAddr, err := startBackend("canary", 0.05)
	if err != nil {
		return res, err
	}
	listenAddr, err := freeAddr("")
	if err != nil {
		return res, err
	}
	adminAddr, err := freeAddr(o.Admin)
	if err != nil {
		return res, err
	}
	tm := o.timings()
	var cfg bytes.Buffer
	tpl, err := template.New("demo.yaml").Delims("${", "}").Parse(demoConfig)
	if err != nil {
		return res, err
	}
	if err := tpl.Execute(&cfg, map[string]any{
		"Stable": stableAddr, "Canary": canaryAddr, "Listener": listenAddr, "Admin": adminAddr,
		"StateDir": filepath.Join(dir, "state"), "Pause": tm.Pause, "Interval": tm.Interval,
		"Window": tm.Window, "Count": tm.Count, "MaxP95": tm.MaxP95,
	}); err != nil {
		return res, err
	}
	cfgPath := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return res, err
	}

	// Sluice itself, exactly as `sluice serve -f demo.yaml` runs it.
	started := make(chan *runningServer, 1)
	serveErr := make(chan error, 1)
	var cfgErrs bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- runServe(ctx, serveOptions{Files: []string{cfgPath}, Logger: log, Stderr: &cfgErrs,
			Started: func(rs *runningServer) { started <- rs }})
	}()
	var rs *runningServer
	select {
	case rs = <-started:
	case err := <-serveErr:
		return res, fmt.Errorf("sluice serve: %v\n%s", err, cfgErrs.String())
	case <-ctx.Done():
		return res, ctx.Err()
	}

	var header strings.Builder
	fmt.Fprintf(&header, "Sluice demo — config %s, log %s\n", cfgPath, logFile.Name())
	fmt.Fprintf(&header, "  stable  %s (healthy)\n  canary  %s (returns 5%% errors)\n", stableAddr, canaryAddr)
	fmt.Fprintf(&header, "  router  http://%s  (%d requests/s of steady load)\n", listenAddr, o.RPS)
	fmt.Fprintf(&header, "  web view and API  http://%s   (try: sluice status --watch --admin %s)\n\n", rs.AdminAddr, rs.AdminAddr)
	_, _ = io.WriteString(o.Out, header.String())

	if o.Started != nil {
		o.Started(rs.AdminAddr)
	}
	load := &loadGen{url: "http://" + listenAddr + "/", rps: o.RPS, workers: 16}
	wg.Add(1)
	go func() { defer wg.Done(); load.run(ctx, ctx) }()

	view := &demoView{out: o.Out, tty: o.TTY, load: load, start: time.Now(), header: header.String()}

	// Release 1 starts with the configuration: a canary that fails 5% of its requests.
	view.banner("Release 1: the canary fails 5% of its requests — Sluice should abort it and send everything back to stable")
	out1, err := watchRelease(ctx, rs.Controller, view, "release 1 (bad canary)")
	if err != nil {
		return res, err
	}
	res.Outcomes = append(res.Outcomes, out1)

	// Release 2: the canary is fixed, and an operator starts the next release once the
	// analysis window no longer holds the bad canary's requests.
	canary.SetErrorRate(0)
	view.banner(fmt.Sprintf("The canary is fixed (0%% errors). Every request stays on stable for one analysis window (%s) so that the next analysis sees only the new canary", tm.WindowDur))
	if err := waitFollowing(ctx, rs.Controller, view, tm.WindowDur); err != nil {
		return res, err
	}
	view.banner("Release 2: `sluice start demo-api` — Sluice should promote the healthy canary")
	if err := rs.Controller.Start(demoRollout); err != nil {
		if err2 := rs.Controller.Retry(demoRollout); err2 != nil {
			return res, fmt.Errorf("start release 2: %v (retry: %v)", err, err2)
		}
	}
	out2, err := watchRelease(ctx, rs.Controller, view, "release 2 (good canary)")
	if err != nil {
		return res, err
	}
	res.Outcomes = append(res.Outcomes, out2)
	view.summary(res)
	return res, nil
}

// watchRelease follows the demo rollout until it is Healthy or Degraded.
func watchRelease(ctx context.Context, c admin.Rollouts, v *demoView, label string) (demoOutcome, error) {
	began := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	started := false
	for {
		st, ok := c.Get(demoRollout)
		if !ok {
			return demoOutcome{}, fmt.Errorf("rollout %s not found", demoRollout)
		}
		v.update(st)
		// Wait for this release to be under way before reading its end.
		if st.Phase == analyzer.PhaseProgressing || st.Phase == analyzer.PhasePaused {
			started = true
		}
		if started && (st.Phase == analyzer.PhaseHealthy || st.Phase == analyzer.PhaseDegraded) {
			return demoOutcome{Release: label, Phase: st.Phase, Aborted: st.Aborted, Message: st.Message,
				Why: deciding(st), Latency: st.AbortLatencySeconds, Duration: time.Since(began)}, nil
		}
		select {
		case <-ctx.Done():
			return demoOutcome{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// waitFollowing keeps the view live for d.
func waitFollowing(ctx context.Context, c admin.Rollouts, v *demoView, d time.Duration) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		if st, ok := c.Get(demoRollout); ok {
			v.update(st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// deciding lists, for each analysis run, each metric's last measurement and why.
func deciding(st analyzer.RolloutStatus) []string {
	var out []string
	for _, run := range st.AnalysisRuns {
		for _, m := range run.Metrics {
			if len(m.Measurements) == 0 {
				continue
			}
			last := m.Measurements[len(m.Measurements)-1]
			why := last.Message
			if why == "" {
				why = "success when " + m.SuccessCondition
			}
			out = append(out, fmt.Sprintf("%s (step %d): %s = %s, %s: %s", run.Name, run.Step, m.Name, last.Value, last.Phase, why))
		}
	}
	return out
}

// demoView shows the demo live: a redrawn screen on a terminal, else one line per change.
type demoView struct {
	out    io.Writer
	tty    bool
	load   *loadGen
	start  time.Time
	header string // what the demo runs and where its files are: kept at the top of every redraw

	banners  []string
	events   []string
	last     analyzer.RolloutStatus
	seen     map[string]int // measurements already reported, by run/metric
	lastDraw time.Time
}

func (v *demoView) banner(s string) {
	v.banners = append(v.banners, s)
	v.event("▶ " + s)
}

func (v *demoView) event(s string) {
	line := fmt.Sprintf("%5.1fs  %s", time.Since(v.start).Seconds(), s)
	v.events = append(v.events, line)
	if !v.tty {
		fmt.Fprintln(v.out, line)
	}
}

// update reports what changed since the previous status and redraws.
func (v *demoView) update(st analyzer.RolloutStatus) {
	if v.seen == nil {
		v.seen = map[string]int{}
	}
	p := v.last
	if st.Phase != p.Phase || st.Step != p.Step || st.SetWeight != p.SetWeight || st.ActualWeight != p.ActualWeight {
		v.event(fmt.Sprintf("%s  step %d/%d  canary %s %3d%% (applied %d%%)  %s",
			st.Phase, st.Step, st.Steps, weightBar(st.SetWeight, st.ActualWeight, 20), st.SetWeight, st.ActualWeight, st.Message))
	}
	for _, run := range st.AnalysisRuns {
		for _, m := range run.Metrics {
			key := fmt.Sprintf("%s/%d/%s/%s", run.Name, run.Step, run.Kind, m.Name)
			if st.Revision != "" {
				key = st.Revision + "/" + key
			}
			n := m.Successful + m.Failed + m.Inconclusive + m.Error
			if n > v.seen[key] && len(m.Measurements) > 0 {
				last := m.Measurements[len(m.Measurements)-1]
				cond := m.SuccessCondition
				if cond == "" {
					cond = "fail when " + m.FailureCondition
				} else {
					cond = "pass when " + cond
				}
				v.event(fmt.Sprintf("   %s %-12s %-10s %s  (%s)", phaseMark(last.Phase), m.Name, last.Value, last.Phase, cond))
			}
			v.seen[key] = n
		}
	}
	v.last = st
	if v.tty && time.Since(v.lastDraw) >= 200*time.Millisecond {
		v.draw(st)
	}
}

func (v *demoView) draw(st analyzer.RolloutStatus) {
	v.lastDraw = time.Now()
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	b.WriteString(v.header)
	fmt.Fprintf(&b, "%s   Ctrl-C stops\n", time.Since(v.start).Round(time.Second))
	if n := len(v.banners); n > 0 {
		fmt.Fprintf(&b, "%s\n", v.banners[n-1])
	}
	fmt.Fprintf(&b, "traffic: %d answered by stable, %d by canary, %d errors\n\n",
		v.load.answered("stable"), v.load.answered("canary"), v.load.errs.Load())
	// Only the latest analysis run: the screen must fit a terminal.
	if n := len(st.AnalysisRuns); n > 1 {
		st.AnalysisRuns = st.AnalysisRuns[n-1:]
	}
	renderStatus(&b, st, time.Now())
	b.WriteString("\nWhat happened:\n")
	ev := v.events
	if len(ev) > 12 { // with the header, the screen fits 50 lines
		ev = ev[len(ev)-12:]
	}
	for _, e := range ev {
		b.WriteString(e + "\n")
	}
	_, _ = io.WriteString(v.out, b.String())
}

func (v *demoView) summary(res demoResult) {
	var b strings.Builder
	b.WriteString("\n══ Summary ══\n")
	for _, o := range res.Outcomes {
		verdict := "promoted: the canary now serves 100%"
		if o.Aborted {
			verdict = "aborted and reverted: every request back on stable"
		} else if o.Phase != analyzer.PhaseHealthy {
			verdict = "ended " + string(o.Phase)
		}
		fmt.Fprintf(&b, "%s: %s — %s after %s\n", o.Release, o.Phase, verdict, o.Duration.Round(time.Second))
		if o.Message != "" {
			fmt.Fprintf(&b, "  why: %s\n", o.Message)
		}
		if o.Latency != nil {
			fmt.Fprintf(&b, "  abort applied %.3f s after the failing measurement\n", *o.Latency)
		}
		for _, w := range o.Why {
			fmt.Fprintf(&b, "  %s\n", w)
		}
	}
	fmt.Fprintf(&b, "traffic: %d requests answered by stable, %d by canary, %d errors in total\n",
		v.load.answered("stable"), v.load.answered("canary"), v.load.errs.Load())
	if res.AsExpected() {
		b.WriteString("As expected: the bad canary was aborted, the good one promoted.\n")
	} else {
		b.WriteString("NOT as expected: see the log for details.\n")
	}
	if v.tty {
		v.draw(v.last)
	}
	_, _ = io.WriteString(v.out, b.String())
}
