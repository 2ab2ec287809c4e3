package dkg

import (
	"testing"

	"github.com/dvmesh/dvmesh/test/testexit"
)

// TestMain skips C exit handlers at the end, where race builds linking herumi's C++ BLS library
// crashed (see package testexit).
func TestMain(m *testing.M) { testexit.Main(m) }
