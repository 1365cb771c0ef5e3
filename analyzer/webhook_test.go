package analyzer

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// TestWebhooksRetryAndNeverBlock: events reach a webhook that fails once (retried), and a
// webhook that hangs — for far longer than this test waits for anything — never holds
// up the rollout or a status read: if hooks were sent from the control loop, the loop
// would hang with it and the waits below would time out.
func TestWebhooksRetryAndNeverBlock(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	calls := 0
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		var e Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil || r.Header.Get("X-Token") != "t" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		got = append(got, e)
	}))
	t.Cleanup(ok.Close) // after the controller stops (cleanups run last-in first-out)
	var hanging atomic.Int32
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hanging.Add(1)
		defer hanging.Add(-1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })

	cfg := testConfig(weightStep(20), model.Step{Pause: &model.Pause{}})
	cfg.ControlPlane.Webhooks = []model.Webhook{
		{URL: ok.URL, Timeout: time.Second, Retries: 2, Headers: map[string]string{"X-Token": "t"}},
		{URL: hang.URL, Timeout: time.Hour},
	}
	clock := &fakeClock{now: t0}
	c, err := NewController(cfg, Options{Clock: clock, Measurer: &fakeMeasurer{phases: map[string]MeasurementPhase{}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCtx(t, c)
	h := &harness{t: t, c: c, clock: clock}
	testenv.WaitFor(t, 10*time.Second, "the hook to hang", func() bool { return hanging.Load() > 0 })
	h.waitStatus("paused", at(PhasePaused, 1, 20))
	if err := c.Abort("app"); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("aborted", func(s RolloutStatus) bool { return s.Aborted })
	if hanging.Load() == 0 {
		t.Fatal("the hook stopped hanging: the test proves nothing")
	}
	testenv.WaitFor(t, 10*time.Second, "webhook events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range got {
			if e.Type == EventAborted && e.Rollout == "app" {
				return true
			}
		}
		return false
	})
	mu.Lock()
	if got[0].Type != EventStarted {
		t.Errorf("first event %+v", got[0])
	}
	mu.Unlock()
	stop()
}
