//go:build !unix

package statedir

import (
	"errors"
	"os"
)

func tryLock(*os.File) (bool, error) {
	return false, errors.New("locking a state directory needs flock(2), which this platform lacks")
}

func unlock(*os.File) error { return nil }
