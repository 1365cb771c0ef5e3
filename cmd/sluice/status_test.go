package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
)

// TestStatusShowsWhyAndWhatCameBefore: the text status shows the step list with the
// current step, each cluster's healthy endpoints per data plane, why the step waits and
// until when, the last refused reload, the commands valid now, recent events and the
// earlier releases with their measurements — every time in local time with its zone.
func TestStatusShowsWhyAndWhatCameBefore(t *testing.T) {
	// The operator's zone: times arrive in UTC and are shown in it, named.
	// A fixed noon: a deadline minutes away stays on the same day (the CLI adds the date otherwise).
	now := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	ago := func(d time.Duration) time.Time { return now.Add(-d).UTC() } // the API sends UTC
	deadline := now.Add(9 * time.Minute).UTC()
	st := analyzer.RolloutStatus{
		Name: "web", Strategy: "canary", Revision: "r2", Phase: analyzer.PhaseProgressing, Step: 1, Steps: 3,
		StableService: "web-a", CanaryService: "web-b", StartedAt: ago(time.Minute),
		Message: "waiting for healthy canary endpoints: 0/1 (router)",
		Waiting: "waiting for healthy canary endpoints: 0/1 (router); the rollout aborts if none is healthy by the deadline", WaitDeadline: &deadline,
		StepList: []analyzer.StepStatus{{Index: 0, Kind: "pause", Text: "pause 10s", State: "done"},
			{Index: 1, Kind: "setWeight", Text: "setWeight 30", State: "current"}, {Index: 2, Kind: "pause", Text: "pause until promoted", State: "pending"}},
		Clusters: []analyzer.ClusterStatus{
			{Name: "web-a", Role: "stable", Planes: analyzer.ClusterHealth{{Plane: "router", Healthy: 1, Total: 1}, {Plane: "xds", Healthy: 1, Total: 1}}},
			{Name: "web-b", Role: "canary", Planes: analyzer.ClusterHealth{{Plane: "router", Healthy: 0, Ejected: 1, Total: 1}, {Plane: "xds", Healthy: 1, Total: 1}},
				Discovery: []analyzer.DiscoveryStatus{{Source: "DNS", Target: "web-b.test:80 (A/AAAA)", Endpoints: 3, Error: "SERVFAIL",
					LastSuccess: ptr(ago(3 * time.Minute)), ErrorSince: ptr(ago(time.Minute))},
					{Source: "Kubernetes", Target: "prod/web-b", Endpoints: 2, Draining: 1, LastSuccess: ptr(ago(10 * time.Second))}}}},
		Actions:     []analyzer.CommandKind{analyzer.CmdPromote, analyzer.CmdPromoteFull, analyzer.CmdAbort},
		ReloadError: &analyzer.ReloadError{Message: "reload refused: the configuration does not validate; the running configuration stays", Diagnostics: []string{"c.yaml:12: spec.endpoints: required"}, At: ago(30 * time.Second)},
		Events:      []analyzer.Event{{Type: analyzer.EventHealthChanged, Message: "canary web-b: 0/1 healthy endpoints in router (was 1/1)", Time: ago(20 * time.Second)}},
		Releases: []analyzer.ReleaseStatus{{Revision: "r1", StableService: "web-a", CanaryService: "web-b", Outcome: analyzer.OutcomeAborted,
			Reason: "aborted: analysis health Failed: metric \"errors\" assessed Failed", Step: 2, StartedAt: ago(10 * time.Minute), EndedAt: ago(2 * time.Minute),
			AnalysisRuns: []analyzer.AnalysisRunStatus{{Name: "health", Kind: "inline", Phase: analyzer.MeasurementFailed, Metrics: []analyzer.MetricStatus{{
				Name: "errors", Phase: analyzer.MeasurementFailed, Measurements: []analyzer.Measurement{
					{Phase: analyzer.MeasurementSuccessful, Value: "[0.004]"}, {Phase: analyzer.MeasurementFailed, Value: "[0.06]"}}}}}}}},
	}
	var b bytes.Buffer
	renderStatus(&b, st, now)
	out := b.String()
	loc := func(t time.Time) string { return t.In(now.Location()).Format("15:04:05 MST") }
	for _, want := range []string{
		"web  Progressing  step 1/3  canary  revision r2  started " + loc(st.StartedAt),
		"LAST RELOAD REFUSED at " + loc(st.ReloadError.At) + ": reload refused: the configuration does not validate",
		"      c.yaml:12: spec.endpoints: required",
		"steps: ✔ 0 pause 10s │ ▶ 1 setWeight 30 │ · 2 pause until promoted",
		"healthy endpoints: web-a (stable) 1/1 router 1/1 xds · web-b (canary) 0/1 router (1 ejected) 1/1 xds",
		"endpoints of web-b from DNS: SERVFAIL since " + loc(ago(time.Minute)) + ", serving 3 endpoints from " + loc(ago(3*time.Minute)),
		"endpoints of web-b from Kubernetes: 2 endpoints, listed " + loc(ago(10*time.Second)) + ", 1 draining",
		"waiting for: waiting for healthy canary endpoints: 0/1 (router); the rollout aborts if none is healthy by the deadline (deadline " + loc(deadline) + ", in 9m0s)",
		"you can: promote, promote --full, abort",
		loc(st.Events[0].Time) + "  healthChanged  canary web-b: 0/1 healthy endpoints in router (was 1/1)",
		"r1  ABORTED  " + loc(st.Releases[0].StartedAt) + " → " + loc(st.Releases[0].EndedAt) + "  web-a → web-b, step 2",
		"aborted: analysis health Failed",
		"✘ health/errors: Failed  ✔[0.004] ✘[0.06]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if strings.Count(out, "waiting for healthy canary endpoints") != 1 {
		t.Errorf("the message and the wait repeat each other")
	}
	if strings.Contains(out, "UTC") || !strings.Contains(out, "CEST") {
		t.Errorf("a time in UTC, not local")
	}
	if t.Failed() {
		t.Logf("status:\n%s", out)
	}
}

