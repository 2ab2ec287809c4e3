package p2p

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio"
	msmux "github.com/multiformats/go-multistream"
)

// Protocols of duplicate-instance detection.
const (
	WhoAmIProtocol    protocol.ID = "/dvmesh/instance/whoami/1.0.0"
	DuplicateProtocol protocol.ID = "/dvmesh/instance/duplicate/1.0.0"
)

// DuplicateNotice tells a process that its node identity answers from two processes.
type DuplicateNotice struct {
	Peer      string   `json:"peer"`      // the identity that runs twice
	Instances []string `json:"instances"` // the instance ids that answered
	Reporter  string   `json:"reporter"`  // the peer that saw both
}

// InstanceGuard gives this process a random instance id, announces it on every connection, and
// watches the peers: when one peer identity answers from two live processes (two instance ids on
// two open connections, both answering a ping within the probe timeout), both processes are
// told. Two processes with one identity hold the same key shares, so both must stop signing.
type InstanceGuard struct {
	h       host.Host
	id      string
	timeout time.Duration
	log     *slog.Logger
	onDup   func(DuplicateNotice)

	mu        sync.Mutex
	instances map[peer.ID]map[network.Conn]string
	notified  bool
}

// NewInstanceGuard registers the protocols on h. onDuplicate is called (at most once) when a
// peer reports that this process's identity runs twice and this instance is one of them.
func NewInstanceGuard(h host.Host, probeTimeout time.Duration, onDuplicate func(DuplicateNotice), log *slog.Logger) *InstanceGuard {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	g := &InstanceGuard{h: h, id: hex.EncodeToString(b), timeout: probeTimeout, log: log, onDup: onDuplicate,
		instances: map[peer.ID]map[network.Conn]string{}}
	h.SetStreamHandler(WhoAmIProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetWriteDeadline(time.Now().Add(probeTimeout))
		_ = msgio.NewVarintWriter(s).WriteMsg([]byte(g.id))
	})
	h.SetStreamHandler(DuplicateProtocol, g.handleNotice)
	return g
}

// ID is this process's instance id.
func (g *InstanceGuard) ID() string { return g.id }

// Run asks every new connection's process for its instance id and probes peers that show two,
// until ctx ends. It blocks.
func (g *InstanceGuard) Run(ctx context.Context, interval time.Duration) {
	conns := make(chan network.Conn, 64)
	nb := &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			select {
			case conns <- c:
			default: // the periodic sweep picks it up
			}
		},
	}
	g.h.Network().Notify(nb)
	defer g.h.Network().StopNotify(nb)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-conns:
			g.learn(ctx, c)
		case <-t.C:
			g.sweep(ctx)
		}
	}
}

// learn records the instance id behind connection c.
func (g *InstanceGuard) learn(ctx context.Context, c network.Conn) {
	id, err := g.whoAmI(ctx, c)
	if err != nil {
		g.log.Debug("Instance id not learned", "peer", c.RemotePeer().String(), "err", err)
		return
	}
	g.mu.Lock()
	m := g.instances[c.RemotePeer()]
	if m == nil {
		m = map[network.Conn]string{}
		g.instances[c.RemotePeer()] = m
	}
	m[c] = id
	g.mu.Unlock()
}

// sweep learns unknown connections, forgets closed ones, and probes peers with two instances.
func (g *InstanceGuard) sweep(ctx context.Context) {
	for _, c := range g.h.Network().Conns() {
		g.mu.Lock()
		_, known := g.instances[c.RemotePeer()][c]
		g.mu.Unlock()
		if !known {
			g.learn(ctx, c)
		}
	}
	g.mu.Lock()
	var suspects []peer.ID
	for p, m := range g.instances {
		distinct := map[string]bool{}
		for c, id := range m {
			if c.IsClosed() {
				delete(m, c)
				continue
			}
			distinct[id] = true
		}
		if len(distinct) > 1 {
			suspects = append(suspects, p)
		}
	}
	g.mu.Unlock()
	for _, p := range suspects {
		g.probe(ctx, p)
	}
}

// probe pings every connection of p; if two different instances answer, both are told.
func (g *InstanceGuard) probe(ctx context.Context, p peer.ID) {
	live := map[string]network.Conn{}
	for _, c := range g.h.Network().ConnsToPeer(p) {
		if id, err := g.whoAmI(ctx, c); err == nil {
			live[id] = c
		}
	}
	if len(live) < 2 {
		return
	}
	n := DuplicateNotice{Peer: p.String(), Reporter: g.h.ID().String()}
	for id := range live {
		n.Instances = append(n.Instances, id)
	}
	slices.Sort(n.Instances)
	g.log.Error("Peer identity runs in two processes: telling both to stop signing", "peer", p.String(), "instances", n.Instances)
	b, _ := json.Marshal(n)
	for _, c := range live {
		if err := g.send(ctx, c, DuplicateProtocol, b); err != nil {
			g.log.Warn("Duplicate notice not delivered", "peer", p.String(), "err", err)
		}
	}
}

func (g *InstanceGuard) handleNotice(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(g.timeout))
	b, err := msgio.NewVarintReaderSize(s, 4096).ReadMsg()
	if err != nil {
		return
	}
	var n DuplicateNotice
	if json.Unmarshal(b, &n) != nil || n.Peer != g.h.ID().String() || !slices.Contains(n.Instances, g.id) || len(n.Instances) < 2 {
		return // not about this process
	}
	n.Reporter = s.Conn().RemotePeer().String()
	g.mu.Lock()
	first := !g.notified
	g.notified = true
	g.mu.Unlock()
	if first {
		g.onDup(n)
	}
}

// whoAmI opens a stream on exactly connection c (not any connection to the peer) and reads the
// instance id of the process at its other end.
func (g *InstanceGuard) whoAmI(ctx context.Context, c network.Conn) (string, error) {
	s, err := g.openOn(ctx, c, WhoAmIProtocol)
	if err != nil {
		return "", err
	}
	defer s.Close()
	b, err := msgio.NewVarintReaderSize(s, 256).ReadMsg()
	if err != nil {
		return "", fmt.Errorf("read instance id: %w", err)
	}
	return string(b), nil
}

func (g *InstanceGuard) send(ctx context.Context, c network.Conn, proto protocol.ID, b []byte) error {
	s, err := g.openOn(ctx, c, proto)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := msgio.NewVarintWriter(s).WriteMsg(b); err != nil {
		_ = s.Reset()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (g *InstanceGuard) openOn(ctx context.Context, c network.Conn, proto protocol.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	s, err := c.NewStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	_ = s.SetDeadline(time.Now().Add(g.timeout))
	if err := msmux.SelectProtoOrFail(proto, s); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("negotiate %s: %w", proto, err)
	}
	if err := s.SetProtocol(proto); err != nil {
		_ = s.Reset()
		return nil, err
	}
	return s, nil
}
