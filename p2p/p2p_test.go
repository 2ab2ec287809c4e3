package p2p

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestHost(t *testing.T, allowed ...peer.ID) (host.Host, peer.ID) {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	var peers []Peer
	for _, a := range append(allowed, id) {
		peers = append(peers, Peer{ID: a})
	}
	h, err := NewHost(k, ma.StringCast("/ip4/127.0.0.1/tcp/0"), peers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, id
}

func TestExchange_DeliversBetweenClusterPeers(t *testing.T) {
	ka, _ := GenerateKey()
	kb, _ := GenerateKey()
	ida, _ := peer.IDFromPrivateKey(ka)
	idb, _ := peer.IDFromPrivateKey(kb)
	peers := []Peer{{ID: ida}, {ID: idb}}
	ha, err := NewHost(ka, ma.StringCast("/ip4/127.0.0.1/tcp/0"), peers)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := NewHost(kb, ma.StringCast("/ip4/127.0.0.1/tcp/0"), peers)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	ha.Peerstore().AddAddrs(idb, hb.Addrs(), time.Hour)

	got := make(chan Message, 1)
	from := make(chan peer.ID, 1)
	NewExchange(hb, []peer.ID{ida, idb}, time.Second, func(p peer.ID, m Message) { from <- p; got <- m }, quiet)
	ex := NewExchange(ha, []peer.ID{ida, idb}, time.Second, func(peer.ID, Message) {}, quiet)
	want := Message{Slot: 7, DutyType: "attester", Partials: []Partial{{GroupPubkey: []byte{1}, SigningRoot: []byte{2}, Signature: []byte{3}}}}
	if err := ex.Broadcast(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Slot != 7 || len(m.Partials) != 1 || m.Partials[0].Signature[0] != 3 {
			t.Fatalf("got %+v", m)
		}
		if p := <-from; p != ida {
			t.Fatalf("sender %s, want %s", p, ida)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered")
	}
	// Broadcast returns once the message is written; its stream's close goes on in the
	// background. Every message of a run of them still arrives, and Wait sees the closes end.
	const more = 20
	for i := range more {
		want.Slot = uint64(100 + i)
		if err := ex.Broadcast(context.Background(), want); err != nil {
			t.Fatalf("broadcast %d: %v", i, err)
		}
	}
	seen := map[uint64]bool{}
	for len(seen) < more {
		select {
		case m := <-got:
			<-from
			seen[m.Slot] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d messages delivered", len(seen), more)
		}
	}
	waited := make(chan struct{})
	go func() { ex.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("streams of past broadcasts still closing after 5 s")
	}
}

func TestHost_RefusesPeerNotInLock(t *testing.T) {
	member, memberID := newTestHost(t)
	stranger, _ := newTestHost(t, memberID) // the stranger would accept the member...
	stranger.Peerstore().AddAddrs(memberID, member.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// ...but the member's gater refuses the stranger after the handshake.
	err := stranger.Connect(ctx, peer.AddrInfo{ID: memberID})
	if err == nil {
		time.Sleep(200 * time.Millisecond) // a refused inbound conn may be closed just after
		if len(member.Network().ConnsToPeer(stranger.ID())) != 0 {
			t.Fatal("member accepted a connection from a peer outside the lock")
		}
	}
}

func TestReadMessage_Malformed(t *testing.T) {
	for _, in := range [][]byte{{}, {0x05, '{', '"'}, {0xff, 0xff, 0xff, 0xff, 0x7f}, {0x02, 'x', 'y'}} {
		if _, err := readMessage(bytes.NewReader(in)); err == nil {
			t.Errorf("malformed input %x accepted", in)
		}
	}
}
