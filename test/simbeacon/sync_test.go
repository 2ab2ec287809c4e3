package simbeacon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// syncMessage is v's sync committee message for slot over root, signed under version's domain.
func (e *env) syncMessage(t *testing.T, v phase0.ValidatorIndex, slot phase0.Slot, root phase0.Root, version phase0.Version) *altair.SyncCommitteeMessage {
	t.Helper()
	return &altair.SyncCommitteeMessage{
		Slot: slot, BeaconBlockRoot: root, ValidatorIndex: v,
		Signature: e.signObj(t, e.keys[v], sszRoot(root), domainSyncCommittee, version),
	}
}

// syncProof is v's selection proof for subcommittee sub at slot.
func (e *env) syncProof(t *testing.T, v phase0.ValidatorIndex, slot phase0.Slot, sub uint64) phase0.BLSSignature {
	t.Helper()
	return e.signObj(t, e.keys[v], &altair.SyncAggregatorSelectionData{Slot: slot, SubcommitteeIndex: sub}, domainSyncCommitteeSelectionProof, fuluVersion)
}

// signedContribution wraps con into v's contribution and proof, signed under domain type dt.
func (e *env) signedContribution(t *testing.T, v phase0.ValidatorIndex, con *altair.SyncCommitteeContribution, proof phase0.BLSSignature, dt phase0.DomainType) *altair.SignedContributionAndProof {
	t.Helper()
	msg := &altair.ContributionAndProof{AggregatorIndex: v, Contribution: con, SelectionProof: proof}
	return &altair.SignedContributionAndProof{Message: msg, Signature: e.signObj(t, e.keys[v], msg, dt, fuluVersion)}
}

