package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
)

// TestDemoFast plays the whole demo in fast mode: the bad canary must be aborted
// (Degraded) and the good one promoted (Healthy).
func TestDemoFast(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo (~30 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out syncBuffer
	// While the first rollout runs, open the web view in headless Chromium (when
	// installed) and check what it renders.
	web := make(chan func(*testing.T), 1)
	started := func(addr string) {
		go func() { web <- checkWebViewDuringDemo(addr) }()
	}
	res, err := runDemo(ctx, demoOptions{Fast: true, Dir: t.TempDir(), Out: &out, Started: started})
	t.Run("WebViewInChromium", func(t *testing.T) {
		select {
		case check := <-web:
			check(t)
		case <-time.After(60 * time.Second):
			t.Fatal("the web view check did not finish")
		}
	})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outcomes) != 2 {
		t.Fatalf("outcomes: %+v", res.Outcomes)
	}
	if o := res.Outcomes[0]; o.Phase != analyzer.PhaseDegraded || !o.Aborted {
		t.Errorf("release 1 (bad canary): %+v, want Degraded and aborted", o)
	}
	if o := res.Outcomes[1]; o.Phase != analyzer.PhaseHealthy || o.Aborted {
		t.Errorf("release 2 (good canary): %+v, want Healthy", o)
	}
	for _, want := range []string{"step ", "error-rate", "Summary", "As expected"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
