package simbeacon

import (
	"context"
	"net/http"
	"strings"
	"testing"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// attest submits duty's correctly signed attestation.
func (e *env) attest(t *testing.T, d *apiv1.AttesterDuty) {
	t.Helper()
	data := e.data(t, d.Slot)
	if err := e.submit(versioned(d, data, e.sign(t, e.keys[d.ValidatorIndex], data))); err != nil {
		t.Fatalf("attestation of %d: %v", d.ValidatorIndex, err)
	}
}

// selectionProof is validator v's slot signature under DOMAIN_SELECTION_PROOF.
func (e *env) selectionProof(t *testing.T, v phase0.ValidatorIndex, slot phase0.Slot) phase0.BLSSignature {
	t.Helper()
	return e.signObj(t, e.keys[v], sszUint64(slot), signing.DomainSelectionProof, fuluVersion)
}

// signedAggregate wraps agg into an aggregate and proof of v, signed under domain type dt.
func (e *env) signedAggregate(t *testing.T, v phase0.ValidatorIndex, agg *electra.Attestation, proof phase0.BLSSignature, dt phase0.DomainType) *spec.VersionedSignedAggregateAndProof {
	t.Helper()
	msg := &electra.AggregateAndProof{AggregatorIndex: v, Aggregate: agg, SelectionProof: proof}
	return &spec.VersionedSignedAggregateAndProof{
		Version: spec.DataVersionFulu,
		Fulu:    &electra.SignedAggregateAndProof{Message: msg, Signature: e.signObj(t, e.keys[v], msg, dt, fuluVersion)},
	}
}

func (e *env) submitAggregates(aps ...*spec.VersionedSignedAggregateAndProof) error {
	return e.client.SubmitAggregateAttestations(context.Background(), &eth2api.SubmitAggregateAttestationsOpts{SignedAggregateAndProofs: aps})
}

func TestAggregationFlow(t *testing.T) {
	e := newEnv(t, testSlot/2)
	ctx := context.Background()
	bySlot, slot := dutiesAt(t, e)
	a, b := bySlot[slot][0], bySlot[slot][1]
	if a.CommitteeLength >= 2*targetAggregatorsPerCommittee {
		t.Fatalf("committee of %d: want a small one (modulo 1)", a.CommitteeLength)
	}
	e.atSlot(slot, 0.1)
	subs := []*apiv1.BeaconCommitteeSubscription{
		{ValidatorIndex: a.ValidatorIndex, Slot: slot, CommitteeIndex: a.CommitteeIndex, CommitteesAtSlot: a.CommitteesAtSlot, IsAggregator: true},
		{ValidatorIndex: b.ValidatorIndex, Slot: slot, CommitteeIndex: b.CommitteeIndex, CommitteesAtSlot: b.CommitteesAtSlot, IsAggregator: true},
	}
	if err := e.client.SubmitBeaconCommitteeSubscriptions(ctx, subs); err != nil {
		t.Fatalf("subscriptions: %v", err)
	}
	bad := *subs[0]
	bad.Slot++
	if code, body := errorStatus(e.client.SubmitBeaconCommitteeSubscriptions(ctx, []*apiv1.BeaconCommitteeSubscription{subs[1], &bad})); code != 400 || !strings.Contains(body, `"index":1`) {
		t.Errorf("wrong subscription: %d %s", code, body)
	}

	e.atSlot(slot, 0.34)
	data := e.data(t, slot)
	root, _ := data.HashTreeRoot()
	aggOpts := &eth2api.AggregateAttestationOpts{Slot: slot, AttestationDataRoot: root, CommitteeIndex: a.CommitteeIndex}
	if _, err := e.client.AggregateAttestation(ctx, aggOpts); err == nil {
		t.Fatal("an aggregate was served before any attestation arrived")
	} else if code, _ := errorStatus(err); code != http.StatusNotFound {
		t.Errorf("aggregate before attestations: %v, want 404", err)
	}
	e.attest(t, a)
	e.attest(t, b)

	e.atSlot(slot, 0.67)
	resp, err := e.client.AggregateAttestation(ctx, aggOpts)
	if err != nil {
		t.Fatalf("aggregate attestation: %v", err)
	}
	if resp.Data.Version != spec.DataVersionFulu || resp.Data.Fulu == nil {
		t.Fatalf("aggregate %+v", resp.Data)
	}
	agg := resp.Data.Fulu
	if agg.AggregationBits.Len() != a.CommitteeLength || agg.AggregationBits.Count() != 2 ||
		!agg.AggregationBits.BitAt(a.ValidatorCommitteeIndex) || !agg.CommitteeBits.BitAt(uint64(a.CommitteeIndex)) {
		t.Errorf("aggregate bits %v, committee bits %v", agg.AggregationBits, agg.CommitteeBits)
	}
	wrongRoot := root
	wrongRoot[0] ^= 1
	if _, err := e.client.AggregateAttestation(ctx, &eth2api.AggregateAttestationOpts{Slot: slot, AttestationDataRoot: wrongRoot}); err == nil {
		t.Error("an aggregate was served for an unknown data root")
	}

	proof := e.selectionProof(t, a.ValidatorIndex, slot)
	tampered := *agg
	tampered.Signature = e.sign(t, e.keys[a.ValidatorIndex], data) // a's signature alone, for two bits
	for name, ap := range map[string]*spec.VersionedSignedAggregateAndProof{
		"selection proof with the attester domain": e.signedAggregate(t, a.ValidatorIndex, agg, e.signObj(t, e.keys[a.ValidatorIndex], sszUint64(slot), signing.DomainBeaconAttester, fuluVersion), signing.DomainAggregateAndProof),
		"signed with the selection proof domain":   e.signedAggregate(t, a.ValidatorIndex, agg, proof, signing.DomainSelectionProof),
		"aggregate signature of one attester":      e.signedAggregate(t, a.ValidatorIndex, &tampered, proof, signing.DomainAggregateAndProof),
		"aggregator outside the committee":         e.signedAggregate(t, (a.ValidatorIndex+1)%testValidators, agg, e.selectionProof(t, (a.ValidatorIndex+1)%testValidators, slot), signing.DomainAggregateAndProof),
	} {
		if name == "aggregator outside the committee" && (a.ValidatorIndex+1)%testValidators == b.ValidatorIndex {
			continue
		}
		if code, body := errorStatus(e.submitAggregates(ap)); code != http.StatusBadRequest || !strings.Contains(body, `"failures"`) {
			t.Errorf("%s: %d %s, want 400 with indexed failures", name, code, body)
		}
	}
	good := e.signedAggregate(t, a.ValidatorIndex, agg, proof, signing.DomainAggregateAndProof)
	if err := e.submitAggregates(good, good); err != nil {
		t.Fatalf("valid aggregate and proof: %v", err)
	}

	e.atSlot(slot+1, 0.1)
	st := e.sim.Stats()
	got := st.Duties[DutyAggregator]
	// Every configured attester of a slot so far is an aggregator (committees of 2: modulo 1):
	// of the ended ones, only a's duty at slot was done (b attested but did not aggregate).
	if got.Valid != 1 || got.Submitted < 5 || got.Invalid != got.Submitted-2 || got.Expected != st.Totals.Expected || got.Missed != st.Totals.Missing+1 {
		t.Errorf("aggregator counts %+v (attester totals %+v)", got, st.Totals)
	}
	if v := st.ValidatorDuties[a.ValidatorIndex][DutyAggregator]; v.Valid != 1 || v.Expected != 2 || v.Missed != 1 {
		t.Errorf("aggregator %d counts %+v, want 1 valid of 2 (epochs 0 and 1)", a.ValidatorIndex, v)
	}
	if v := st.ValidatorDuties[b.ValidatorIndex][DutyAggregator]; v.Valid != 0 || v.Expected != 2 || v.Missed != 2 {
		t.Errorf("aggregator %d counts %+v", b.ValidatorIndex, v)
	}
}

func TestAggregatorOddsInALargeNetwork(t *testing.T) {
	e := newEnvWith(t, testSlot/2, func(c *Config) { c.NetworkSize = 200_000 })
	duties := e.duties(t, 1)
	var checked, aggregators int
	for _, d := range duties {
		if d.CommitteeLength < 300 {
			t.Fatalf("committee of %d in a network of 200000", d.CommitteeLength)
		}
		e.atSlot(d.Slot, 0.34)
		e.attest(t, d)
		e.atSlot(d.Slot, 0.67)
		data := e.data(t, d.Slot)
		root, _ := data.HashTreeRoot()
		resp, err := e.client.AggregateAttestation(context.Background(), &eth2api.AggregateAttestationOpts{Slot: d.Slot, AttestationDataRoot: root, CommitteeIndex: d.CommitteeIndex})
		if err != nil {
			t.Fatalf("aggregate of committee %d at slot %d: %v", d.CommitteeIndex, d.Slot, err)
		}
		proof := e.selectionProof(t, d.ValidatorIndex, d.Slot)
		err = e.submitAggregates(e.signedAggregate(t, d.ValidatorIndex, resp.Data.Fulu, proof, signing.DomainAggregateAndProof))
		if isAggregatorProof(proof, aggregatorModulo(d.CommitteeLength)) {
			aggregators++
			if err != nil {
				t.Errorf("validator %d is an aggregator but was refused: %v", d.ValidatorIndex, err)
			}
		} else if code, body := errorStatus(err); code != 400 || !strings.Contains(body, "does not make it an aggregator") {
			t.Errorf("validator %d is no aggregator: %d %s", d.ValidatorIndex, code, body)
		}
		checked++
	}
	e.atSlot(2*testSlotsPerEpoch, 0) // every duty of epoch 1 has ended
	if got := e.sim.Stats().Duties[DutyAggregator]; got.Missed != 0 || got.Valid != uint64(aggregators) || got.Invalid != uint64(checked-aggregators) || got.Expected != uint64(aggregators) {
		t.Errorf("aggregator counts %+v: %d of %d were aggregators", got, aggregators, checked)
	}
	// The rule itself: hash(proof)[0:8] little endian modulo.
	var proof phase0.BLSSignature
	for i := 0; ; i++ {
		proof[0] = byte(i)
		proof[1] = byte(i >> 8)
		if isAggregatorProof(proof, 24) {
			break
		}
	}
	if !isAggregatorProof(proof, 1) || !isAggregatorProof(proof, 2) && !isAggregatorProof(proof, 3) {
		t.Error("modulo 1 must always aggregate; 24 implies 2 and 3")
	}
}