func TestSyncCommitteeFlow(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	slot := phase0.Slot(11)
	e.atSlot(slot, 0.3)

	duties, err := e.client.SyncCommitteeDuties(ctx, &eth2api.SyncCommitteeDutiesOpts{Epoch: 1, Indices: []phase0.ValidatorIndex{0, 1}})
	if err != nil || len(duties.Data) != 2 {
		t.Fatalf("sync duties %v, %v", duties, err)
	}
	subs := []*apiv1.SyncCommitteeSubscription{
		{ValidatorIndex: 0, SyncCommitteeIndices: duties.Data[0].ValidatorSyncCommitteeIndices, UntilEpoch: 3},
		{ValidatorIndex: 1, SyncCommitteeIndices: duties.Data[1].ValidatorSyncCommitteeIndices, UntilEpoch: 3},
	}
	if err := e.client.SubmitSyncCommitteeSubscriptions(ctx, subs); err != nil {
		t.Fatalf("sync subscriptions: %v", err)
	}
	wrong := &apiv1.SyncCommitteeSubscription{ValidatorIndex: 2, SyncCommitteeIndices: duties.Data[0].ValidatorSyncCommitteeIndices[:1], UntilEpoch: 3}
	if code, body := errorStatus(e.client.SubmitSyncCommitteeSubscriptions(ctx, []*apiv1.SyncCommitteeSubscription{subs[0], wrong})); code != 400 || !strings.Contains(body, `"index":1`) {
		t.Errorf("subscription to another validator's seat: %d %s", code, body)
	}

	rootResp, err := e.client.BeaconBlockRoot(ctx, &eth2api.BeaconBlockRootOpts{Block: "head"})
	if err != nil || *rootResp.Data != blockRoot(slot) {
		t.Fatalf("head root %v, %v", rootResp, err)
	}
	for id, code := range map[string]int{"genesis": 200, "3": 200, fmt.Sprintf("%#x", blockRoot(4)): 200, "12": 404, "nonsense": 400, "0x12": 400} {
		if got, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/blocks/"+id+"/root", "", nil); got != code {
			t.Errorf("block root of %s: %d %s, want %d", id, got, body, code)
		}
	}

	root := *rootResp.Data
	msgs := []*altair.SyncCommitteeMessage{
		e.syncMessage(t, 0, slot, root, fuluVersion),
		e.syncMessage(t, 1, slot, root, fuluVersion),
		e.syncMessage(t, 2, slot, root, phase0.Version{0x60}),     // electra domain
		e.syncMessage(t, 3, slot, blockRoot(slot-1), fuluVersion), // not the slot's block
	}
	err = e.client.SubmitSyncCommitteeMessages(ctx, msgs)
	if code, body := errorStatus(err); code != http.StatusBadRequest || !strings.Contains(body, `"index":2`) || !strings.Contains(body, `"index":3`) || strings.Contains(body, `"index":0`) {
		t.Fatalf("sync messages: %d %s", code, body)
	}

	seatsIn := func(v phase0.ValidatorIndex, sub uint64) uint64 {
		n := uint64(0)
		for _, s := range e.sim.syncCommitteeOf(0).members[v] {
			if s/syncSubcommitteeSize == sub {
				n++
			}
		}
		return n
	}
	e.atSlot(slot, 0.7)
	var done bool
	for sub := uint64(0); sub < syncCommitteeSubnetCount; sub++ {
		resp, err := e.client.SyncCommitteeContribution(ctx, &eth2api.SyncCommitteeContributionOpts{Slot: slot, SubcommitteeIndex: sub, BeaconBlockRoot: root})
		if err != nil {
			t.Fatalf("contribution of subcommittee %d: %v", sub, err)
		}
		con := resp.Data
		if got, want := con.AggregationBits.Count(), seatsIn(0, sub)+seatsIn(1, sub); got != want || con.SubcommitteeIndex != sub {
			t.Errorf("subcommittee %d: %d bits, want %d", sub, got, want)
		}
		// A member of the subcommittee whose selection proof makes it an aggregator submits.
		for v := phase0.ValidatorIndex(0); v < testValidators && !done; v++ {
			if seatsIn(v, sub) == 0 {
				continue
			}
			proof := e.syncProof(t, v, slot, sub)
			if !isAggregatorProof(proof, syncAggregatorModulo) {
				if code, body := errorStatus(e.client.SubmitSyncCommitteeContributions(ctx, []*altair.SignedContributionAndProof{
					e.signedContribution(t, v, con, proof, domainContributionAndProof)})); code != 400 || !strings.Contains(body, "does not make it") {
					t.Errorf("non-aggregator %d: %d %s", v, code, body)
				}
				continue
			}
			bad := map[string]*altair.SignedContributionAndProof{
				"outer signature with the sync committee domain": e.signedContribution(t, v, con, proof, domainSyncCommittee),
				"selection proof over the slot alone":            e.signedContribution(t, v, con, e.signObj(t, e.keys[v], sszUint64(slot), domainSyncCommitteeSelectionProof, fuluVersion), domainContributionAndProof),
			}
			tampered := *con
			tampered.AggregationBits = append([]byte(nil), con.AggregationBits...)
			tampered.AggregationBits.SetBitAt(uint64(tampered.AggregationBits.BitIndices()[0]), false)
			bad["bits that do not match the signature"] = e.signedContribution(t, v, &tampered, proof, domainContributionAndProof)
			for name, sc := range bad {
				if code, body := errorStatus(e.client.SubmitSyncCommitteeContributions(ctx, []*altair.SignedContributionAndProof{sc})); code != 400 {
					t.Errorf("%s: %d %s, want 400", name, code, body)
				}
			}
			if err := e.client.SubmitSyncCommitteeContributions(ctx, []*altair.SignedContributionAndProof{e.signedContribution(t, v, con, proof, domainContributionAndProof)}); err != nil {
				t.Fatalf("valid contribution of %d: %v", v, err)
			}
			done = true
		}
	}
	if !done {
		t.Fatal("no validator's selection proof made it an aggregator") // (7/8)^64: not by chance
	}

	e.atSlot(slot+1, 0.1)
	st := e.sim.Stats()
	m := st.Duties[DutySyncMessage]
	// Every validator sits in the committee: every slot 0..slot+1 is a duty of each.
	if want := uint64(testValidators) * uint64(slot+2); m.Expected != want || m.Valid != 2 || m.Invalid != 2 || m.Submitted != 4 || m.Missed != want-testValidators-2 {
		t.Errorf("sync message counts %+v, want %d expected", m, want)
	}
	c := st.Duties[DutySyncContribution]
	if c.Valid != 1 || c.Expected != 1 || c.Missed != 0 || c.Invalid < 3 {
		t.Errorf("sync contribution counts %+v", c)
	}
}