// TestStatusShowsRefusedReload: a reload that fails validation keeps the running
// configuration, and status shows why, with each problem, until a reload succeeds.
func TestStatusShowsRefusedReload(t *testing.T) {
	listen, _ := freeAddr("")
	good := serveConfig(listen, "127.0.0.1:0", filepath.Join(t.TempDir(), "state"), "{}")
	p := filepath.Join(t.TempDir(), "c.yaml")
	writeConfig(t, p, good)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *runningServer, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, serveOptions{Files: []string{p}, PollEvery: time.Hour,
			Started: func(rs *runningServer) { started <- rs }})
	}()
	var rs *runningServer
	select {
	case rs = <-started:
	case err := <-done:
		t.Fatal(err)
	}
	writeConfig(t, p, strings.Replace(good, "canaryService: s-canary", "canaryService: s-nope", 1))
	if err := rs.Reload(); err == nil {
		t.Fatal("an invalid reload succeeded")
	}
	var st analyzer.RolloutStatus
	waitUntil(t, "the refused reload in status", func() bool {
		st, _ = rs.Controller.Get("svc")
		return st.ReloadError != nil
	})
	if re := st.ReloadError; re.Message != "reload refused: the configuration does not validate; the running configuration stays" ||
		len(re.Diagnostics) != 1 || !strings.Contains(re.Diagnostics[0], `c.yaml:`) || !strings.Contains(re.Diagnostics[0], `"s-nope" names no Cluster`) {
		t.Fatalf("reload error %+v", re)
	}
	if st.CanaryService != "s-canary" {
		t.Fatalf("the running configuration changed: %+v", st)
	}
	writeConfig(t, p, good)
	if err := rs.Reload(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reload error cleared", func() bool {
		st, _ = rs.Controller.Get("svc")
		return st.ReloadError == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }
