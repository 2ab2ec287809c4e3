package dkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Transport carries the ceremony's messages between operators, named by share index (1..n).
//
// Implementations authenticate the sender: Receive's from is the operator the bytes came from
// (for libp2p, the peer of the Noise session), never a claim inside the message. They need not
// provide broadcast: libp2p has none, and the ceremony sends to each peer on its own so that a
// failure names the operator it concerns.
type Transport interface {
	// Send delivers msg to operator to, retrying as it sees fit until ctx ends. It returns only
	// once the message is queued at the receiver (so a sender that has finished may exit), and
	// does not keep msg: the caller may overwrite it afterwards.
	Send(ctx context.Context, to int, msg []byte) error
	// Receive returns the next message from any operator.
	Receive(ctx context.Context) (from int, msg []byte, err error)
}

type inbound struct {
	from int
	msg  []byte
}

// memTransport is one operator's end of an in-process network.
type memTransport struct {
	self    int
	inboxes []chan inbound
}

// NewMemTransports returns the transports of n operators in one process (index i-1 is
// operator i's): for tests and simulations of a ceremony without libp2p.
func NewMemTransports(n int) []Transport {
	inboxes := make([]chan inbound, n)
	for i := range inboxes {
		// Enough for every message of a ceremony: a sender never blocks on a receiver that has
		// not started yet.
		inboxes[i] = make(chan inbound, 8*n)
	}
	out := make([]Transport, n)
	for i := range out {
		out[i] = &memTransport{self: i + 1, inboxes: inboxes}
	}
	return out
}

func (m *memTransport) Send(ctx context.Context, to int, msg []byte) error {
	if to < 1 || to > len(m.inboxes) || to == m.self {
		return fmt.Errorf("send to operator %d: no such peer", to)
	}
	select {
	case m.inboxes[to-1] <- inbound{from: m.self, msg: bytes.Clone(msg)}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send to operator %d: %w", to, ctx.Err())
	}
}

func (m *memTransport) Receive(ctx context.Context) (int, []byte, error) {
	select {
	case in := <-m.inboxes[m.self-1]:
		return in.from, in.msg, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// errClosed is returned by a closed transport.
var errClosed = errors.New("transport closed")
