package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const testSlot = 500 * time.Millisecond

// testLogger logs warnings and errors through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// cluster is an in-process cluster over raft.InmemTransport.
type cluster struct {
	t     testing.TB
	ids   []raft.ServerID
	dirs  []string
	trans []*raft.InmemTransport
	nodes []*Node
}

func newCluster(t testing.TB, size int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := range size {
		c.ids = append(c.ids, raft.ServerID(fmt.Sprintf("node%d", i)))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.trans = make([]*raft.InmemTransport, size)
	c.nodes = make([]*Node, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

func (c *cluster) peers() []raft.Server {
	var ps []raft.Server
	for _, id := range c.ids {
		ps = append(ps, raft.Server{ID: id, Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	return ps
}

// start (re)starts node i on its data dir with a fresh, connected transport.
func (c *cluster) start(i int) {
	c.t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(c.ids[i]))
	c.trans[i] = tr
	for j, other := range c.trans {
		if j != i && other != nil {
			tr.Connect(raft.ServerAddress(c.ids[j]), other)
			other.Connect(raft.ServerAddress(c.ids[i]), tr)
		}
	}
	n, err := New(Config{
		ID:           c.ids[i],
		Peers:        c.peers(),
		DataDir:      c.dirs[i],
		Transport:    tr,
		SlotDuration: testSlot,
		Logger:       testLogger(c.t).With("node", i),
	})
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.nodes[i] = n
}

// stop shuts node i down and disconnects it from the others.
func (c *cluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Shutdown(); err != nil {
		c.t.Errorf("shutdown node %d: %v", i, err)
	}
	for j, other := range c.trans {
		if j != i && other != nil {
			other.Disconnect(raft.ServerAddress(c.ids[i]))
		}
	}
	c.nodes[i], c.trans[i] = nil, nil
}

// leader waits for a running node to be leader and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range c.nodes {
			if n != nil {
				if role, _, _ := n.State(); role == "leader" {
					return i
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return -1
}

// proposeAll has every running node propose its own value for duty
// concurrently and returns the decided values by node index.
func (c *cluster) proposeAll(ctx context.Context, duty Duty) map[int][]byte {
	c.t.Helper()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		got  = make(map[int][]byte)
		errs []error
	)
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := n.Propose(ctx, duty, []byte(fmt.Sprintf("value-%d-%s", i, duty)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
				return
			}
			got[i] = v
		}()
	}
	wg.Wait()
	for _, err := range errs {
		c.t.Fatalf("propose %s: %v", duty, err)
	}
	return got
}

// waitDecided waits until node i has applied a value for duty.
func (c *cluster) waitDecided(i int, duty Duty) []byte {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if v, ok := c.nodes[i].Decided(duty); ok {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("node %d never decided %s", i, duty)
	return nil
}

// sameValue fails unless all values in got are equal and one of the
// proposed values; it returns that value.
func sameValue(t testing.TB, duty Duty, got map[int][]byte, proposers int) []byte {
	t.Helper()
	var first []byte
	for i, v := range got {
		if first == nil {
			first = v
		}
		if string(v) != string(first) {
			t.Fatalf("%s: node %d decided %q, another %q", duty, i, v, first)
		}
	}
	for i := range proposers {
		if string(first) == fmt.Sprintf("value-%d-%s", i, duty) {
			return first
		}
	}
	t.Fatalf("%s: decided %q was not proposed", duty, first)
	return nil
}
