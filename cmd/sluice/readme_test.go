package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	pmodel "github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/statedir"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// readmeSection returns README.md's section under the heading line "## title", up to the
// next "## " heading.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", title)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	return s
}

// tableRows returns the cells of every table row in text (header and separator rows too).
func tableRows(text string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
			continue
		}
		cells := strings.Split(line[1:len(line)-1], "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// codeSpans returns the Markdown code spans of cell: a run of N backticks up to the next
// run of exactly N, so that a span opened by two backticks may hold single ones.
func codeSpans(cell string) []string {
	var out []string
	run := func(i int) int { // length of the backtick run at i
		n := 0
		for i+n < len(cell) && cell[i+n] == '`' {
			n++
		}
		return n
	}
	for i := 0; i < len(cell); {
		n := run(i)
		if n == 0 {
			i++
			continue
		}
		for j := i + n; j < len(cell); {
			m := run(j)
			if m == 0 {
				j++
				continue
			}
			if m == n {
				out = append(out, strings.TrimSpace(cell[i+n:j]))
				i = j
				break
			}
			j += m
		}
		i += n
	}
	return out
}

// quotedPattern turns a message quoted in the README into a regular expression: … stands
// for any text, FILE:LINE for a file position.
func quotedPattern(q string) *regexp.Regexp {
	re := regexp.QuoteMeta(q)
	re = strings.ReplaceAll(re, "FILE:LINE", `\S+:\d+`)
	re = strings.ReplaceAll(re, "…", `.+?`)
	return regexp.MustCompile(re)
}

// troubleshootingMessages produces, by running the code that prints them, every message
// the README's troubleshooting table quotes.
func troubleshootingMessages(t *testing.T) []string {
	t.Helper()
	var msgs []string
	add := func(text string) {
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				msgs = append(msgs, line)
			}
		}
	}
	dir := t.TempDir()

	// Configuration diagnostics, as `sluice validate` prints them.
	bad := filepath.Join(dir, "bad.yaml")
	writeConfig(t, bad, `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: a}
spec:
  endpoints: [{address: 127.0.0.1:1}]
  healthChek: {path: /x}
---
apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: 0.0.0.0:9900}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: r}
spec:
  strategy:
    canary:
      stableService: a
      canaryService: nope
      steps:
      - setWeight: 10
      - analysis: {templates: [{templateName: t}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: m
    interval: 10s
    provider: {prometheus: {query: "sum(http_requests_total)"}}
`)
	_, out, _ := runCLI("validate", "-f", bad)
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "no Listener route") { // a warning the table does not list
			add(line)
		}
	}

	// With xDS, a built-in query of a Cluster only xDS clients reach, and sticky sessions.
	xdsOnly := filepath.Join(dir, "xds-only.yaml")
	withXDS := strings.Replace(serveConfig("127.0.0.1:8080", "127.0.0.1:9900", filepath.Join(dir, "s"), "{}"),
		"  stateDir:", "  xds: {address: 127.0.0.1:18000}\n  stateDir:", 1)
	withXDS = strings.Replace(withXDS, "routes: [{hosts: [\"*\"], pathPrefix: /, cluster: s-stable}]",
		"routes: [{hosts: [\"*\"], pathPrefix: /, cluster: s-stable}]\n  stickySessions: {}", 1)
	writeConfig(t, xdsOnly, withXDS+`---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: grpc-only}
spec:
  endpoints: [{address: 127.0.0.1:3}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: r2}
spec:
  strategy:
    canary:
      stableService: s-canary
      canaryService: grpc-only
      steps:
      - analysis: {templates: [{templateName: grpc}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: grpc}
spec:
  metrics:
  - name: errors
    successCondition: result[0] < 0.01
    provider: {prometheus: {query: 'sum(rate(http_errors_total{cluster="grpc-only"}[1m]))'}}
`)
	_, out, _ = runCLI("validate", "-f", xdsOnly)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "built-in store") || strings.Contains(line, "sticky sessions") {
			add(line)
		}
	}

	// What status shows of a canary that never turns healthy, and of low traffic.
	ten := 10
	r := &model.Rollout{Name: "r", Revision: "1", Strategy: model.StrategyCanary, ProgressDeadline: time.Minute,
		Canary: &model.CanaryStrategy{StableService: "a", CanaryService: "b", Steps: []model.Step{{SetWeight: &ten}}}}
	health := map[string]analyzer.ClusterHealth{"b": {{Plane: "router", Healthy: 0, Total: 1}}}
	now := time.Now()
	st := analyzer.NewState(r, nil, now)
	st, _ = analyzer.Step(r, st, now, analyzer.Inputs{Health: health, Applied: []analyzer.Applied{{Gen: st.Gen, At: now}}})
	add(st.Message)
	st, _ = analyzer.Step(r, st, now.Add(time.Minute), analyzer.Inputs{Health: health})
	add(st.Message)
	ms := (&analyzer.ProviderMeasurer{Embedded: noSeries{}}).Measure(context.Background(), analyzer.MeasureRequest{
		Rollout: r, Stable: "a", Canary: "b", Kind: analyzer.KindInline, MinRequests: 50, Now: now,
		Metric: model.Metric{Name: "m", Provider: model.Provider{Prometheus: &model.PrometheusProvider{Query: "sum(rate(http_requests_total[1m]))"}}}})
	add(ms.Message)

	// `sluice serve` that cannot start: taken addresses, a stateDir in use.
	serveFails := func(cfg string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "c.yaml")
		writeConfig(t, p, cfg)
		code, _, errs := runCLI("serve", "-f", p)
		if code == exitOK {
			t.Fatalf("serve started with %s", cfg)
		}
		var out []string // the reason, without the log lines before it
		for _, line := range strings.Split(errs, "\n") {
			if strings.HasPrefix(line, "sluice serve: ") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n")
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().String()
	free := func() string { a, _ := freeAddr(""); return a }
	add(serveFails(serveConfig(taken, free(), filepath.Join(t.TempDir(), "s"), "{}")))
	add(serveFails(serveConfig(free(), taken, filepath.Join(t.TempDir(), "s"), "{}")))
	add(serveFails(strings.Replace(serveConfig(free(), free(), filepath.Join(t.TempDir(), "s"), "{}"),
		"  stateDir:", "  xds: {address: "+taken+"}\n  stateDir:", 1)))
	busy := filepath.Join(t.TempDir(), "s")
	lock, err := statedir.Acquire(busy)
	if err != nil {
		t.Fatal(err)
	}
	add(serveFails(serveConfig(free(), free(), busy, "{}")))
	_ = lock.Release()

	// The CLI and the admin API.
	closedAddr := free()
	_, _, errs := runCLI("status", "--admin", closedAddr)
	add(errs)
	_, url := startAdmin(t, "secret")
	_, _, errs = runCLI("promote", "backend-api", "--admin", url)
	add(errs)
	f, url := startAdmin(t, "")
	for _, e := range []error{analyzer.ErrIsAborted, analyzer.ErrInProgress, analyzer.ErrNotAborted, analyzer.ErrIsCompleted,
		&analyzer.ReplicationError{Rollout: "backend-api", Err: ha.ErrNoOutcome}} {
		f.err = e
		_, _, errs = runCLI("promote", "backend-api", "--admin", url)
		add(errs)
	}

	// A reload of an invalid file, in the log.
	core, logs := observer.New(zap.InfoLevel)
	rl := &reloader{files: []string{bad}, log: zap.New(core)}
	if err := rl.reload(); err == nil {
		t.Fatal("reload of an invalid file succeeded")
	}
	for _, e := range logs.All() {
		add(e.Message)
	}

	// What status says of a discovered cluster in trouble.
	for _, m := range discoveryMessages(t) {
		add(m)
	}
	// Several replicas on etcd (readme_ha_test.go).
	return append(msgs, haTroubleshootingMessages(t)...)
}

