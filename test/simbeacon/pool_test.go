package simbeacon

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// dutiesAt returns the duties of epoch 1 grouped by slot, and a slot of epoch 1 with at least two
// attesters.
func dutiesAt(t *testing.T, e *env) (map[phase0.Slot][]*apiv1.AttesterDuty, phase0.Slot) {
	t.Helper()
	bySlot := map[phase0.Slot][]*apiv1.AttesterDuty{}
	for _, d := range e.duties(t, 1) {
		bySlot[d.Slot] = append(bySlot[d.Slot], d)
	}
	for slot := phase0.Slot(testSlotsPerEpoch); slot < 2*testSlotsPerEpoch; slot++ {
		if len(bySlot[slot]) >= 2 {
			return bySlot, slot
		}
	}
	t.Fatal("no slot of epoch 1 has two attesters")
	return nil, 0
}

func (e *env) submit(atts ...*spec.VersionedAttestation) error {
	return e.client.SubmitAttestations(context.Background(), &eth2api.SubmitAttestationsOpts{Attestations: atts})
}

func (e *env) data(t *testing.T, slot phase0.Slot) *phase0.AttestationData {
	t.Helper()
	resp, err := e.client.AttestationData(context.Background(), &eth2api.AttestationDataOpts{Slot: slot})
	if err != nil {
		t.Fatalf("attestation data for slot %d: %v", slot, err)
	}
	return resp.Data
}

func row(t *testing.T, st Stats, slot phase0.Slot) SlotStats {
	t.Helper()
	if int(slot) >= len(st.Slots) || st.Slots[slot].Slot != slot {
		t.Fatalf("stats have no row for slot %d: %+v", slot, st.Slots)
	}
	return st.Slots[slot]
}

func TestCorrectAttestationCountsOnce(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	duty := bySlot[slot][0]
	e.atSlot(slot, 0.34)

	data := e.data(t, slot)
	att := versioned(duty, data, e.sign(t, e.keys[duty.ValidatorIndex], data))
	if err := e.submit(att); err != nil {
		t.Fatalf("correct attestation refused: %v", err)
	}
	// Several nodes of a cluster submit the same aggregate signature: counted once.
	if err := e.submit(att, att); err != nil {
		t.Fatalf("duplicate refused: %v", err)
	}
	r := row(t, e.sim.Stats(), slot)
	want := SlotStats{Slot: slot, Counts: Counts{Expected: uint64(len(bySlot[slot])), Correct: 1}}
	if r != want {
		t.Errorf("during the slot: %+v, want %+v", r, want)
	}

	// After the slot: the other attesters of the slot are missing.
	e.atSlot(slot+1, 0.1)
	st := e.sim.Stats()
	r = row(t, st, slot)
	want.Ended, want.Missing = true, want.Expected-1
	if r != want {
		t.Errorf("after the slot: %+v, want %+v", r, want)
	}
	// Every ended slot before it is entirely missing; nothing is wrong.
	var expected uint64
	for s := phase0.Slot(0); s <= slot; s++ {
		expected += row(t, st, s).Expected
	}
	if st.Totals.Wrong != 0 || st.Totals.Correct != 1 || st.Totals.Missing != expected-1 || !st.Started || st.CurrentSlot != slot+1 {
		t.Errorf("totals %+v (current slot %d), want 1 correct of %d ended", st.Totals, st.CurrentSlot, expected)
	}
	// The per-type view counts the same: 3 submissions of one valid duty.
	want2 := DutyCounts{Expected: st.Totals.Expected, Submitted: 3, Valid: 1, Missed: st.Totals.Missing}
	if got := st.Duties[DutyAttester]; got != want2 {
		t.Errorf("attester duty counts %+v, want %+v", got, want2)
	}
	if got := st.ValidatorDuties[duty.ValidatorIndex][DutyAttester]; got.Valid != 1 || got.Submitted != 3 || got.Missed != 1 || got.Expected != 2 {
		t.Errorf("validator %d attester counts %+v, want 1 valid of 2 (epoch 0 missed)", duty.ValidatorIndex, got)
	}
}

