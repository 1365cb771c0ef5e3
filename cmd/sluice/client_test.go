package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/admin"
	"github.com/sluice-mesh/sluice/analyzer"
)

// cliFake is an admin.Rollouts that records the calls made through the API.
type cliFake struct {
	mu    sync.Mutex
	st    analyzer.RolloutStatus
	calls []string
	err   error
}

func (f *cliFake) List() []analyzer.RolloutStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []analyzer.RolloutStatus{f.st}
}
func (f *cliFake) Get(name string) (analyzer.RolloutStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, name == f.st.Name
}
func (f *cliFake) rec(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return f.err
}
func (f *cliFake) Start(n string) error { return f.rec("start " + n) }
func (f *cliFake) Promote(n string, full bool) error {
	return f.rec(fmt.Sprintf("promote %s full=%v", n, full))
}
func (f *cliFake) Abort(n string) error { return f.rec("abort " + n) }
func (f *cliFake) Retry(n string) error { return f.rec("retry " + n) }

func sampleStatus() analyzer.RolloutStatus {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return analyzer.RolloutStatus{
		Name: "backend-api", Strategy: "canary", Phase: analyzer.PhaseProgressing,
		Step: 2, Steps: 6, SetWeight: 40, ActualWeight: 20,
		StableService: "api-stable", CanaryService: "api-canary",
		Message: "analysis running",
		AnalysisRuns: []analyzer.AnalysisRunStatus{{
			Name: "success-rate", Kind: "inline", Step: 1, Phase: analyzer.MeasurementRunning,
			Metrics: []analyzer.MetricStatus{{
				Name: "error-rate", Provider: "prometheus(embedded)",
				SuccessCondition: "result[0] < 0.01", Phase: analyzer.MeasurementRunning,
				Count: 2, Successful: 1, Failed: 1,
				Measurements: []analyzer.Measurement{
					{Phase: analyzer.MeasurementSuccessful, Value: "[0.004]", Message: "result[0] < 0.01 held", StartedAt: t0, FinishedAt: t0},
					{Phase: analyzer.MeasurementFailed, Value: "[0.052]", Message: "result[0] < 0.01 did not hold: 0.052", StartedAt: t0, FinishedAt: t0},
				},
			}},
		}},
	}
}

