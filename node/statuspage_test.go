package node

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func testPubkey(b byte) phase0.BLSPubKey {
	var pk phase0.BLSPubKey
	for i := range pk {
		pk[i] = b
	}
	return pk
}

func TestStatusPage_RendersSections(t *testing.T) {
	v := readyView()
	a, b := testPubkey(0xaa), testPubkey(0xbb)
	ring := newDutyRing(8)
	deadline := v.Now.Add(-time.Second)
	ring.record(dutyKey{Slot: 7, Type: dutyAttester}, deadline, []phase0.BLSPubKey{a, b}, outcomeSuccess, "submitted", "")
	ring.record(dutyKey{Slot: 8, Type: dutyAttester}, deadline, []phase0.BLSPubKey{a, b}, outcomePending, "", "")
	ring.record(dutyKey{Slot: 8, Type: dutyAttester}, deadline, []phase0.BLSPubKey{b}, outcomeFailed, "no_consensus", "context deadline exceeded")
	v.Validators = ring.rates(v.Now, []phase0.BLSPubKey{a, b}, map[phase0.BLSPubKey]phase0.ValidatorIndex{a: 3})
	tr := newTracker(1)
	k7, k8 := dutyKey{Slot: 7, Type: dutyAttester}, dutyKey{Slot: 8, Type: dutyAttester}
	tr.Start(k7, 2)
	tr.Step(k7, StepFetch, 120*time.Millisecond)
	tr.Submitted(k7, 2, 640*time.Millisecond)
	tr.Finish(k7)
	tr.Start(k8, 2)
	tr.Fail(k8, StepConsensus, ReasonNoConsensus, errors.New("context deadline exceeded"))
	tr.Finish(k8)
	tr.AddPeer(DutyRecord{Slot: 7, Type: dutyAttester, Node: 3, Result: "success"})
	tr.AddPeer(DutyRecord{Slot: 7, Type: dutyAttester, Node: 2, Result: "failed"})
	v.Duties = dutyViews(tr.Records(nil), 1)
	if len(v.Duties) != 1 || len(v.Duties[0].Rows) != 2 || v.Duties[0].Rows[0].Slot != 8 || len(v.Duties[0].Rows[1].Peers) != 2 ||
		v.Duties[0].Rows[1].Peers[0].Node != 2 {
		t.Fatalf("duty views %+v", v.Duties)
	}

	code, page, hdr := get(t, monitorHandler(&fakeSource{v: v}), "/")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("/ = %d %s", code, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		"dvmesh node 1 of 4", `badge ok">ready`,
		"<h2>This node</h2>", "16Uiu2HAmSelf", "inst-1", "v0.0.0-test", "warm",
		"<h2>Raft</h2>", "follower", "node 2 ", "16Uiu2HAmPeerTwo",
		"<h2>Beacon node</h2>", "http://127.0.0.1:5052", "head slot 100, clock slot 101",
		"Cluster peers (3 of 3 others connected; 3 of 4 sign)", "/ip4/127.0.0.1/tcp/3613", "this node", ">connected<",
		"Recent duties", `badge ok">success</span> 2/2`, `badge failed">failed</span> 0/2`, "no_consensus", "at consensus",
		"context deadline exceeded", "fetch 120 ms · submitted 640 ms", `title="failed">n2<`, `title="success">n3<`,
		"Validators (success rate over the last 64 duties)", "0xaaaaaaaa…aaaaaa", `title="0x` + strings.Repeat("aa", 48), `partial">50%<`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(page)
	}
}

