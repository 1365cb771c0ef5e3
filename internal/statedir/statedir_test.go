package statedir

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets a test run this binary as a child that holds a lock
// (STATEDIR_HOLD=DIR): it prints "locked" and waits for stdin to close.
func TestMain(m *testing.M) {
	if dir := os.Getenv("STATEDIR_HOLD"); dir != "" {
		l, err := Acquire(dir)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSecondAcquireIsRefusedAndChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(before)); got != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this pid %d", got, os.Getpid())
	}
	// flock locks belong to open file descriptions: a second open in this very process
	// conflicts like another process would.
	_, err = Acquire(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || inUse.Dir != dir {
		t.Fatalf("second Acquire = %v, want in use by pid %d", err, os.Getpid())
	}
	if want := "stateDir " + dir + " is in use by pid " + strconv.Itoa(os.Getpid()); err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	after, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if string(after) != string(before) {
		t.Fatalf("the refused Acquire changed the lock file: %q → %q", before, after)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = l2.Release()
	var nilLock *Lock
	if err := nilLock.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestLockHeldByAnotherProcessAndFreedByKill: a child process holds the lock; this one is
// refused with the child's pid; kill -9 of the child frees the directory at once.
func TestLockHeldByAnotherProcessAndFreedByKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STATEDIR_HOLD="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("child: %q %v", line, err)
	}
	_, err = Acquire(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		_ = cmd.Process.Kill()
		t.Fatalf("Acquire while the child holds it = %v, want in use by pid %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	_ = l.Release()
}

func TestAcquireReportsAnUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Acquire(file)
	if err == nil || !strings.Contains(err.Error(), "stateDir "+file) {
		t.Fatalf("Acquire(a file) = %v, want an error naming the stateDir", err)
	}
}
