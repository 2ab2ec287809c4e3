package simbeacon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	apiv1electra "github.com/attestantio/go-eth2-client/api/v1/electra"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// TestWireFormatEveryEndpoint drives every endpoint the simulator serves through go-eth2-client's
// own HTTP client (on 127.0.0.1), with correctly signed submissions, and checks that the
// simulator's verdicts count each duty type once as valid.
func TestWireFormatEveryEndpoint(t *testing.T) {
	e := newEnvWith(t, 0, func(c *Config) { c.BuilderBlocks = true })
	if !strings.HasPrefix(e.srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s", e.srv.URL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := e.client
	slot := phase0.Slot(9) // epoch 1
	e.atSlot(slot, 0.1)    // after the head event's moment (5% into the slot): the fake clock stands still
	all := make([]phase0.ValidatorIndex, testValidators)
	for i := range all {
		all[i] = phase0.ValidatorIndex(i)
	}

	// Events: head, with the duties' dependent roots. go-eth2-client connects after a second.
	heads := make(chan *apiv1.HeadEvent, 8)
	if err := c.Events(ctx, &eth2api.EventsOpts{Topics: []string{"head"}, HeadHandler: func(_ context.Context, ev *apiv1.HeadEvent) {
		select {
		case heads <- ev:
		default:
		}
	}}); err != nil {
		t.Fatalf("events: %v", err)
	}

	// Node, config and beacon state.
	if _, err := c.NodeVersion(ctx, &eth2api.NodeVersionOpts{}); err != nil {
		t.Errorf("node version: %v", err)
	}
	if resp, err := c.NodeSyncing(ctx, &eth2api.NodeSyncingOpts{}); err != nil || resp.Data.HeadSlot != slot {
		t.Errorf("syncing: %v, %v", resp, err)
	}
	sp, err := c.Spec(ctx, &eth2api.SpecOpts{})
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	for key, want := range map[string]any{
		"EPOCHS_PER_SYNC_COMMITTEE_PERIOD":         uint64(256),
		"SYNC_COMMITTEE_SIZE":                      uint64(512),
		"SYNC_COMMITTEE_SUBNET_COUNT":              uint64(4),
		"TARGET_AGGREGATORS_PER_COMMITTEE":         uint64(16),
		"TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE": uint64(16),
		"DOMAIN_SYNC_COMMITTEE":                    domainSyncCommittee,
		"DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF":    domainSyncCommitteeSelectionProof,
		"DOMAIN_CONTRIBUTION_AND_PROOF":            domainContributionAndProof,
		"DOMAIN_APPLICATION_BUILDER":               domainApplicationBuilder,
		"DOMAIN_SELECTION_PROOF":                   signing.DomainSelectionProof,
		"DOMAIN_RANDAO":                            signing.DomainRandao,
		"CAPELLA_FORK_VERSION":                     capellaVersion,
		"FULU_FORK_VERSION":                        fuluVersion,
		"GENESIS_FORK_VERSION":                     DefaultGenesisForkVersion,
	} {
		if sp.Data[key] != want {
			t.Errorf("spec %s = %v (%T), want %v", key, sp.Data[key], sp.Data[key], want)
		}
	}
	if _, err := c.ForkSchedule(ctx, &eth2api.ForkScheduleOpts{}); err != nil {
		t.Errorf("fork schedule: %v", err)
	}
	if _, err := c.Fork(ctx, &eth2api.ForkOpts{State: "head"}); err != nil {
		t.Errorf("fork: %v", err)
	}
	if _, err := c.Genesis(ctx, &eth2api.GenesisOpts{}); err != nil {
		t.Errorf("genesis: %v", err)
	}
	if _, err := c.DepositContract(ctx, &eth2api.DepositContractOpts{}); err != nil {
		t.Errorf("deposit contract: %v", err)
	}
	if _, err := c.Finality(ctx, &eth2api.FinalityOpts{State: "head"}); err != nil {
		t.Errorf("finality: %v", err)
	}
	if vals, err := c.Validators(ctx, &eth2api.ValidatorsOpts{State: "head", Indices: all}); err != nil || len(vals.Data) != testValidators {
		t.Errorf("validators: %v", err)
	}

	// Duties.
	att, err := c.AttesterDuties(ctx, &eth2api.AttesterDutiesOpts{Epoch: 1, Indices: all})
	if err != nil || len(att.Data) != testValidators {
		t.Fatalf("attester duties: %v", err)
	}
	props, err := c.ProposerDuties(ctx, &eth2api.ProposerDutiesOpts{Epoch: 1})
	if err != nil || len(props.Data) != testSlotsPerEpoch {
		t.Fatalf("proposer duties: %v", err)
	}
	syncDuties, err := c.SyncCommitteeDuties(ctx, &eth2api.SyncCommitteeDutiesOpts{Epoch: 1, Indices: all})
	if err != nil || len(syncDuties.Data) != testValidators {
		t.Fatalf("sync duties: %v", err)
	}
	attRoot := att.Metadata["dependent_root"].(phase0.Root)
	propRoot := props.Metadata["dependent_root"].(phase0.Root)
	select {
	case ev := <-heads:
		if ev.Slot != slot || ev.PreviousDutyDependentRoot != attRoot || ev.CurrentDutyDependentRoot != propRoot {
			t.Errorf("head event %+v; duties' dependent roots %#x (attester) %#x (proposer)", ev, attRoot, propRoot)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no head event")
	}

	// Preparations and registrations.
	var proposer phase0.ValidatorIndex
	for _, p := range props.Data {
		if p.Slot == slot {
			proposer = p.ValidatorIndex
		}
	}
	fee := bellatrix.ExecutionAddress{0xf0}
	if err := c.SubmitProposalPreparations(ctx, []*apiv1.ProposalPreparation{{ValidatorIndex: proposer, FeeRecipient: fee}}); err != nil {
		t.Errorf("preparations: %v", err)
	}
	now := e.sim.now()
	if err := c.SubmitValidatorRegistrations(ctx, []*eth2api.VersionedSignedValidatorRegistration{
		registration(t, e.keys[proposer], fee, now, DefaultGenesisForkVersion, phase0.Root{}),
		registration(t, e.keys[proposer+1], fee, now, DefaultGenesisForkVersion, phase0.Root{}),
	}); err != nil {
		t.Errorf("registrations: %v", err)
	}

	// Blocks: full at this slot, blinded at the next.
	zero := uint64(0)
	full, err := e.propose(t, slot, e.reveal(t, proposer, slot), &zero)
	if err != nil || full.Blinded {
		t.Fatalf("full proposal: %v", err)
	}
	if err := e.submitFull(c, e.signedFull(t, full, e.keys[proposer], fuluVersion)); err != nil {
		t.Errorf("submit proposal: %v", err)
	}
	next := proposer + 1
	blinded, err := e.propose(t, slot+1, e.reveal(t, next, slot+1), nil)
	if err != nil || !blinded.Blinded {
		t.Fatalf("blinded proposal: %v", err)
	}
	b := blinded.FuluBlinded
	if err := c.SubmitBlindedProposal(ctx, &eth2api.SubmitBlindedProposalOpts{Proposal: &eth2api.VersionedSignedBlindedProposal{
		Version: spec.DataVersionFulu,
		Fulu:    &apiv1electra.SignedBlindedBeaconBlock{Message: b, Signature: e.signObj(t, e.keys[next], b, signing.DomainBeaconProposer, fuluVersion)},
	}}); err != nil {
		t.Errorf("submit blinded proposal: %v", err)
	}

	// Attestations and aggregation at this slot.
	var mine []*apiv1.AttesterDuty
	for _, d := range att.Data {
		if d.Slot == slot {
			mine = append(mine, d)
		}
	}
	if len(mine) == 0 {
		t.Fatal("nobody attests at the slot")
	}
	var subs []*apiv1.BeaconCommitteeSubscription
	for _, d := range mine {
		subs = append(subs, &apiv1.BeaconCommitteeSubscription{ValidatorIndex: d.ValidatorIndex, Slot: d.Slot, CommitteeIndex: d.CommitteeIndex, CommitteesAtSlot: d.CommitteesAtSlot, IsAggregator: true})
	}
	if err := c.SubmitBeaconCommitteeSubscriptions(ctx, subs); err != nil {
		t.Errorf("beacon committee subscriptions: %v", err)
	}
	e.atSlot(slot, 0.34)
	data, err := c.AttestationData(ctx, &eth2api.AttestationDataOpts{Slot: slot, CommitteeIndex: mine[0].CommitteeIndex})
	if err != nil {
		t.Fatalf("attestation data: %v", err)
	}
	var atts []*spec.VersionedAttestation
	for _, d := range mine {
		atts = append(atts, versioned(d, data.Data, e.sign(t, e.keys[d.ValidatorIndex], data.Data)))
	}
	if err := c.SubmitAttestations(ctx, &eth2api.SubmitAttestationsOpts{Attestations: atts}); err != nil {
		t.Errorf("attestations: %v", err)
	}
	e.atSlot(slot, 0.67)
	dataRoot, _ := data.Data.HashTreeRoot()
	agg, err := c.AggregateAttestation(ctx, &eth2api.AggregateAttestationOpts{Slot: slot, AttestationDataRoot: dataRoot, CommitteeIndex: mine[0].CommitteeIndex})
	if err != nil || agg.Data.Fulu.AggregationBits.Count() != uint64(len(mine)) {
		t.Fatalf("aggregate attestation: %v", err)
	}
	if err := e.submitAggregates(e.signedAggregate(t, mine[0].ValidatorIndex, agg.Data.Fulu, e.selectionProof(t, mine[0].ValidatorIndex, slot), signing.DomainAggregateAndProof)); err != nil {
		t.Errorf("aggregate and proofs: %v", err)
	}

	// Sync committee.
	var syncSubs []*apiv1.SyncCommitteeSubscription
	for _, d := range syncDuties.Data {
		syncSubs = append(syncSubs, &apiv1.SyncCommitteeSubscription{ValidatorIndex: d.ValidatorIndex, SyncCommitteeIndices: d.ValidatorSyncCommitteeIndices, UntilEpoch: 2})
	}
	if err := c.SubmitSyncCommitteeSubscriptions(ctx, syncSubs); err != nil {
		t.Errorf("sync committee subscriptions: %v", err)
	}
	e.atSlot(slot, 0.34)
	root, err := c.BeaconBlockRoot(ctx, &eth2api.BeaconBlockRootOpts{Block: "head"})
	if err != nil {
		t.Fatalf("block root: %v", err)
	}
	var msgs []*altair.SyncCommitteeMessage
	for _, v := range all {
		msgs = append(msgs, e.syncMessage(t, v, slot, *root.Data, fuluVersion))
	}
	if err := c.SubmitSyncCommitteeMessages(ctx, msgs); err != nil {
		t.Errorf("sync committee messages: %v", err)
	}
	e.atSlot(slot, 0.67)
	contributed := false
	for sub := uint64(0); sub < syncCommitteeSubnetCount && !contributed; sub++ {
		con, err := c.SyncCommitteeContribution(ctx, &eth2api.SyncCommitteeContributionOpts{Slot: slot, SubcommitteeIndex: sub, BeaconBlockRoot: *root.Data})
		if err != nil || con.Data.AggregationBits.Count() != syncSubcommitteeSize {
			t.Fatalf("contribution of subcommittee %d: %v", sub, err)
		}
		for _, v := range all {
			if proof := e.syncProof(t, v, slot, sub); isAggregatorProof(proof, syncAggregatorModulo) {
				if err := c.SubmitSyncCommitteeContributions(ctx, []*altair.SignedContributionAndProof{e.signedContribution(t, v, con.Data, proof, domainContributionAndProof)}); err != nil {
					t.Errorf("contribution and proofs: %v", err)
				}
				contributed = true
				break
			}
		}
	}
	if !contributed {
		t.Fatal("no sync aggregator among 16 validators in 4 subcommittees")
	}

	// Exit, liveness.
	x := &phase0.VoluntaryExit{Epoch: 1, ValidatorIndex: 15}
	if err := c.SubmitVoluntaryExit(ctx, &phase0.SignedVoluntaryExit{Message: x, Signature: e.signObj(t, e.keys[15], x, signing.DomainVoluntaryExit, capellaVersion)}); err != nil {
		t.Errorf("voluntary exit: %v", err)
	}
	if live, err := c.ValidatorLiveness(ctx, &eth2api.ValidatorLivenessOpts{Epoch: 1, Indices: []phase0.ValidatorIndex{mine[0].ValidatorIndex}}); err != nil || !live.Data[0].IsLive {
		t.Errorf("liveness: %v, %v", live, err)
	}

	// Verdicts: every duty type has a valid submission and nothing was refused.
	code, body := rawDo(t, "GET", e.srv.URL+"/dvmesh/sim/stats", "", nil)
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("stats: %d %v", code, err)
	}
	for _, typ := range DutyTypes {
		if d := st.Duties[typ]; d.Valid == 0 || d.Invalid != 0 {
			t.Errorf("%s: %+v", typ, d)
		}
	}
	if len(st.RecentFailures) != 0 {
		t.Errorf("failures: %+v", st.RecentFailures)
	}

	// A reorg: head events and duties carry the new dependent roots.
	res := e.sim.Reorg()
	e.atSlot(slot+1, 0.5)
	select {
	case ev := <-heads:
		if ev.Slot != slot+1 || ev.PreviousDutyDependentRoot != res.AttesterDependentRoot || ev.CurrentDutyDependentRoot != res.ProposerDependentRoot || ev.PreviousDutyDependentRoot == attRoot {
			t.Errorf("head event after reorg %+v, reorg %+v", ev, res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no head event after the reorg")
	}
	att2, err := c.AttesterDuties(ctx, &eth2api.AttesterDutiesOpts{Epoch: 1, Indices: all})
	if err != nil || att2.Metadata["dependent_root"] != res.AttesterDependentRoot {
		t.Errorf("attester duties after reorg: %v", err)
	}
}
