//go:build unix

package slashingdb

import (
	"os"
	"syscall"
)

// lockShared takes a shared, non-blocking flock on f, the kind bbolt's exclusive
// lock excludes; false if another handle holds the file.
func lockShared(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil
}

func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