// noSeries is a built-in store that holds no series yet.
type noSeries struct{}

func (noSeries) Query(context.Context, string, time.Time) (pmodel.Value, error) {
	return pmodel.Vector{}, nil
}

// TestTroubleshootingQuotesRealMessages: every message the troubleshooting table quotes is
// one the code prints, and every message the code prints for those situations is quoted.
func TestTroubleshootingQuotesRealMessages(t *testing.T) {
	var patterns []string
	for _, row := range tableRows(readmeSection(t, "Troubleshooting")) {
		if len(row) < 2 || !strings.HasPrefix(row[0], "`") || !strings.HasSuffix(row[0], "`") {
			continue // header, separator, or a row that describes rather than quotes
		}
		patterns = append(patterns, codeSpans(row[0])[0])
	}
	if len(patterns) < 10 {
		t.Fatalf("only %d quoted messages in the troubleshooting table: %q", len(patterns), patterns)
	}
	msgs := troubleshootingMessages(t)
	matched := make([]bool, len(patterns))
	for _, m := range msgs {
		found := false
		for i, p := range patterns {
			if quotedPattern(p).MatchString(m) {
				matched[i], found = true, true
			}
		}
		if !found {
			t.Errorf("the code prints a message the troubleshooting table does not quote:\n  %s", m)
		}
	}
	for i, p := range patterns {
		if !matched[i] {
			t.Errorf("the troubleshooting table quotes a message the code does not print:\n  %s", p)
		}
	}
	if t.Failed() {
		t.Logf("messages printed:\n  %s", strings.Join(msgs, "\n  "))
	}
}

