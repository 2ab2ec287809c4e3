package consensus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	gostream "github.com/libp2p/go-libp2p-gostream"
	libp2praft "github.com/libp2p/go-libp2p-raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// NewLibp2pTransport returns a Raft transport over libp2p streams on h, speaking go-libp2p-raft's
// protocol. Server addresses are peer ID strings, so Config.Peers must use each peer's ID string
// as both ID and Address, and h must be able to reach them (peerstore addresses or routing).
// timeout bounds each RPC.
//
// It is go-libp2p-raft's transport but with a pool of open streams per peer: go-libp2p-raft sets
// Raft's MaxPool to 0, so every heartbeat (ten per heartbeat timeout per follower) and every RPC
// outside the pipeline opened and closed a libp2p stream, with its protocol negotiation on both
// sides. At 10,000 validators that was 10% of the leader's CPU in a 305-slot profile. A pooled
// stream that broke (a peer restarted) fails one RPC and is dropped; Raft retries.
func NewLibp2pTransport(h host.Host, timeout time.Duration, log *slog.Logger) (*raft.NetworkTransport, error) {
	t, _, err := newLibp2pTransport(h, timeout, log)
	return t, err
}

// newLibp2pTransport is NewLibp2pTransport that also returns the stream layer, whose dial count
// tests read.
func newLibp2pTransport(h host.Host, timeout time.Duration, log *slog.Logger) (*raft.NetworkTransport, *streamLayer, error) {
	if h == nil {
		return nil, nil, fmt.Errorf("libp2p raft transport: nil host")
	}
	l, err := gostream.Listen(h, libp2praft.RaftProtocol)
	if err != nil {
		return nil, nil, fmt.Errorf("libp2p raft transport: listen: %w", err)
	}
	sl := &streamLayer{h: h, Listener: l}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: peerIDAddresses{},
		Logger:                newHCLogger(log),
		Stream:                sl,
		MaxPool:               transportPoolSize,
		Timeout:               timeout,
	}), sl, nil
}

// transportPoolSize is the number of idle streams kept per peer: Raft's heartbeat and its
// non-pipelined RPCs to one follower run in at most a few goroutines at once.
const transportPoolSize = 3

// streamLayer is Raft's StreamLayer on libp2p streams of go-libp2p-raft's protocol.
type streamLayer struct {
	h host.Host
	net.Listener
	dials atomic.Int64 // streams opened to peers
}

func (sl *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft address %q is not a peer ID: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sl.dials.Add(1)
	return gostream.Dial(ctx, sl.h, pid, libp2praft.RaftProtocol)
}

// peerIDAddresses resolves a Raft server ID to itself: IDs are peer ID strings.
type peerIDAddresses struct{}

func (peerIDAddresses) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	return raft.ServerAddress(id), nil
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
	if idleStreamClosed(line) {
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, string(bytes.TrimSpace(line)))
	return len(p), nil
}

// idleStreamClosed tells Raft's report of a pooled stream that its peer closed while idle (the
// peer stopped or restarted) from a real decoding fault: the former is expected with a stream
// pool, and the peer's loss is reported anyway by the failed heartbeats.
func idleStreamClosed(line []byte) bool {
	if !bytes.Contains(line, []byte("failed to decode incoming command")) {
		return false
	}
	for _, cause := range []string{"stream reset", "connection closed", "EOF"} {
		if bytes.Contains(line, []byte(cause)) {
			return true
		}
	}
	return false
}
