package test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvmesh/dvmesh/node"
)

// faultyHandler serves h after delay, counting the attestation data requests; once frozen it
// answers nothing, holding every request until the client gives up or dead is closed.
type faultyHandler struct {
	h      http.Handler
	delay  time.Duration
	frozen atomic.Bool
	dead   chan struct{}
	reads  atomic.Int64
}

func (f *faultyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.frozen.Load() {
		select {
		case <-r.Context().Done():
		case <-f.dead:
		}
		return
	}
	if strings.HasSuffix(r.URL.Path, "/validator/attestation_data") {
		f.reads.Add(1)
	}
	time.Sleep(f.delay)
	f.h.ServeHTTP(w, r)
}

// TestCluster_BeaconFailover gives every node two beacon nodes of one simulated chain, a fast
// primary and a slower backup. Just before slot 6, which has a duty, the primary freezes (its
// requests hang: until the health check notices, only hedging saves the duty), early in slot 8
// it dies (connections refused): losing one of two beacon nodes must cost no duty at all, and
// nothing wrong may arrive.
func TestCluster_BeaconFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~35 s (with -race)")
	}
	const (
		epochs     = 3
		freezeSlot = 6
		killSlot   = 8
	)
	c := newCluster(t, 4)
	primaryH := &faultyHandler{h: c.sim.Handler(), dead: make(chan struct{})}
	backupH := &faultyHandler{h: c.sim.Handler(), delay: 20 * time.Millisecond, dead: make(chan struct{})}
	primary, backup := httptest.NewServer(primaryH), httptest.NewServer(backupH)
	for _, s := range []*httptest.Server{primary, backup} {
		t.Cleanup(func() { s.CloseClientConnections(); s.Close() })
	}
	logOut := io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	// The beacon clients outlive the nodes (cleanups run last-in first-out: nodes stop first).
	ctx, cancel := context.WithCancel(context.Background())
	var mbs []*node.MultiBeacon // wrap runs on this goroutine, once per node
	t.Cleanup(func() {
		cancel()
		for _, mb := range mbs {
			mb.Wait()
		}
	})
	c.start(func(node.Beacon) node.Beacon {
		mb, err := node.NewMultiBeacon(ctx, []string{primary.URL, backup.URL}, 5*time.Second,
			slog.New(slog.NewTextHandler(logOut, nil)).With("test_node", len(mbs)+1))
		if err != nil {
			t.Fatal(err)
		}
		mbs = append(mbs, mb)
		return mb
	})
	genesis := c.waitReadyAndStart()

	// Just before slot 6 (whose duty's requests then meet the frozen node), and before the
	// health check can notice.
	time.Sleep(time.Until(genesis.Add(freezeSlot*testSlot - testSlot/20)))
	primaryH.frozen.Store(true)
	readsBeforeKill := primaryH.reads.Load()
	backupReadsAtKill := backupH.reads.Load()
	time.Sleep(time.Until(genesis.Add(killSlot*testSlot + testSlot/10)))
	primary.Listener.Close() // no new connections, then drop the hung ones
	close(primaryH.dead)
	primary.CloseClientConnections()
	primary.Close()
	t.Logf("primary froze in slot %d and died in slot %d; attestation data reads before: primary %d, backup %d",
		freezeSlot, killSlot, readsBeforeKill, backupReadsAtKill)

	waitSlotsEnded(genesis, epochs*testSlotsPerEpoch)
	st := c.sim.Stats()
	c.stop()
	if readsBeforeKill == 0 {
		t.Error("the primary served no attestation data before it was killed: failover not exercised")
	}
	if backupH.reads.Load() == backupReadsAtKill {
		t.Error("the backup served no attestation data after the primary froze")
	}
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions: %+v", st.Totals.Wrong, st.RecentFailures)
	}
	for e := uint64(0); e < epochs; e++ {
		if got := epochCounts(st, e); got.Expected != 4 || got.Correct != 4 {
			t.Errorf("epoch %d: %d of %d duties correct, %d missing", e, got.Correct, got.Expected, got.Missing)
		}
	}
	for i, mb := range mbs {
		s := mb.Stats()
		t.Logf("node %d beacon nodes: %+v", i+1, s)
		if s[0].Healthy || s[0].Errors == 0 || !s[1].Healthy {
			t.Errorf("node %d: want the killed primary unhealthy with errors and the backup healthy: %+v", i+1, s)
		}
	}
}