// metricsConfig: a Listener whose only route is /api (so / is unmatched) and whose
// internal marker is trusted only from 10.0.0.0/8 (so one from 127.0.0.1 is spoofed), a
// rollout that pauses at 30% for a person, and xDS when xdsAddr is set.
func metricsConfig(listen, stateDir, xdsAddr string) string {
	cfg := serveConfig(listen, "127.0.0.1:0", stateDir, "{}")
	cfg = strings.Replace(cfg, "routes: [{hosts: [\"*\"], pathPrefix: /, cluster: s-stable}]",
		"routes: [{hosts: [\"*\"], pathPrefix: /api, cluster: s-stable}]\n"+
			"  internalTraffic: {headers: [{name: x-internal-test, value: \"true\"}], trustedSources: [10.0.0.0/8]}", 1)
	if xdsAddr != "" {
		cfg = strings.Replace(cfg, "  stateDir:", "  xds: {address: "+xdsAddr+"}\n  stateDir:", 1)
	}
	return cfg
}

// families returns the metric family names registered in rs's registry that have at
// least one series.
func families(t *testing.T, rs *runningServer) map[string]bool {
	t.Helper()
	mfs, err := rs.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) > 0 {
			out[mf.GetName()] = true
		}
	}
	return out
}

// serveFor runs runServe with cfg until the test ends; fn gets the running server.
func serveFor(t *testing.T, cfg string, fn func(*runningServer)) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	writeConfig(t, p, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *runningServer, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, serveOptions{Files: []string{p}, Started: func(rs *runningServer) { started <- rs }})
	}()
	select {
	case rs := <-started:
		fn(rs)
	case err := <-done:
		cancel()
		t.Fatalf("runServe: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMetricsReferenceSaysWhenEachSeriesAppears reads the README's metrics table against
// a freshly started Sluice: "start" series are there at once, "first use" ones are not
// until their first use (shown after a restart that restores a paused rollout), "xDS"
// ones only with an xDS server; and every series Sluice registers is in the table.
func TestMetricsReferenceSaysWhenEachSeriesAppears(t *testing.T) {
	when := map[string]string{}
	for _, row := range tableRows(readmeSection(t, "Metrics reference")) {
		if len(row) < 4 || !strings.HasPrefix(row[0], "`") {
			continue
		}
		for _, name := range codeSpans(row[0]) {
			when[name] = row[len(row)-1]
		}
	}
	if len(when) < 20 {
		t.Fatalf("only %d metrics in the README's table", len(when))
	}
	seen := map[string]bool{}
	check := func(stage string, got map[string]bool, want func(when string) (present, absent bool)) {
		t.Helper()
		for name := range got {
			seen[name] = true
		}
		for name, w := range when {
			mustHave, mustLack := want(w)
			if mustHave && !got[name] {
				t.Errorf("%s: %s (appears: %s) is missing", stage, name, w)
			}
			if mustLack && got[name] {
				t.Errorf("%s: %s (appears: %s) is already there", stage, name, w)
			}
		}
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	listen, _ := freeAddr("")
	waitPaused := func(rs *runningServer) {
		waitUntil(t, "the rollout paused at 30%", func() bool {
			st, ok := rs.Controller.Get("svc")
			return ok && st.Phase == analyzer.PhasePaused && st.ActualWeight == 30
		})
	}
	serveFor(t, metricsConfig(listen, stateDir, ""), waitPaused)

	// Restarted on the same state: the paused rollout is restored, nothing has happened.
	serveFor(t, metricsConfig(listen, stateDir, ""), func(rs *runningServer) {
		// The rollout's gauges are set by the controller's first tick.
		waitUntil(t, "the first tick", func() bool { return families(t, rs)["sluice_rollout_phase"] })
		check("restarted, nothing happened yet", families(t, rs), func(w string) (bool, bool) {
			return w == "start", w != "start"
		})
		// First uses: an unmatched request, a marker from an untrusted source, an event.
		for _, path := range []string{"/", "/api"} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+listen+path, nil)
			req.Header.Set("x-internal-test", "true")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		if err := rs.Controller.Promote("svc", true); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the promotion's events counted", func() bool { return families(t, rs)["sluice_rollout_events_total"] })
		got := families(t, rs)
		for _, name := range []string{"sluice_router_unmatched_requests_total", "sluice_router_spoofed_marker_total"} {
			if !got[name] {
				t.Errorf("after its first use, %s is still missing", name)
			}
		}
		check("after first uses", got, func(w string) (bool, bool) { return w == "start", w == "xDS" })
	})

	xdsAddr, _ := freeAddr("")
	serveFor(t, metricsConfig(listen, filepath.Join(t.TempDir(), "state"), xdsAddr), func(rs *runningServer) {
		check("with xDS", families(t, rs), func(w string) (bool, bool) { return w == "xDS", w == "discovery" })
	})

	// A Cluster discovered through DNS, resolved at start.
	dnsAddr := fakeDNS(t, func(m *dns.Msg) {
		if m.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(m.Question[0].Name + " 5 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
	})
	discovered := strings.Replace(metricsConfig(listen, filepath.Join(t.TempDir(), "state"), ""),
		"  stateDir:", "  dns: {servers: ["+dnsAddr+"]}\n  stateDir:", 1) + `---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: discovered}
spec:
  dns: {name: api.test, port: 8080}
`
	serveFor(t, discovered, func(rs *runningServer) {
		check("with discovery", families(t, rs), func(w string) (bool, bool) { return w == "discovery", w == "xDS" })
	})

	// With store.etcd (readme_ha_test.go): the sluice_ha_* series, from the start.
	t.Run("store.etcd", func(t *testing.T) {
		etcd := testenv.StartEtcd(t)
		serveFor(t, withEtcd(metricsConfig(listen, filepath.Join(t.TempDir(), "state"), ""), etcd.Endpoints()), func(rs *runningServer) {
			waitUntil(t, "the first tick", func() bool { return families(t, rs)["sluice_rollout_phase"] })
			check("with store.etcd", families(t, rs), func(w string) (bool, bool) { return w == "start" || w == "etcd", w == "xDS" })
		})
	})

	var undocumented []string
	for name := range seen {
		if _, ok := when[name]; !ok {
			undocumented = append(undocumented, name)
		}
	}
	sort.Strings(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("series Sluice registers that the README's metrics table lacks: %v", undocumented)
	}
}
