package analyzer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

const crashChildEnv = "SLUICE_ANALYZER_CRASH_CHILD_STATE_DIR"

// printPlane is the child's data plane: it prints every applied canary weight.
type printPlane struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *printPlane) Apply(s *model.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "applied %d\n", s.Listeners[0].Routes[0].WeightOf("canary"))
	return nil
}

func (p *printPlane) WaitApplied(ctx context.Context, v uint64) error { return nil }

// TestCrashChild is the process that TestKill9Resume starts and kills; it does nothing
// in a normal test run. It runs a Controller with a file state dir, prints each status
// change and applied weight, and obeys "abort" on stdin.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9Resume")
	}
	cfg := testConfig(weightStep(30), pauseStep(time.Hour), weightStep(60))
	cfg.ControlPlane.StateDir = dir
	out := os.Stdout
	c, err := NewController(cfg, Options{DataPlanes: []DataPlane{&printPlane{out: out}}, Tick: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(out, "error", err)
		os.Exit(1)
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "abort" {
				if err := c.Abort("app"); err != nil {
					fmt.Fprintln(out, "error", err)
				}
			}
		}
	}()
	go func() {
		last := ""
		for {
			st, _ := c.Get("app")
			pause := "-"
			if st.PauseEndsAt != nil {
				pause = st.PauseEndsAt.UTC().Format(time.RFC3339Nano)
			}
			line := fmt.Sprintf("status %s %d %d %d %t %s", st.Phase, st.Step, st.SetWeight, st.ActualWeight, st.Aborted, pause)
			if line != last {
				fmt.Fprintln(out, line)
				last = line
			}
			time.Sleep(20 * time.Millisecond) // the child's own status poll, not a test wait
		}
	}()
	_ = c.Run(context.Background())
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	lines []string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

// waitLine waits for a line with the prefix and returns it.
func (c *child) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, l := range c.lines {
			if strings.HasPrefix(l, prefix) {
				c.mu.Unlock()
				return l
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("no line %q; got:\n%s", prefix, strings.Join(c.lines, "\n"))
	return ""
}

func (c *child) applied() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if strings.HasPrefix(l, "applied ") {
			out = append(out, strings.TrimPrefix(l, "applied "))
		}
	}
	return out
}

// TestKill9Resume kills a real process running a Controller with SIGKILL mid-pause and
// restarts it: same step, same weight (never 0 or 100 in between), same pause deadline;
// then an aborted rollout stays aborted across another kill.
func TestKill9Resume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	c1 := startChild(t, dir)
	line := c1.waitLine(t, "status Paused 1 30 30 false ")
	deadline := line[strings.LastIndex(line, " ")+1:]
	c1.kill()

	c2 := startChild(t, dir)
	c2.waitLine(t, "status Paused 1 30 30 false "+deadline)
	for _, w := range c2.applied() {
		if w != "30" {
			t.Fatalf("restart applied canary weight %s; want only 30 (applied: %v)", w, c2.applied())
		}
	}
	if _, err := io.WriteString(c2.stdin, "abort\n"); err != nil {
		t.Fatal(err)
	}
	c2.waitLine(t, "status Degraded 1 0 0 true")
	c2.kill()

	c3 := startChild(t, dir)
	c3.waitLine(t, "status Degraded 1 0 0 true")
	for _, w := range c3.applied() {
		if w != "0" {
			t.Fatalf("aborted rollout applied canary weight %s after restart", w)
		}
	}
}
