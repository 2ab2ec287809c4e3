package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
)

// ParsigProtocol is the libp2p protocol of the partial-signature exchange.
const ParsigProtocol = "/dvmesh/parsig/1.0.0"

// MaxMessageSize bounds one exchange message (a duty of 10,000 validators is about 4.2 MB of JSON).
const MaxMessageSize = 16 << 20

// Partial is one node's partial signature for one validator of a duty.
type Partial struct {
	GroupPubkey []byte `json:"group_pubkey"` // 48 bytes: which validator
	SigningRoot []byte `json:"signing_root"` // 32 bytes: what was signed
	Signature   []byte `json:"signature"`    // 192 bytes uncompressed (or 96 compressed): signed with the sender's share
}

// Message carries all of a sender's partials for one duty.
type Message struct {
	Slot     uint64    `json:"slot"`
	DutyType string    `json:"duty_type"`
	Partials []Partial `json:"partials"`
}

// Handler receives a message from an authenticated cluster peer. It must not block for long and
// must treat the content as untrusted.
type Handler func(from peer.ID, msg Message)

// Exchange sends and receives partial-signature messages over libp2p streams.
type Exchange struct {
	h       host.Host
	peers   []peer.ID
	timeout time.Duration
	log     *slog.Logger
	closing sync.WaitGroup // the streams whose Close awaits the peer's handshake answer
}

// NewExchange registers the protocol handler on h and returns an exchange that broadcasts to
// peers (self is skipped). Only peers that passed the host's gater can open a stream.
func NewExchange(h host.Host, peers []peer.ID, timeout time.Duration, handle Handler, log *slog.Logger) *Exchange {
	e := &Exchange{h: h, peers: peers, timeout: timeout, log: log}
	h.SetStreamHandler(ParsigProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetReadDeadline(time.Now().Add(timeout))
		msg, err := readMessage(s)
		if err != nil {
			e.log.Warn("Bad partial-signature message", "peer", s.Conn().RemotePeer().String(), "err", err)
			_ = s.Reset()
			return
		}
		handle(s.Conn().RemotePeer(), msg)
	})
	return e
}

// Broadcast sends msg to every other peer concurrently and waits until it is written to every
// peer's stream (not for the peers' acknowledgement). It returns the joined errors of failed
// sends; a peer that is down does not delay the others beyond the timeout.
func (e *Exchange) Broadcast(ctx context.Context, msg Message) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode partials: %w", err)
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("partials message of %d bytes exceeds %d", len(b), MaxMessageSize)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range e.peers {
		if p == e.h.ID() {
			continue
		}
		wg.Add(1)
		go func(p peer.ID) {
			defer wg.Done()
			if err := e.send(ctx, p, b); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("peer %s: %w", p, err))
				mu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Exchange) send(ctx context.Context, p peer.ID, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	s, err := e.h.NewStream(ctx, p, ParsigProtocol)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := msgio.NewVarintWriter(s).WriteMsg(b); err != nil {
		_ = s.Reset()
		return fmt.Errorf("write: %w", err)
	}
	// CloseWrite flushes the protocol handshake with the message and ends the write side. The full
	// Close then waits for the peer's handshake answer, a round trip through a peer that may be
	// busy with the same duty: at 1,000 validators, waiting for it held a node's own submission
	// back by up to 31 ms. It is left to a goroutine; libp2p's Close sets its own 10 s read
	// deadline, so a timer resets the stream after the exchange's timeout instead.
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return fmt.Errorf("close write: %w", err)
	}
	e.closing.Go(func() {
		stop := time.AfterFunc(e.timeout, func() { _ = s.Reset() })
		defer stop.Stop()
		if err := s.Close(); err != nil {
			e.log.Debug("Partial-signature stream close", "peer", p.String(), "err", err)
		}
	})
	return nil
}

// Wait returns once the streams of past broadcasts are closed: each within the exchange's
// timeout, at once after the host is closed. Call it after the last Broadcast has returned (a
// message still queued when the host closes may be lost, as on any shutdown).
func (e *Exchange) Wait() { e.closing.Wait() }

func readMessage(r io.Reader) (Message, error) {
	var msg Message
	b, err := msgio.NewVarintReaderSize(r, MaxMessageSize).ReadMsg()
	if err != nil {
		return msg, fmt.Errorf("read: %w", err)
	}
	if err := json.Unmarshal(b, &msg); err != nil {
		return msg, fmt.Errorf("decode: %w", err)
	}
	return msg, nil
}
