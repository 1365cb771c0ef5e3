// Package statedir gives one process at a time the ownership of a state directory: an
// exclusive flock(2) on a lock file inside it, held for the life of the process. Two
// `sluice serve` sharing a stateDir would overwrite each other's rollout state; the
// second one is refused instead, with the first one's pid.
//
// The lock is advisory and released by the kernel when the process ends, however it
// ends (kill -9 included): a stale lock file never blocks a restart. flock(2) does not
// work across machines on every network filesystem; keep stateDir on a local disk.
package statedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the lock file inside the state directory. It holds the pid of
// the process that owns the directory while that process runs.
const LockFile = "sluice.lock"

// InUseError says that another process holds the state directory.
type InUseError struct {
	Dir string
	PID int // 0 when the owner's pid could not be read
}

func (e *InUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("stateDir %s is in use by pid %d", e.Dir, e.PID)
	}
	return fmt.Sprintf("stateDir %s is in use by another process", e.Dir)
}

// Lock is the ownership of a state directory, held until Release or the end of the process.
type Lock struct {
	f   *os.File
	dir string
}

// Acquire creates dir when missing and takes its lock without waiting. When another
// process holds it, it returns an *InUseError naming that process and changes nothing
// in dir (the lock file is opened without truncation and only written once locked).
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stateDir %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stateDir %s: %w", dir, err)
	}
	busy, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stateDir %s: lock %s: %w", dir, path, err)
	}
	if busy {
		pid := readPID(f)
		f.Close()
		return nil, &InUseError{Dir: dir, PID: pid}
	}
	if err := writePID(f); err != nil {
		unlock(f)
		f.Close()
		return nil, fmt.Errorf("stateDir %s: write %s: %w", dir, path, err)
	}
	return &Lock{f: f, dir: dir}, nil
}

// Dir returns the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Release empties the lock file and gives up the lock. Safe to call on a nil Lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return err
	}
	return f.Sync()
}
