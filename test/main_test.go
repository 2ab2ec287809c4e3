package test

import (
	"testing"

	golog "github.com/ipfs/go-log/v2"

	"github.com/dvmesh/dvmesh/test/testexit"
)

func TestMain(m *testing.M) {
	// go-libp2p-raft logs every stream a stopping node closes as an error through the
	// process-wide go-log (as cmd/dvmesh does, keep it quiet; Raft reports through slog).
	_ = golog.SetLogLevel("raftlib", "fatal")
	testexit.Main(m)
}
