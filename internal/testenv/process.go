package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// ModuleRoot returns the directory of the go.mod that holds the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RunWithSluice is the TestMain of an end-to-end suite: it builds the sluice command into
// a temporary directory, stores the binary's path in *bin, runs the tests and removes the
// directory. It returns the exit code for os.Exit.
func RunWithSluice(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildSluice(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// BuildSluice builds the sluice command into dir and returns the binary's path. It is
// built without -race and with CGO off: end-to-end tests exercise behaviour across
// processes, the packages' own -race tests cover data races, and an instrumented binary
// per process would cost the machine's cores several times over.
func BuildSluice(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sluice")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// -trimpath and CGO off, as `make build` and the Dockerfile build: one set of cached
	// packages serves them all.
	build := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./cmd/sluice")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sluice: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a child process whose stdout and stderr are kept for failure messages.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// StartProcess runs bin with args. The process is killed when the test ends, and the
// tail of its output is logged when the test failed.
func StartProcess(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			out := p.Output()
			if len(out) > 8000 {
				out = "…" + out[len(out)-8000:]
			}
			t.Logf("--- %s output (tail):\n%s", name, out)
		}
	})
	return p
}

// Write appends to the kept output; the process writes its stdout and stderr here.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns everything the process has written so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL (as kill -9 does) and waits until the process is gone; safe to call
// twice.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}
