package consensus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	libp2praft "github.com/libp2p/go-libp2p-raft"
	"github.com/libp2p/go-libp2p/core/host"
)

// NewLibp2pTransport returns a Raft transport over libp2p streams on h (see
// go-libp2p-raft). Server addresses are peer ID strings, so Config.Peers must
// use each peer's ID string as both ID and Address, and h must be able to
// reach them (peerstore addresses or routing). timeout bounds each RPC.
func NewLibp2pTransport(h host.Host, timeout time.Duration) (raft.Transport, error) {
	if h == nil {
		return nil, fmt.Errorf("libp2p raft transport: nil host")
	}
	t, err := libp2praft.NewLibp2pTransport(h, timeout)
	if err != nil {
		return nil, fmt.Errorf("libp2p raft transport: %w", err)
	}
	return t, nil
}

// newHCLogger returns an hclog.Logger for Raft that drops anything below
// Warn and forwards the rest to log.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Warn,
		Output:      slogWriter{log: log},
		DisableTime: true,
	})
}

// slogWriter forwards hclog's formatted lines ("[WARN]  raft: msg ...") to
// slog at the matching level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelWarn
	switch {
	case bytes.HasPrefix(line, []byte("[ERROR]")):
		level, line = slog.LevelError, line[len("[ERROR]"):]
	case bytes.HasPrefix(line, []byte("[WARN]")):
		line = line[len("[WARN]"):]
	}
	w.log.Log(context.Background(), level, string(bytes.TrimSpace(line)))
	return len(p), nil
}
