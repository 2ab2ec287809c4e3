package simbeacon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func TestFeistelIsAPermutation(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 16, 17, 1000, 4097} {
		f := newFeistel(n, 42+n)
		seen := make([]bool, n)
		moved := 0
		for x := range n {
			y := f.forward(x)
			if y >= n || seen[y] {
				t.Fatalf("n=%d: forward(%d) = %d repeats or is out of range", n, x, y)
			}
			seen[y] = true
			if f.inverse(y) != x {
				t.Fatalf("n=%d: inverse(forward(%d)) = %d", n, x, f.inverse(y))
			}
			if y != x {
				moved++
			}
		}
		if n >= 16 && moved < int(n/2) {
			t.Errorf("n=%d: only %d of %d indices moved: not much of a shuffle", n, moved, n)
		}
	}
	if newFeistel(1000, 1).forward(5) == newFeistel(1000, 2).forward(5) && newFeistel(1000, 1).forward(6) == newFeistel(1000, 2).forward(6) {
		t.Error("different keys give the same permutation")
	}
}

func TestCommitteeLayout(t *testing.T) {
	for _, c := range []struct {
		n, spe, cps uint64
	}{
		{1, 8, 1}, {5, 8, 1}, {16, 8, 1}, {1000, 8, 1}, {20_000, 8, 19}, {500_000, 32, 64}, {2_000_000, 32, 64},
	} {
		sim, err := New(Config{SlotDuration: time.Second, SlotsPerEpoch: c.spe, NetworkSize: c.n})
		if err != nil {
			t.Fatal(err)
		}
		sh := sim.shuffle(3)
		if sh.cps != c.cps {
			t.Errorf("n=%d: %d committees per slot, want %d", c.n, sh.cps, c.cps)
		}
		// Committees partition the network: their lengths add up and differ by at most one.
		var total, lo, hi uint64 = 0, c.n, 0
		for slot := sh.start; slot < sh.start+phase0.Slot(c.spe); slot++ {
			for ci := range phase0.CommitteeIndex(sh.cps) {
				l := sh.committeeLength(slot, ci)
				total += l
				lo, hi = min(lo, l), max(hi, l)
			}
		}
		if total != c.n || hi-lo > 1 {
			t.Errorf("n=%d: committee lengths add to %d, range %d..%d", c.n, total, lo, hi)
		}
		// Duties and committees agree, for a sample of validators.
		for _, v := range []uint64{0, c.n / 3, c.n / 2, c.n - 1} {
			d := sh.dutyOf(phase0.ValidatorIndex(v))
			members := sh.committee(d.slot, d.committeeIndex)
			if uint64(len(members)) != d.committeeLength || d.position >= d.committeeLength || members[d.position] != phase0.ValidatorIndex(v) {
				t.Errorf("n=%d: validator %d duty %+v, committee has %d members", c.n, v, d, len(members))
			}
		}
	}
}

