package consensus

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

func TestLibp2pCluster(t *testing.T) {
	const size = 3
	nodes := newLibp2pNodes(t, size, testSlot)
	c := &cluster{t: t, nodes: nodes}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for slot := uint64(1); slot <= 3; slot++ {
		duty := Duty{Slot: slot, Type: "attester"}
		got := c.proposeAll(ctx, duty)
		if len(got) != size {
			t.Fatalf("%s: %d results", duty, len(got))
		}
		sameValue(t, duty, got, size)
	}
}

// newLibp2pNodes starts size Raft nodes over real libp2p hosts on 127.0.0.1, connected up front
// as the p2p layer does in production, so the first election is not slowed by handshakes.
func newLibp2pNodes(t testing.TB, size int, slot time.Duration) []*Node {
	nodes, _ := newLibp2pNodesLayers(t, size, slot)
	return nodes
}

// newLibp2pNodesLayers is newLibp2pNodes that also returns each node's stream layer.
func newLibp2pNodesLayers(t testing.TB, size int, slot time.Duration) ([]*Node, []*streamLayer) {
	t.Helper()
	hosts := make([]host.Host, size)
	for i := range hosts {
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(),
		)
		if err != nil {
			t.Fatalf("libp2p host: %v", err)
		}
		t.Cleanup(func() { _ = h.Close() }) // runs after the nodes' shutdown below
		hosts[i] = h
	}
	var peers []raft.Server
	for _, h := range hosts {
		peers = append(peers, raft.Server{ID: raft.ServerID(h.ID().String()), Address: raft.ServerAddress(h.ID().String())})
		for _, other := range hosts {
			if other != h {
				other.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
	}
	// Connect up front, as the p2p layer does in production, so the first
	// election is not slowed by handshakes.
	for i, h := range hosts {
		for _, other := range hosts[i+1:] {
			if err := h.Connect(context.Background(), peer.AddrInfo{ID: other.ID(), Addrs: other.Addrs()}); err != nil {
				t.Fatalf("connect hosts: %v", err)
			}
		}
	}
	nodes, layers := make([]*Node, size), make([]*streamLayer, size)
	for i, h := range hosts {
		tr, sl, err := newLibp2pTransport(h, 2*time.Second, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = sl
		if got := string(tr.LocalAddr()); got != h.ID().String() {
			t.Fatalf("transport address %q, want peer ID %q", got, h.ID())
		}
		n, err := New(Config{
			ID:           raft.ServerID(h.ID().String()),
			Peers:        peers,
			DataDir:      t.TempDir(),
			Transport:    tr,
			SlotDuration: slot,
			Logger:       testLogger(t).With("node", i),
		})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		nodes[i] = n
		t.Cleanup(func() {
			if err := n.Shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	return nodes, layers
}

// BenchmarkIdleCPU measures what Raft's heartbeats cost: the CPU time the whole process (three
// nodes over libp2p, no proposals) burns per second of wall time, for Raft timeouts scaled to
// 2-second (the local demo) and 12-second (mainnet) slots. Run with -benchtime=1x.
func BenchmarkIdleCPU(b *testing.B) {
	for _, slot := range []time.Duration{2 * time.Second, 12 * time.Second} {
		b.Run(slot.String(), func(b *testing.B) {
			nodes := newLibp2pNodes(b, 3, slot)
			c := &cluster{t: b, nodes: nodes}
			c.leader()
			time.Sleep(time.Second) // let the election and connection set-up settle
			const window = 5 * time.Second
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before := cpuTime(b)
				time.Sleep(window)
				used := cpuTime(b) - before
				b.ReportMetric(float64(used.Milliseconds())/window.Seconds(), "cpu-ms/s")
			}
		})
	}
}

func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestLibp2pTransport_ReusesStreams: the leader's heartbeats (ten per heartbeat timeout per
// follower) go over pooled streams. go-libp2p-raft's own transport, unpooled, opens one stream
// per heartbeat; this one may open a pool's worth per follower at most.
func TestLibp2pTransport_ReusesStreams(t *testing.T) {
	nodes, layers := newLibp2pNodesLayers(t, 3, testSlot)
	c := &cluster{t: t, nodes: nodes}
	leader := c.leader()
	time.Sleep(200 * time.Millisecond) // election traffic over
	before := layers[leader].dials.Load()
	const window = time.Second
	time.Sleep(window)
	opened := layers[leader].dials.Load() - before
	hb := raftConfig(Config{SlotDuration: testSlot}, nil).HeartbeatTimeout
	heartbeats := 2 * int64(window/(hb/10))
	if limit := int64(2 * transportPoolSize); opened > limit {
		t.Fatalf("leader opened %d streams in %v (about %d heartbeats), want at most %d", opened, window, heartbeats, limit)
	}
	t.Logf("leader opened %d streams during about %d heartbeats", opened, heartbeats)
}

func TestIdleStreamClosed(t *testing.T) {
	for line, want := range map[string]bool{
		`raft: failed to decode incoming command: error="stream reset: connection closed: read tcp4"`: true,
		`raft: failed to decode incoming command: error=EOF`:                                          true,
		`raft: failed to decode incoming command: error="msgpack decode error"`:                       false,
		`raft: failed to heartbeat to: peer=x error="stream reset"`:                                   false,
	} {
		if got := idleStreamClosed([]byte(line)); got != want {
			t.Errorf("idleStreamClosed(%q) = %v, want %v", line, got, want)
		}
	}
}