func TestWrongSignatureCountsWrongAnd400(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	good, bad := bySlot[slot][0], bySlot[slot][1]
	e.atSlot(slot, 0.5)
	data := e.data(t, slot)

	// bad is signed with good's key; good is correct. Both in one request: the valid one counts,
	// the request fails with the bad one's index.
	err := e.submit(
		versioned(good, data, e.sign(t, e.keys[good.ValidatorIndex], data)),
		versioned(bad, data, e.sign(t, e.keys[good.ValidatorIndex], data)),
	)
	code, body := errorStatus(err)
	if code != http.StatusBadRequest {
		t.Fatalf("bad signature: err %v, want a 400", err)
	}
	var ae apiError
	if err := json.Unmarshal([]byte(body), &ae); err != nil || ae.Code != 400 || len(ae.Failures) != 1 || ae.Failures[0].Index != 1 ||
		!strings.Contains(ae.Failures[0].Message, "signature") {
		t.Errorf("error body %s (%v)", body, err)
	}
	// A signature over the right data but with the wrong fork version is wrong too.
	wrongFork := e.signAt(t, e.keys[bad.ValidatorIndex], data, phase0.Version{0x60, 0, 0, 0})
	if code, _ := errorStatus(e.submit(versioned(bad, data, wrongFork))); code != http.StatusBadRequest {
		t.Errorf("electra-domain signature: status %d, want 400", code)
	}

	r := row(t, e.sim.Stats(), slot)
	if r.Correct != 1 || r.Wrong != 2 {
		t.Errorf("row %+v, want 1 correct and 2 wrong", r)
	}
	if st := e.sim.Stats(); len(st.RecentFailures) != 2 || st.RecentFailures[0].ValidatorIndex != bad.ValidatorIndex {
		t.Errorf("recent failures %+v", st.RecentFailures)
	}
}

func TestWrongDataCountsWrong(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	duty := bySlot[slot][0]
	e.atSlot(slot, 0.5)

	mutations := map[string]func(d *phase0.AttestationData){
		"target root": func(d *phase0.AttestationData) { d.Target.Root[0] ^= 1 },
		"far target":  func(d *phase0.AttestationData) { d.Target.Epoch = 1000 },
		"source":      func(d *phase0.AttestationData) { d.Source.Root[0] ^= 1 },
		"block":       func(d *phase0.AttestationData) { d.BeaconBlockRoot = blockRoot(slot - 1) },
		"index":       func(d *phase0.AttestationData) { d.Index = 1 },
	}
	for name, mutate := range mutations {
		data := e.data(t, slot)
		mutate(data)
		// Correctly signed, but over data the chain does not serve.
		if code, body := errorStatus(e.submit(versioned(duty, data, e.sign(t, e.keys[duty.ValidatorIndex], data)))); code != 400 ||
			!strings.Contains(body, "data.") {
			t.Errorf("%s: status %d %s, want 400 naming the data field", name, code, body)
		}
	}
	// No duty: another slot's attester signs this slot's data.
	var other *apiv1.AttesterDuty
	for s, ds := range bySlot {
		if s != slot {
			other = ds[0]
			break
		}
	}
	data := e.data(t, slot)
	if code, body := errorStatus(e.submit(versioned(&apiv1.AttesterDuty{ValidatorIndex: other.ValidatorIndex, CommitteeLength: 1}, data,
		e.sign(t, e.keys[other.ValidatorIndex], data)))); code != 400 || !strings.Contains(body, "no attester duty") {
		t.Errorf("no duty: %d %s", code, body)
	}
	// Future slot.
	future := e.sim.attestationData(slot + 1)
	if code, body := errorStatus(e.submit(versioned(duty, future, e.sign(t, e.keys[duty.ValidatorIndex], future)))); code != 400 ||
		!strings.Contains(body, "future") {
		t.Errorf("future slot: %d %s", code, body)
	}

	st := e.sim.Stats()
	r := row(t, st, slot)
	if r.Correct != 0 || r.Wrong != uint64(len(mutations))+1 {
		t.Errorf("row %+v, want %d wrong", r, len(mutations)+1)
	}
	if st.Totals.Wrong != r.Wrong+1 { // the future one names no slot of the chain yet
		t.Errorf("totals %+v", st.Totals)
	}
}