func startAdmin(t *testing.T, token string) (*cliFake, string) {
	t.Helper()
	f := &cliFake{st: sampleStatus()}
	s, err := admin.New(admin.Options{Address: "127.0.0.1:0", Token: token, Rollouts: f})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return f, ts.URL
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusShowsEverythingOperatorsAskFor(t *testing.T) {
	_, url := startAdmin(t, "")
	code, out, errs := runCLI("status", "backend-api", "--admin", url)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"backend-api  Progressing  step 2/6",
		" 40% set,  20% applied",
		"api-stable → api-canary",
		"analysis success-rate (inline, step 1): Running",
		"error-rate",
		"latest [0.052]",
		"success when result[0] < 0.01",
		"recent: ✔[0.004] ✘[0.052]",
		"why: result[0] < 0.01 did not hold: 0.052",
		"██████", "▒▒▒▒▒▒", "░",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	// Without a name: every rollout.
	if code, out, _ := runCLI("status", "--admin", url); code != exitOK || !strings.Contains(out, "backend-api  Progressing") {
		t.Fatalf("status (all): %d\n%s", code, out)
	}
	// Unknown rollout: a failed call.
	code, _, errs = runCLI("status", "nope", "--admin", url)
	if code != exitInvalid || !strings.Contains(errs, `no rollout named "nope"`) {
		t.Fatalf("unknown rollout: exit %d, %q", code, errs)
	}
}

func TestWeightBar(t *testing.T) {
	cases := []struct {
		set, act int
		want     string
	}{
		{0, 0, "[░░░░░░░░░░]"},
		{100, 100, "[██████████]"},
		{50, 20, "[██▒▒▒░░░░░]"},
		{0, 30, "[▒▒▒░░░░░░░]"}, // abort not yet applied
		{150, -5, "[▒▒▒▒▒▒▒▒▒▒]"},
	}
	for _, c := range cases {
		if got := weightBar(c.set, c.act, 10); got != c.want {
			t.Errorf("weightBar(%d, %d) = %s, want %s", c.set, c.act, got, c.want)
		}
	}
}

func TestActionCommands(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, url := startAdmin(t, "tok-123")

	// Without the token: refused, exit 1, told what to do.
	code, _, errs := runCLI("promote", "backend-api", "--admin", url)
	if code != exitInvalid || !strings.Contains(errs, "unauthorized") || !strings.Contains(errs, "--token-file") {
		t.Fatalf("no token: exit %d, %q", code, errs)
	}
	cases := [][]string{
		{"start", "backend-api"},
		{"promote", "backend-api"},
		{"promote", "backend-api", "--full"},
		{"promote", "--full", "backend-api"},
		{"abort", "backend-api"},
		{"retry", "backend-api"},
	}
	for _, c := range cases {
		args := append(append([]string{}, c...), "--admin", url, "--token-file", tokFile)
		code, out, errs := runCLI(args...)
		if code != exitOK || !strings.Contains(out, "backend-api") {
			t.Fatalf("%v: exit %d, out %q, err %q", c, code, out, errs)
		}
	}
	want := "start backend-api,promote backend-api full=false,promote backend-api full=true,promote backend-api full=true,abort backend-api,retry backend-api"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls:\n got %s\nwant %s", got, want)
	}
	// Not allowed now: the server's reason, exit 1.
	f.mu.Lock()
	f.err = errors.New("rollout is Healthy: nothing to abort")
	f.mu.Unlock()
	code, _, errs = runCLI("abort", "backend-api", "--admin", url, "--token-file", tokFile)
	if code != exitInvalid || !strings.Contains(errs, "nothing to abort") || !strings.Contains(errs, "409") {
		t.Fatalf("conflict: exit %d, %q", code, errs)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"promote"},
		{"abort", "a", "b"},
		{"status", "a", "b"},
		{"retry", "--bogus", "x"},
		{"start", "x", "--token-file"},
	} {
		if code, _, _ := runCLI(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	code, out, _ := runCLI("promote", "--help")
	if code != exitOK || !strings.Contains(out, "--full") || !strings.Contains(out, "SLUICE_ADMIN") {
		t.Errorf("promote --help: %d\n%s", code, out)
	}
	code, _, errs := runCLI("abort", "x", "--token-file", filepath.Join(t.TempDir(), "missing"))
	if code != exitUsage || !strings.Contains(errs, "missing") {
		t.Errorf("missing token file: %d %q", code, errs)
	}
}

func TestConnectionRefusedSaysWhatToDo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, errs := runCLI("status", "--admin", addr)
	if code != exitInvalid || !strings.Contains(errs, "is `sluice serve` running at "+addr+"?") {
		t.Fatalf("exit %d, %q", code, errs)
	}
	t.Setenv("SLUICE_ADMIN", addr)
	code, _, errs = runCLI("abort", "x")
	if code != exitInvalid || !strings.Contains(errs, addr) {
		t.Fatalf("SLUICE_ADMIN not used: exit %d, %q", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStatusWatchRedrawsOnChange(t *testing.T) {
	f := &cliFake{st: sampleStatus()}
	srv, err := admin.New(admin.Options{Address: "127.0.0.1:0", Rollouts: f})
	if err != nil {
		t.Fatal(err)
	}
	var polls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(w, r)
		polls.Add(1)
	}))
	defer ts.Close()
	ac, err := (&clientFlags{admin: ts.URL}).client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- watchStatus(ctx, ac, "backend-api", 10*time.Millisecond, &out, false) }()
	waitFor := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("first frame", func(s string) bool { return strings.Contains(s, "step 2/6") })
	// Unchanged status: no new frame after several more polls.
	after := polls.Load() + 5
	waitFor("five more polls", func(string) bool { return polls.Load() >= after })
	if n := strings.Count(out.String(), "sluice status --watch"); n != 1 {
		t.Fatalf("%d frames for an unchanged status", n)
	}
	f.mu.Lock()
	f.st.Step, f.st.SetWeight, f.st.ActualWeight = 3, 60, 60
	f.mu.Unlock()
	waitFor("second frame", func(s string) bool { return strings.Contains(s, "step 3/6") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "sluice status --watch"); n != 2 {
		t.Fatalf("%d frames, want 2", n)
	}
}
