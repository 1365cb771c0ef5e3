package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run this test binary as the sluice command itself
// (SLUICE_TEST_MAIN=1), to check signals and exit codes on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// sluiceProcess is the sluice command running in a child process.
type sluiceProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder // stdout and stderr, interleaved
	done chan struct{}
	err  error
}

func startSluice(t *testing.T, args ...string) *sluiceProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &sluiceProcess{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *sluiceProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitOutput waits until the output matches re and returns the first submatch (or match).
func (p *sluiceProcess) waitOutput(t *testing.T, re *regexp.Regexp, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before printing %s:\n%s", p.err, re, p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", re, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for the process to end and returns its exit code.
func (p *sluiceProcess) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("process still running after %s:\n%s", within, p.output())
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func closed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestServeProcessSignals: SIGHUP reloads (an invalid file is refused and the server
// keeps running), SIGTERM shuts down gracefully with exit code 0.
func TestServeProcessSignals(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	listen, _ := freeAddr("")
	admin, _ := freeAddr("")
	writeConfig(t, p, serveConfig(listen, admin, filepath.Join(dir, "state"), "{}"))
	proc := startSluice(t, "serve", "-f", p, "--log-format", "json")
	proc.waitOutput(t, regexp.MustCompile(`"sluice serving"`), 20*time.Second)

	// An invalid config and SIGHUP: refused, still serving.
	before := strings.Count(proc.output(), "reload refused")
	writeConfig(t, p, "kind: [\n")
	if err := proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(proc.output(), "reload refused") <= before {
		if time.Now().After(deadline) {
			t.Fatalf("no refused reload logged:\n%s", proc.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + admin + "/api/v1/rollouts/svc")
	if err != nil {
		t.Fatalf("not serving after a refused reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("rollout after a refused reload: %d", resp.StatusCode)
	}
	if !strings.Contains(proc.output(), `SIGHUP: reloading configuration`) {
		t.Errorf("SIGHUP not logged:\n%s", proc.output())
	}

	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := proc.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, proc.output())
	}
	if !closed(admin) || !closed(listen) {
		t.Fatalf("ports still open after exit")
	}
}

// TestDemoProcessCtrlC: Ctrl-C (SIGINT) in the middle of the demo stops everything:
// the process exits promptly and nothing listens on its ports any more.
func TestDemoProcessCtrlC(t *testing.T) {
	proc := startSluice(t, "demo", "--fast", "--admin", "127.0.0.1:0", "--dir", t.TempDir())
	admin := proc.waitOutput(t, regexp.MustCompile(`web view and API  http://(\S+)`), 30*time.Second)
	router := proc.waitOutput(t, regexp.MustCompile(`router  http://(\S+)`), 30*time.Second)
	proc.waitOutput(t, regexp.MustCompile(`Paused  step 1/8`), 30*time.Second)
	if err := proc.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := proc.waitExit(t, 20*time.Second)
	t.Logf("exited %d, %s after SIGINT", code, time.Since(start).Round(time.Millisecond))
	if code != exitInvalid || !strings.Contains(proc.output(), "interrupted") {
		t.Fatalf("exit %d:\n%s", code, proc.output())
	}
	if !closed(admin) || !closed(router) {
		t.Fatal("demo ports still open after exit")
	}
}
