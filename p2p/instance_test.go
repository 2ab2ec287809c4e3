package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func hostWithKey(t *testing.T, k crypto.PrivKey, peers []Peer) host.Host {
	t.Helper()
	h, err := NewHost(k, ma.StringCast("/ip4/127.0.0.1/tcp/0"), peers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestInstanceGuard_DetectsTwoProcessesWithOneIdentity runs two hosts with the same key (one
// node started twice) and a third that sees both: both copies must be told, and a single copy
// must never be.
func TestInstanceGuard_DetectsTwoProcessesWithOneIdentity(t *testing.T) {
	kDup, _ := GenerateKey()
	kObs, _ := GenerateKey()
	idDup, _ := peer.IDFromPrivateKey(kDup)
	idObs, _ := peer.IDFromPrivateKey(kObs)
	peers := []Peer{{ID: idDup}, {ID: idObs}}
	obs := hostWithKey(t, kObs, peers)
	copyA := hostWithKey(t, kDup, peers)
	copyB := hostWithKey(t, kDup, peers)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notices := make(chan DuplicateNotice, 4)
	var guards []*InstanceGuard
	for _, h := range []host.Host{obs, copyA, copyB} {
		g := NewInstanceGuard(h, time.Second, func(n DuplicateNotice) { notices <- n }, quiet)
		guards = append(guards, g)
		go g.Run(ctx, 200*time.Millisecond)
	}
	// Only copy A is connected at first: nothing must be reported.
	if err := copyA.Connect(ctx, peer.AddrInfo{ID: idObs, Addrs: obs.Addrs()}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-notices:
		t.Fatalf("single instance reported as duplicate: %+v", n)
	case <-time.After(time.Second):
	}
	// The second copy connects too.
	if err := copyB.Connect(ctx, peer.AddrInfo{ID: idObs, Addrs: obs.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Each guard reports at most once, so two notices mean both copies were told.
	deadline := time.After(10 * time.Second)
	for told := 0; told < 2; told++ {
		select {
		case n := <-notices:
			if n.Peer != idDup.String() || len(n.Instances) != 2 || n.Reporter != idObs.String() {
				t.Fatalf("notice %+v", n)
			}
		case <-deadline:
			t.Fatalf("%d of 2 copies told; guards %s %s %s", told, guards[0].ID(), guards[1].ID(), guards[2].ID())
		}
	}
}