// TestStatusPage_EscapesUntrusted: the halted reason names peers and instance ids another
// process sent; it and every other string must be escaped.
func TestStatusPage_EscapesUntrusted(t *testing.T) {
	v := readyView()
	const evil = `<script>alert("x")</script>`
	v.Halted = "duplicate " + evil
	v.Doppelganger = evil
	v.Peers[1].Address = evil
	v.Beacon = beaconProbe{Err: evil}
	v.Beacons = []beaconView{{URL: `http://x/"><img src=x onerror=alert(1)>`}}
	tr := newTracker(1)
	tr.Start(dutyKey{Slot: 1, Type: evil}, 1)
	tr.Fail(dutyKey{Slot: 1, Type: evil}, evil, evil, errors.New(evil))
	tr.AddPeer(DutyRecord{Slot: 1, Type: evil, Node: 2, Result: evil})
	v.Duties = dutyViews(tr.Records(nil), 1)

	code, page, hdr := get(t, monitorHandler(&fakeSource{v: v}), "/")
	if code != http.StatusOK {
		t.Fatalf("/ = %d", code)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Fatalf("untrusted markup not escaped:\n%s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Fatalf("escaped halted reason missing:\n%s", page)
	}
	if !strings.Contains(page, "Signing halted:") || !strings.Contains(page, "not ready") {
		t.Fatal("halted node not shown as halted and not ready")
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
}

func TestStatusPage_Empty(t *testing.T) {
	// A node that has just started: no chain, no duties, no validators known.
	v := nodeView{ShareIndex: 2, Threshold: 3, Operators: 4, RaftRole: "follower", Beacon: beaconProbe{Answered: true, PreGenesis: true}}
	code, page, _ := get(t, monitorHandler(&fakeSource{v: v}), "/")
	if code != http.StatusOK || !strings.Contains(page, "No duty recorded yet.") || !strings.Contains(page, "chain genesis not reached yet") ||
		!strings.Contains(page, "raft: no leader known") {
		t.Fatalf("/ = %d:\n%s", code, page)
	}
}

func TestStatusDutyRing_MergeAndRates(t *testing.T) {
	a, b, c := testPubkey(1), testPubkey(2), testPubkey(3)
	now := time.Unix(1000, 0)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	r := newDutyRing(10)
	k := func(s phase0.Slot) dutyKey { return dutyKey{Slot: s, Type: dutyAttester} }
	// Slot 1: a succeeds after failing to sign itself (peers' partials recovered), b fails.
	r.record(k(1), past, []phase0.BLSPubKey{a, b}, outcomePending, "", "")
	r.record(k(1), past, []phase0.BLSPubKey{a, b}, outcomeFailed, "doppelganger", "blocked")
	r.record(k(1), past, []phase0.BLSPubKey{a}, outcomeSuccess, "submitted", "")
	r.record(k(1), past, []phase0.BLSPubKey{b}, outcomeFailed, "beacon_error", "second failure does not replace the first")
	r.record(k(1), past, []phase0.BLSPubKey{a}, outcomeFailed, "beacon_error", "a failure does not replace a success")
	// Slot 2: started, no outcome, slot over: missed. Slot 3: started, slot not over: in progress.
	r.record(k(2), past, []phase0.BLSPubKey{a}, outcomePending, "", "")
	r.record(k(3), future, []phase0.BLSPubKey{a, c}, outcomePending, "", "")

	rates := r.rates(now, []phase0.BLSPubKey{b, a}, map[phase0.BLSPubKey]phase0.ValidatorIndex{a: 7})
	// Lock order first (b, a), then c, which only the ring knows.
	if len(rates) != 3 || rates[0].Pubkey != "0x"+strings.Repeat("02", 48) || rates[2].Pubkey != "0x"+strings.Repeat("03", 48) {
		t.Fatalf("rates %+v", rates)
	}
	if got := rates[0]; got.Expected != 1 || got.Succeeded != 0 || got.Failed != 1 || got.Rate != "0%" || got.Class != "failed" || got.Index != "" {
		t.Errorf("b: %+v", got)
	}
	if got := rates[1]; got.Expected != 2 || got.Succeeded != 1 || got.Missed != 1 || got.Rate != "50%" || got.Class != "partial" || got.Index != "7" {
		t.Errorf("a: %+v", got)
	}
	if got := rates[2]; got.Expected != 0 || got.Rate != "–" {
		t.Errorf("c (in progress only): %+v", got)
	}
}

func TestStatusDutyRing_Bounded(t *testing.T) {
	r := newDutyRing(3)
	pk := []phase0.BLSPubKey{testPubkey(1)}
	for s := phase0.Slot(10); s < 15; s++ {
		r.record(dutyKey{Slot: s, Type: dutyAttester}, time.Time{}, pk, outcomeSuccess, "submitted", "")
	}
	// Older than every kept duty while full: dropped. Between kept ones: kept, oldest evicted.
	r.record(dutyKey{Slot: 5, Type: dutyAttester}, time.Time{}, pk, outcomeFailed, "late", "")
	r.record(dutyKey{Slot: 13, Type: "aggregator"}, time.Time{}, pk, outcomeFailed, "late", strings.Repeat("é", 500))
	var got []string
	for _, e := range r.entries {
		got = append(got, e.key.String())
	}
	if strings.Join(got, " ") != "aggregator@13 attester@13 attester@14" {
		t.Fatalf("entries %v", got)
	}
	if d := r.entries[0].outcomes[pk[0]].detail; len(d) > maxOutcomeDetail+len("…") || !strings.HasSuffix(d, "…") || !strings.HasPrefix(d, "é") {
		t.Fatalf("detail not truncated on a rune boundary: %q", d)
	}
	if rates := r.rates(time.Now(), nil, nil); len(rates) != 1 || rates[0].Expected != 3 || rates[0].Succeeded != 2 || rates[0].Rate != "66%" {
		t.Fatalf("rates %+v", rates)
	}
	var nilRing *dutyRing
	nilRing.record(dutyKey{}, time.Time{}, pk, outcomeSuccess, "", "") // no panic
	if rates := nilRing.rates(time.Now(), pk, nil); len(rates) != 1 || rates[0].Rate != "–" {
		t.Fatalf("nil ring rates %+v", rates)
	}
	r.record(dutyKey{Slot: 20, Type: dutyAttester}, time.Time{}, nil, outcomeSuccess, "", "")
	if len(r.entries) != 3 || r.entries[2].key.Slot != 14 {
		t.Fatal("an outcome for no validator created an entry")
	}
}

// TestStatusDutyRing_NodeHooks checks the hooks every duty calls: no-ops without a ring; with
// one, outcomes land per validator.
func TestStatusDutyRing_NodeHooks(t *testing.T) {
	a, b := testPubkey(1), testPubkey(2)
	n := &Node{indices: map[phase0.BLSPubKey]phase0.ValidatorIndex{a: 10, b: 11}}
	key := dutyKey{Slot: 4, Type: dutyAttester}
	duties := []phase0.BLSPubKey{a, b}
	n.recordDutyStart(key, duties) // no ring: nothing happens
	ring := newDutyRing(4)
	n.ring = ring

	n.recordDutyStart(key, duties)
	n.recordDutyFailure(key, duties[1:], "no_consensus", errors.New("timeout"))
	n.recordSubmission(key, []phase0.BLSPubKey{a}, nil)
	rates := ring.rates(time.Now(), []phase0.BLSPubKey{a, b}, nil)
	if rates[0].Succeeded != 1 || rates[1].Failed != 1 {
		t.Fatalf("rates %+v", rates)
	}
	n.recordSubmission(dutyKey{Slot: 5, Type: dutyAttester}, []phase0.BLSPubKey{a}, errors.New("503"))
	ring.mu.Lock()
	defer ring.mu.Unlock()
	if e := ring.entries[1]; e.key.Slot != 5 || e.outcomes[a].state != outcomeFailed || e.outcomes[a].reason != ReasonBeaconError || e.outcomes[a].detail != "503" {
		t.Fatalf("entry %+v", e)
	}
}
