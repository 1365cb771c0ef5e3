package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startDemoBackend runs the command in-process and returns its printed addresses
// ("http" and "grpc"), a cancel that plays SIGTERM, and the channel its exit code arrives on.
func startDemoBackend(t *testing.T, args ...string) (map[string]string, context.CancelFunc, <-chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := runDemoBackend(ctx, commands["demo-backend"], args, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	addrs := map[string]string{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := 1
	if strings.Contains(strings.Join(args, " "), "--grpc") {
		want = 2
	}
	deadline := time.After(10 * time.Second)
	for len(addrs) < want {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo-backend exited before listening: code %d", <-done)
			}
			f := strings.Fields(l)
			if len(f) != 4 || f[0] != "demo-backend" {
				t.Fatalf("unexpected stdout line %q", l)
			}
			addrs[f[2]] = f[3]
		case <-deadline:
			cancel()
			t.Fatal("demo-backend printed no address within 10s")
		}
	}
	go func() {
		for range lines { // drain
		}
	}()
	t.Cleanup(cancel)
	return addrs, cancel, done
}

func TestDemoBackendCommandServesAndStops(t *testing.T) {
	addrs, cancel, done := startDemoBackend(t, "--listen", "127.0.0.1:0", "--name", "canary",
		"--error-rate", "1", "--latency", "5ms", "--grpc", "127.0.0.1:0", "--log-level", "error")

	resp, err := http.Get("http://" + addrs["http"] + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("X-Sluice-Backend") != "canary" {
		t.Errorf("GET /checkout = %d, backend %q; want 500 from canary", resp.StatusCode, resp.Header.Get("X-Sluice-Backend"))
	}
	resp, err = http.Get("http://" + addrs["http"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `http_errors_total{backend="canary",method="GET",route="/",status_code="500"} 1`) {
		t.Errorf("/metrics does not count the failed request:\n%s", body)
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Error("/metrics lacks the Go runtime collector")
	}

	conn, err := grpc.NewClient(addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer c2()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health = %v, %v", h, err)
	}

	cancel() // what SIGINT/SIGTERM do through signal.NotifyContext
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code %d after shutdown, want 0", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo-backend did not stop")
	}
	if _, err := http.Get("http://" + addrs["http"] + "/health"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestDemoBackendCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--error-rate", "2"},
		{"--name", ""},
		{"--nope"},
		{"extra"},
	} {
		var stderr strings.Builder
		code := runDemoBackend(context.Background(), commands["demo-backend"], append([]string{"--listen", "127.0.0.1:0"}, args...), io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr.String())
		}
	}
	var stderr strings.Builder
	if code := runDemoBackend(context.Background(), commands["demo-backend"], []string{"--listen", "256.0.0.1:1"}, io.Discard, &stderr); code != exitInvalid {
		t.Errorf("unusable --listen: exit %d, want %d", code, exitInvalid)
	}
}