func TestLateAndMissing(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	late := bySlot[slot][0]
	e.atSlot(slot, 0.5)
	data := e.data(t, slot)

	e.atSlot(slot+2, 0) // the slot has ended
	if err := e.submit(versioned(late, data, e.sign(t, e.keys[late.ValidatorIndex], data))); err != nil {
		t.Fatalf("late attestation refused: %v", err)
	}
	r := row(t, e.sim.Stats(), slot)
	n := uint64(len(bySlot[slot]))
	want := SlotStats{Slot: slot, Ended: true, Counts: Counts{Expected: n, Late: 1, Missing: n}}
	if r != want {
		t.Errorf("row %+v, want %+v", r, want)
	}
	// The current slot has not ended: nothing is missing there yet.
	if cur := row(t, e.sim.Stats(), slot+2); cur.Ended || cur.Missing != 0 {
		t.Errorf("current slot row %+v", cur)
	}
}

func TestWrongConsensusVersion(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	duty := bySlot[slot][0]
	e.atSlot(slot, 0.5)
	data := e.data(t, slot)
	att := versioned(duty, data, e.sign(t, e.keys[duty.ValidatorIndex], data))
	att.Version, att.Electra, att.Fulu = spec.DataVersionElectra, att.Fulu, nil
	if code, body := errorStatus(e.submit(att)); code != 400 || !strings.Contains(body, "Eth-Consensus-Version") {
		t.Errorf("electra-versioned submission: %d %s", code, body)
	}
	if r := row(t, e.sim.Stats(), slot); r.Wrong != 1 || r.Correct != 0 {
		t.Errorf("row %+v", r)
	}
}

func TestSimEndpoints(t *testing.T) {
	e := newEnv(t, 3*testSlot)
	code, body := rawDo(t, "GET", e.srv.URL+"/dvmesh/sim/stats", "", nil)
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.CurrentSlot != 3 || len(st.Slots) != 4 {
		t.Fatalf("stats: %d %s (%v)", code, body, err)
	}
	if st.Totals.Expected == 0 || st.Totals.Missing != st.Totals.Expected-st.Slots[3].Expected {
		t.Errorf("totals %+v", st.Totals)
	}
	code, body = rawDo(t, "POST", e.srv.URL+"/dvmesh/sim/genesis?time=1700000100", "", nil)
	if g, _ := e.sim.Genesis(); code != 200 || g.Unix() != 1_700_000_100 || !strings.Contains(body, `"genesis_time":"1700000100"`) {
		t.Errorf("set genesis: %d %s, genesis %v", code, body, g)
	}
	if st := e.sim.Stats(); st.Started {
		t.Errorf("started before the new genesis: %+v", st)
	}
}

// TestBatchVerifiedSubmission: a submission's valid attestations are verified in one batch per
// signing root and remembered; a batch with a bad signature remembers none of it (the test above
// shows the per-attestation check then names the bad one).
func TestBatchVerifiedSubmission(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e)
	if len(bySlot[slot]) < 2 {
		t.Skip("fewer than two attesters in the slot")
	}
	e.atSlot(slot, 0.5)
	data := e.data(t, slot)
	var atts []*spec.VersionedAttestation
	for _, d := range bySlot[slot] {
		atts = append(atts, versioned(d, data, e.sign(t, e.keys[d.ValidatorIndex], data)))
	}
	e.sim.seenMu.Lock()
	before := len(e.sim.seen)
	e.sim.seenMu.Unlock()
	// Only the batch pre-check can fill the cache before the per-attestation checks run: call it
	// alone first, then submit.
	var raw []json.RawMessage
	for _, a := range atts {
		b, err := json.Marshal(&electra.SingleAttestation{CommitteeIndex: data.Index, AttesterIndex: *a.ValidatorIndex, Data: a.Fulu.Data, Signature: a.Fulu.Signature})
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	e.sim.batchVerifyAttestations(raw)
	e.sim.seenMu.Lock()
	after := len(e.sim.seen)
	e.sim.seenMu.Unlock()
	if after-before != len(atts) {
		t.Fatalf("batch remembered %d of %d valid signatures", after-before, len(atts))
	}
	if err := e.submit(atts...); err != nil {
		t.Fatalf("valid batch: %v", err)
	}
	if r := row(t, e.sim.Stats(), slot); r.Correct != uint64(len(atts)) {
		t.Errorf("row %+v, want %d correct", r, len(atts))
	}
}
