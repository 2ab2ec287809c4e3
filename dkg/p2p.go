package dkg

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio"
)

// ProtocolID is the libp2p protocol of the ceremony: one stream per message, a varint-length
// prefixed message (bounded by the ceremony's largest), answered by a one-byte acknowledgement.
const ProtocolID protocol.ID = "/dvmesh/dkg/1.0.0"

// Stream and retry timing.
const (
	p2pStreamTimeout = 2 * time.Minute // one message, even a large deal on a slow link
	p2pDialTimeout   = 5 * time.Second
	p2pRetryMin      = 200 * time.Millisecond
	p2pRetryMax      = 2 * time.Second
)

var ack = []byte{1}

// P2PTransport carries a ceremony over libp2p streams between the definition's operators. The
// host must accept only them (p2p.NewHost with the operators as allow list): the stream's
// remote peer, authenticated by Noise, is the sender, and the stream is encrypted, which is what
// keeps the shares f_i(j) private.
type P2PTransport struct {
	h      host.Host
	peers  []peer.ID
	index  map[peer.ID]int
	self   int
	maxMsg int
	inbox  chan inbound
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// NewP2PTransport serves ProtocolID on h for the operators peers (in share-index order, h's own
// ID among them). Messages above maxMsg bytes are refused unread. Close stops it.
func NewP2PTransport(h host.Host, peers []peer.ID, maxMsg int) (*P2PTransport, error) {
	t := &P2PTransport{h: h, peers: peers, index: map[peer.ID]int{}, maxMsg: maxMsg, inbox: make(chan inbound, 4*len(peers))}
	for i, p := range peers {
		t.index[p] = i + 1
		if p == h.ID() {
			t.self = i + 1
		}
	}
	if t.self == 0 {
		return nil, fmt.Errorf("dkg: host %s is not one of the ceremony's operators", h.ID())
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(ProtocolID, t.handle)
	return t, nil
}

// Close stops serving the protocol and waits for the handlers to return.
func (t *P2PTransport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.h.RemoveStreamHandler(ProtocolID)
	t.cancel()
	t.wg.Wait()
}

func (t *P2PTransport) handle(s network.Stream) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = s.Reset()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	defer s.Close()
	from, ok := t.index[s.Conn().RemotePeer()]
	if !ok || from == t.self {
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(p2pStreamTimeout))
	msg, err := msgio.NewVarintReaderSize(s, t.maxMsg).ReadMsg()
	if err != nil {
		_ = s.Reset()
		return
	}
	// Acknowledge as soon as the message is read, before the ceremony sees it: by the time a
	// ceremony has every message it needs, every sender has its acknowledgement, so a node that
	// finishes and exits leaves no sender retrying.
	if err := msgio.NewVarintWriter(s).WriteMsg(ack); err != nil {
		_ = s.Reset()
		return
	}
	select {
	case t.inbox <- inbound{from: from, msg: msg}:
	case <-t.ctx.Done():
	}
}

// Send delivers msg to operator to, retrying (the peer may not have started yet) until ctx ends.
func (t *P2PTransport) Send(ctx context.Context, to int, msg []byte) error {
	if to < 1 || to > len(t.peers) || to == t.self {
		return fmt.Errorf("send to operator %d: no such peer", to)
	}
	p := t.peers[to-1]
	wait := p2pRetryMin
	for {
		err := t.sendOnce(ctx, p, msg)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("send to operator %d (%s): %w", to, p, err)
		case <-t.ctx.Done():
			return fmt.Errorf("send to operator %d: %w", to, errClosed)
		case <-time.After(wait):
		}
		wait = min(2*wait, p2pRetryMax)
	}
}

func (t *P2PTransport) sendOnce(ctx context.Context, p peer.ID, msg []byte) error {
	// Operators start minutes apart: retry dials at our own pace rather than the swarm's
	// growing dial backoff, which would delay the ceremony long after the peer came up.
	dctx := network.WithForceDirectDial(ctx, "dkg peers start at different times")
	dctx = network.WithDialPeerTimeout(dctx, p2pDialTimeout)
	s, err := t.h.NewStream(dctx, p, ProtocolID)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	defer s.Close()
	deadline := time.Now().Add(p2pStreamTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = s.SetDeadline(deadline)
	if err := msgio.NewVarintWriter(s).WriteMsg(msg); err != nil {
		_ = s.Reset()
		return fmt.Errorf("write: %w", err)
	}
	resp, err := msgio.NewVarintReaderSize(s, len(ack)).ReadMsg()
	if err != nil || len(resp) != 1 || resp[0] != ack[0] {
		_ = s.Reset()
		return fmt.Errorf("no acknowledgement: %v", err)
	}
	return nil
}

// Receive returns the next message from any operator.
func (t *P2PTransport) Receive(ctx context.Context) (int, []byte, error) {
	select {
	case in := <-t.inbox:
		return in.from, in.msg, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-t.ctx.Done():
		return 0, nil, errClosed
	}
}
