package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestServeStickyKeysSurviveRestart: the sticky-cookie key is created in the state
// directory (mode 0600) and read again on the next start, so a cookie issued before a
// restart is still honoured after it (not re-issued).
func TestServeStickyKeysSurviveRestart(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer backend.Close()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	listen, _ := freeAddr("")
	cfg := serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "state"), "{}")
	// Both clusters answer, so whichever side a bucket picks gets a 200.
	for _, dead := range []string{"address: 127.0.0.1:1}", "address: 127.0.0.1:2}"} {
		cfg = strings.Replace(cfg, dead, "address: "+strings.TrimPrefix(backend.URL, "http://")+"}", 1)
	}
	cfg = strings.Replace(cfg, "  routes: [{hosts: [\"*\"], pathPrefix: /, cluster: s-stable}]\n",
		"  routes: [{hosts: [\"*\"], pathPrefix: /probe, cluster: s-stable}]\n  stickySessions: {cookie: s-sticky}\n", 1)
	writeConfig(t, p, cfg)
	// run starts sluice serve, sends one request with the given cookie, stops, and
	// returns the Set-Cookie answered ("" when none).
	run := func(cookie string) string {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan *runningServer, 1)
		done := make(chan error, 1)
		go func() {
			done <- runServe(ctx, serveOptions{Files: []string{p}, Logger: zap.NewNop(), Started: func(rs *runningServer) { started <- rs }})
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("runServe: %v", err)
		}
		defer func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("runServe did not stop")
			}
		}()
		req, _ := http.NewRequest("GET", "http://"+listen+"/probe", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /probe: %d", resp.StatusCode)
		}
		return resp.Header.Get("Set-Cookie")
	}
	set := run("")
	if !strings.HasPrefix(set, "s-sticky=") {
		t.Fatalf("no sticky cookie issued: %q", set)
	}
	fi, err := os.Stat(filepath.Join(dir, "state", stickyKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if again := run(strings.SplitN(set, ";", 2)[0]); again != "" {
		t.Fatalf("cookie from before the restart re-issued: %q", again)
	}
}
