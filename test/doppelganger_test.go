package test

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dvmesh/dvmesh/node"
)

// metric reads one unlabelled series from a node's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func (c *cluster) initSlashing(t *testing.T) {
	t.Helper()
	pks := c.lock.GroupPubkeys()
	for i := 1; i <= 4; i++ {
		if err := node.InitSlashingDB(c.dataDir(i), c.sim.GenesisValidatorsRoot(), pks); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCluster_DoppelgangerCaughtAtColdStart starts a cluster after genesis (cold: no node signed
// recently) while another machine signs with validator 0: that validator is refused by every
// node, the others sign once the doppelganger window is over.
func TestCluster_DoppelgangerCaughtAtColdStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~40 s")
	}
	c := newCluster(t, 4)
	c.doppelgangerEpochs = 1
	c.initSlashing(t)
	genesis := time.Unix(time.Now().Unix()+1, 0)
	c.sim.SetGenesis(genesis)
	c.sim.SetForeignSigner(0, true)
	time.Sleep(time.Until(genesis.Add(testSlot / 2)))
	c.start(nil)
	// Each node decides cold and names the epoch it may sign from (its start epoch plus the
	// window; the last liveness answer comes half a slot into that epoch). Under load a node may
	// start an epoch late, so the checks below count from the latest such epoch.
	from := uint64(0)
	deadline := time.Now().Add(60 * time.Second)
	for i := 1; i <= 4; i++ {
		for {
			st, err := status(t, c.monitoring[i-1])
			if err == nil && strings.HasPrefix(st.Doppelganger, "cold") {
				var n, e uint64
				if _, err := fmt.Sscanf(st.Doppelganger, "cold: %d validator(s) wait until epoch %d", &n, &e); err != nil {
					if _, err := fmt.Sscanf(st.Doppelganger, "cold start checked through epoch %d", &e); err != nil {
						t.Fatalf("node %d: doppelganger state %q: %v", i, st.Doppelganger, err)
					}
					e++
				}
				from = max(from, e)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never decided cold: %+v %v", i, st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitSlotsEnded(genesis, int(from+3)*testSlotsPerEpoch)
	st := c.sim.Stats()
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions", st.Totals.Wrong)
	}
	for e := uint64(0); e <= from+2; e++ {
		got := epochCounts(st, e)
		if got.Correct > 3 {
			t.Errorf("epoch %d: %d correct: the doppelganger's validator was signed for", e, got.Correct)
		}
		if e > from && (got.Correct != 3 || got.Expected != 4) {
			t.Errorf("epoch %d: %d of %d correct, want the 3 honest validators", e, got.Correct, got.Expected)
		}
	}
	if got := reasonsOf(duties(t, c.monitoring[0]), 1); !got[node.ReasonDoppelganger] && !got[node.ReasonStartupGuard] {
		t.Errorf("node 1's records give reasons %v, want the start-up guard and doppelganger wait of a cold start", got)
	}
	for i := 1; i <= 4; i++ {
		if got := metric(t, c.monitoring[i-1], "dvmesh_doppelgangers_detected_total"); got != 1 {
			t.Errorf("node %d detected %v doppelgangers, want 1", i, got)
		}
	}
}

// TestCluster_RestartedNodeJoinsWarm restarts one node of a running cluster: its peers kept the
// validators live, so it joins without a doppelganger wait and signs from the next epoch on
// (the start-up guard still refuses the epoch it restarted in).
func TestCluster_RestartedNodeJoinsWarm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~40 s")
	}
	c := newCluster(t, 4)
	c.start(nil)
	genesis := c.waitReadyAndStart()
	time.Sleep(time.Until(genesis.Add((testSlotsPerEpoch + 1) * testSlot))) // slot 5, epoch 1
	c.stopNode(3)
	c.startNode(3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := status(t, c.monitoring[2])
		if err == nil && st.Doppelganger != "" {
			if st.Doppelganger != "warm" {
				t.Fatalf("restarted node: doppelganger %q, want warm", st.Doppelganger)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node reports no doppelganger decision: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitSlotsEnded(genesis, 3*testSlotsPerEpoch)
	if got := reasonsOf(duties(t, c.monitoring[2]), 3); !got[node.ReasonStartupGuard] {
		t.Errorf("restarted node's records give reasons %v, want startup_guard for the epoch it restarted in", got)
	}
	if got := metric(t, c.monitoring[2], "dvmesh_partials_signed_total"); got < 4 {
		t.Errorf("restarted node signed %v partials in epoch 2, want all 4 validators'", got)
	}
	st := c.sim.Stats()
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions", st.Totals.Wrong)
	}
	for e := uint64(0); e < 3; e++ {
		if got := epochCounts(st, e); got.Correct != 4 {
			t.Errorf("epoch %d: %d of %d correct", e, got.Correct, got.Expected)
		}
	}
}