func TestLargeNetworkScales(t *testing.T) {
	const n = 600_000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()

	e := newEnvWith(t, 8*testSlot+testSlot/2, func(c *Config) { c.NetworkSize = n; c.SlotsPerEpoch = 32 }) // slot 8, epoch 0
	ctx := context.Background()
	virtual := phase0.ValidatorIndex(n - 7)
	resp, err := e.client.AttesterDuties(ctx, &eth2api.AttesterDutiesOpts{Epoch: 1, Indices: []phase0.ValidatorIndex{0, 3, virtual, n + 5}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 3 {
		t.Fatalf("%d duties, want 3 (the index beyond the network gets none)", len(resp.Data))
	}
	for _, d := range resp.Data {
		if d.CommitteesAtSlot != 64 || d.CommitteeLength < n/32/64 || d.CommitteeLength > n/32/64+1 || d.Slot < 32 || d.Slot >= 64 {
			t.Errorf("duty %+v: want 64 committees of ~%d at a slot of epoch 1", d, n/32/64)
		}
	}
	if resp.Data[2].PubKey != virtualPubkey(virtual) {
		t.Errorf("virtual validator's duty has public key %#x", resp.Data[2].PubKey)
	}

	props, err := e.client.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(props.Data) != 32 {
		t.Fatalf("%d proposer duties, want 32", len(props.Data))
	}
	distinct := map[phase0.ValidatorIndex]bool{}
	for _, p := range props.Data {
		distinct[p.ValidatorIndex] = true
		if p.PubKey != e.sim.pubkeyOf(p.ValidatorIndex) {
			t.Errorf("proposer duty %+v: wrong public key", p)
		}
	}
	if len(distinct) < 28 {
		t.Errorf("only %d distinct proposers among 32 slots of a network of %d", len(distinct), n)
	}

	vals, err := e.client.Validators(ctx, &eth2api.ValidatorsOpts{State: "head", PubKeys: []phase0.BLSPubKey{virtualPubkey(virtual), e.sim.cfg.Validators[2], virtualPubkey(n + 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vals.Data) != 2 || vals.Data[virtual] == nil || vals.Data[2] == nil {
		t.Errorf("validators by public key: %v", vals.Data)
	}
	if code, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/states/head/validators", "", nil); code != 200 || strings.Count(body, `"index"`) != testValidators {
		t.Errorf("validators without ids: %d, want the %d configured ones", strings.Count(body, `"index"`), testValidators)
	}

	sync, err := e.client.SyncCommitteeDuties(ctx, &eth2api.SyncCommitteeDutiesOpts{Epoch: 1, Indices: []phase0.ValidatorIndex{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	seats := 0
	for _, m := range e.sim.syncCommitteeOf(0).members {
		seats += len(m)
	}
	if seats != syncCommitteeSize || len(e.sim.syncCommitteeOf(0).members) < 400 {
		t.Errorf("%d seats held by %d validators", seats, len(e.sim.syncCommitteeOf(0).members))
	}
	if len(sync.Data) > 1 {
		t.Errorf("%d of 4 configured validators of %d sit in the sync committee", len(sync.Data), n)
	}

	// Stats stay cheap: they depend on the configured validators, not on the network.
	if st := e.sim.Stats(); st.Totals.Expected > testValidators {
		t.Errorf("expected attesters so far %d", st.Totals.Expected)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 32<<20 {
		t.Errorf("heap grew by %d MiB for a network of %d", grown>>20, n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestSmallNetworkFavoursConfiguredValidators(t *testing.T) {
	e := newEnv(t, testSlot/2)
	ctx := context.Background()
	props, err := e.client.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(props.Data) != testSlotsPerEpoch {
		t.Fatalf("%d proposer duties", len(props.Data))
	}
	for _, p := range props.Data {
		if uint64(p.ValidatorIndex) != uint64(p.Slot)%testValidators || p.PubKey != e.sim.cfg.Validators[p.ValidatorIndex] {
			t.Errorf("proposer duty %+v: want validator slot mod %d", p, testValidators)
		}
	}
	if props.Metadata["dependent_root"] != blockRoot(testSlotsPerEpoch-1) {
		t.Errorf("proposer dependent root %v", props.Metadata["dependent_root"])
	}
	// Epoch 0 has no proposer at slot 0.
	props0, err := e.client.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 0})
	if err != nil || len(props0.Data) != testSlotsPerEpoch-1 || props0.Data[0].Slot != 1 {
		t.Errorf("epoch 0 proposers: %+v, %v", props0, err)
	}
	if _, err := e.client.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 2}); err == nil {
		t.Error("proposer duties two epochs ahead were served")
	}

	all := make([]phase0.ValidatorIndex, testValidators)
	for i := range all {
		all[i] = phase0.ValidatorIndex(testValidators - 1 - i)
	}
	sync, err := e.client.SyncCommitteeDuties(ctx, &eth2api.SyncCommitteeDutiesOpts{Epoch: 1, Indices: all})
	if err != nil {
		t.Fatal(err)
	}
	if len(sync.Data) != testValidators {
		t.Fatalf("%d sync duties, want every validator", len(sync.Data))
	}
	seats := map[phase0.CommitteeIndex]bool{}
	for i, d := range sync.Data {
		subnets := map[uint64]bool{}
		for _, s := range d.ValidatorSyncCommitteeIndices {
			if seats[s] || s >= syncCommitteeSize {
				t.Errorf("seat %d repeated or out of range", s)
			}
			seats[s] = true
			subnets[uint64(s)/syncSubcommitteeSize] = true
		}
		if d.ValidatorIndex != all[i] || len(d.ValidatorSyncCommitteeIndices) != syncCommitteeSize/testValidators || len(subnets) != syncCommitteeSubnetCount {
			t.Errorf("sync duty %d: validator %d with %d seats in %d subnets", i, d.ValidatorIndex, len(d.ValidatorSyncCommitteeIndices), len(subnets))
		}
	}
	if _, err := e.client.SyncCommitteeDuties(ctx, &eth2api.SyncCommitteeDutiesOpts{Epoch: 2 * epochsPerSyncCommitteePeriod, Indices: all}); err == nil {
		t.Error("sync duties two periods ahead were served")
	}
}

func TestReorgReshufflesAndChangesDependentRoots(t *testing.T) {
	e := newEnv(t, 2*testSlotsPerEpoch*testSlot+testSlot) // epoch 2
	ctx := context.Background()
	indices := make([]phase0.ValidatorIndex, testValidators)
	for i := range indices {
		indices[i] = phase0.ValidatorIndex(i)
	}
	fetch := func(epoch phase0.Epoch) ([]*apiv1.AttesterDuty, phase0.Root) {
		t.Helper()
		resp, err := e.client.AttesterDuties(ctx, &eth2api.AttesterDutiesOpts{Epoch: epoch, Indices: indices})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Data, resp.Metadata["dependent_root"].(phase0.Root)
	}
	before1, root1 := fetch(1)
	before2, root2 := fetch(2)
	before3, root3 := fetch(3)
	propBefore, _ := e.sim.proposer(2*testSlotsPerEpoch + 3)

	code, body := rawDo(t, "POST", e.srv.URL+"/dvmesh/sim/reorg", "", nil)
	var res ReorgResult
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || res.Epoch != 2 {
		t.Fatalf("reorg: %d %s", code, body)
	}
	after1, root1b := fetch(1)
	after2, root2b := fetch(2)
	after3, root3b := fetch(3)
	if root1b != root1 || fmt.Sprint(after1) != fmt.Sprint(before1) {
		t.Error("the previous epoch changed")
	}
	if root2b == root2 || root3b == root3 || root2b != res.AttesterDependentRoot || root3b != res.NextAttesterDependentRoot {
		t.Errorf("dependent roots %#x %#x -> %#x %#x (result %+v)", root2, root3, root2b, root3b, res)
	}
	moved := 0
	for i := range before2 {
		if *before2[i] != *after2[i] {
			moved++
		}
		if *before3[i] != *after3[i] {
			moved++
		}
	}
	if moved < testValidators {
		t.Errorf("only %d of %d duties moved", moved, 2*testValidators)
	}
	if propAfter, _ := e.sim.proposer(2*testSlotsPerEpoch + 3); propAfter == propBefore {
		t.Errorf("proposer stayed %d", propAfter)
	}
	// Head events carry the new roots.
	rec := httptest.NewRecorder()
	if err := e.sim.emitSlot(rec, map[string]bool{"head": true}, 2*testSlotsPerEpoch+1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`"previous_duty_dependent_root":"%#x"`, res.AttesterDependentRoot),
		fmt.Sprintf(`"current_duty_dependent_root":"%#x"`, res.ProposerDependentRoot),
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("head event %s lacks %s", rec.Body.String(), want)
		}
	}
	props, err := e.client.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 2})
	if err != nil || props.Metadata["dependent_root"] != res.ProposerDependentRoot {
		t.Errorf("proposer duties after reorg: %v, %v", props, err)
	}
	if code, _ := rawDo(t, "GET", e.srv.URL+"/dvmesh/sim/reorg", "", nil); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Errorf("GET reorg: %d", code)
	}
}
