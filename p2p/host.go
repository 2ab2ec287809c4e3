// Package p2p connects the cluster's nodes: libp2p hosts that accept only the peers named in the
// cluster lock, and the partial-signature exchange protocol between them.
package p2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Peer is a cluster member: its identity and the address it listens on.
type Peer struct {
	ID   peer.ID
	Addr ma.Multiaddr
}

// NewHost starts a libp2p host listening on listen (TCP, Noise-secured) that refuses every
// connection, inbound or outbound, with a peer not in peers. The peers' addresses are added to the
// peerstore permanently so that protocols can dial them by ID.
func NewHost(key crypto.PrivKey, listen ma.Multiaddr, peers []Peer) (host.Host, error) {
	allowed := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		allowed[p.ID] = true
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.ConnectionGater(allowList(allowed)),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(true),
	)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host on %s: %w", listen, err)
	}
	for _, p := range peers {
		if p.ID != h.ID() && p.Addr != nil {
			h.Peerstore().AddAddr(p.ID, p.Addr, peerstore.PermanentAddrTTL)
		}
	}
	return h, nil
}

// allowList is a connection gater that admits only the cluster's peers. The identity of an
// inbound peer is known only after the security handshake, so it is checked there.
type allowList map[peer.ID]bool

func (a allowList) InterceptPeerDial(p peer.ID) bool                 { return a[p] }
func (a allowList) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return a[p] }
func (a allowList) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (a allowList) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return a[p]
}
func (a allowList) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// KeepConnected dials every peer that is not connected, every interval, until ctx ends. It blocks.
func KeepConnected(ctx context.Context, h host.Host, peers []peer.ID, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, p := range peers {
			if p == h.ID() || h.Network().Connectedness(p) == network.Connected {
				continue
			}
			wg.Add(1)
			go func(p peer.ID) {
				defer wg.Done()
				dctx, cancel := context.WithTimeout(ctx, interval)
				defer cancel()
				if err := h.Connect(dctx, peer.AddrInfo{ID: p}); err != nil && ctx.Err() == nil {
					log.Debug("Peer not reachable", "peer", p.String(), "err", err)
				}
			}(p)
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GenerateKey makes a new Ed25519 libp2p identity.
func GenerateKey() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate p2p key: %w", err)
	}
	return k, nil
}

// SaveKey writes the private key (libp2p protobuf encoding) readable by the owner only.
func SaveKey(path string, k crypto.PrivKey) error {
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return fmt.Errorf("encode p2p key: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write p2p key: %w", err)
	}
	return nil
}

// LoadKey reads a key written by SaveKey.
func LoadKey(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read p2p key: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("p2p key %s: %w", path, err)
	}
	return k, nil
}
