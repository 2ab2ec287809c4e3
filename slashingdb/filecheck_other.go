//go:build !unix

package slashingdb

import "os"

// lockShared: without flock, checkFile does not read the file (bbolt's own
// checks apply).
func lockShared(*os.File) bool { return false }

func unlock(*os.File) {}
