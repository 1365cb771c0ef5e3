package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// tempPrefix names the temporary copies in os.TempDir(); each holds an owner.pid file.
const tempPrefix = "sluice-mutate-"

// copyTree copies the repository's files (tracked, and untracked ones git does not
// ignore: a test being written counts) from root into a new temporary directory and
// returns the copy's root. The copy sits at DIR/src; when root has a sibling "shared"
// folder (Argo examples some tests read as ../shared), DIR/shared points at it, so the
// tests see what they see in the working tree.
func copyTree(root string) (dir, src string, err error) {
	dir, err = os.MkdirTemp("", tempPrefix)
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err = os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", "", err
	}
	src = filepath.Join(dir, "src")
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return "", "", fmt.Errorf("git ls-files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		if err = copyFile(filepath.Join(root, rel), filepath.Join(src, rel)); err != nil {
			return "", "", err
		}
	}
	if shared, e := filepath.EvalSymlinks(filepath.Join(root, "..", "shared")); e == nil {
		if err = os.Symlink(shared, filepath.Join(dir, "shared")); err != nil {
			return "", "", err
		}
	}
	return dir, src, nil
}

// copyFile copies one file (a symlink as a symlink); a tracked file deleted in the
// working tree is skipped.
func copyFile(from, to string) error {
	fi, err := os.Lstat(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(target, to)
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeOrphans removes copies left by runs that were killed outright (SIGKILL leaves no
// chance to clean up): those whose owner process no longer exists.
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // not one of ours, or still being created
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
