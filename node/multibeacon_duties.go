package node

import (
	"context"
	"fmt"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// submitAll sends one submission to every beacon node: the first success answers, the others
// finish in the background and their refusals are logged.
func submitAll(m *MultiBeacon, ctx context.Context, op string, f func(context.Context, Beacon) error) error {
	_, err := tryGroups(m, ctx, op, true, func(ctx context.Context, b Beacon) (struct{}, error) {
		return struct{}{}, f(ctx, b)
	})
	return err
}

func (m *MultiBeacon) ProposerDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.ProposerDuty, error) {
	return read(m, ctx, "proposer duties", func(ctx context.Context, b Beacon) ([]*apiv1.ProposerDuty, error) {
		return b.ProposerDuties(ctx, epoch, indices)
	})
}

func (m *MultiBeacon) SyncCommitteeDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.SyncCommitteeDuty, error) {
	return read(m, ctx, "sync committee duties", func(ctx context.Context, b Beacon) ([]*apiv1.SyncCommitteeDuty, error) {
		return b.SyncCommitteeDuties(ctx, epoch, indices)
	})
}

func (m *MultiBeacon) SubmitBeaconCommitteeSubscriptions(ctx context.Context, subs []*apiv1.BeaconCommitteeSubscription) error {
	return submitAll(m, ctx, fmt.Sprintf("submit %d beacon committee subscriptions", len(subs)), func(ctx context.Context, b Beacon) error {
		return b.SubmitBeaconCommitteeSubscriptions(ctx, subs)
	})
}

func (m *MultiBeacon) SubmitSyncCommitteeSubscriptions(ctx context.Context, subs []*apiv1.SyncCommitteeSubscription) error {
	return submitAll(m, ctx, fmt.Sprintf("submit %d sync committee subscriptions", len(subs)), func(ctx context.Context, b Beacon) error {
		return b.SubmitSyncCommitteeSubscriptions(ctx, subs)
	})
}

func (m *MultiBeacon) AggregateAttestation(ctx context.Context, slot phase0.Slot, root phase0.Root, committee phase0.CommitteeIndex) (*spec.VersionedAttestation, error) {
	return read(m, ctx, "aggregate attestation", func(ctx context.Context, b Beacon) (*spec.VersionedAttestation, error) {
		return b.AggregateAttestation(ctx, slot, root, committee)
	})
}

func (m *MultiBeacon) SubmitAggregateAttestations(ctx context.Context, aggs []*spec.VersionedSignedAggregateAndProof) error {
	return submitAll(m, ctx, fmt.Sprintf("submit %d aggregates", len(aggs)), func(ctx context.Context, b Beacon) error {
		return b.SubmitAggregateAttestations(ctx, aggs)
	})
}

func (m *MultiBeacon) Proposal(ctx context.Context, slot phase0.Slot, randao phase0.BLSSignature, graffiti [32]byte, boost *uint64) (*api.VersionedProposal, error) {
	return read(m, ctx, "proposal", func(ctx context.Context, b Beacon) (*api.VersionedProposal, error) {
		return b.Proposal(ctx, slot, randao, graffiti, boost)
	})
}

func (m *MultiBeacon) SubmitProposal(ctx context.Context, p *api.VersionedSignedProposal) error {
	return submitAll(m, ctx, "submit proposal", func(ctx context.Context, b Beacon) error { return b.SubmitProposal(ctx, p) })
}

func (m *MultiBeacon) SubmitBlindedProposal(ctx context.Context, p *api.VersionedSignedBlindedProposal) error {
	return submitAll(m, ctx, "submit blinded proposal", func(ctx context.Context, b Beacon) error { return b.SubmitBlindedProposal(ctx, p) })
}

func (m *MultiBeacon) SubmitProposalPreparations(ctx context.Context, preps []*apiv1.ProposalPreparation) error {
	return submitAll(m, ctx, "submit proposal preparations", func(ctx context.Context, b Beacon) error {
		return b.SubmitProposalPreparations(ctx, preps)
	})
}

func (m *MultiBeacon) SubmitValidatorRegistrations(ctx context.Context, regs []*api.VersionedSignedValidatorRegistration) error {
	return submitAll(m, ctx, "submit validator registrations", func(ctx context.Context, b Beacon) error {
		return b.SubmitValidatorRegistrations(ctx, regs)
	})
}

func (m *MultiBeacon) BeaconBlockRoot(ctx context.Context, blockID string) (phase0.Root, error) {
	return read(m, ctx, "block root", func(ctx context.Context, b Beacon) (phase0.Root, error) { return b.BeaconBlockRoot(ctx, blockID) })
}

func (m *MultiBeacon) SubmitSyncCommitteeMessages(ctx context.Context, msgs []*altair.SyncCommitteeMessage) error {
	return submitAll(m, ctx, fmt.Sprintf("submit %d sync committee messages", len(msgs)), func(ctx context.Context, b Beacon) error {
		return b.SubmitSyncCommitteeMessages(ctx, msgs)
	})
}

func (m *MultiBeacon) SyncCommitteeContribution(ctx context.Context, slot phase0.Slot, sub uint64, root phase0.Root) (*altair.SyncCommitteeContribution, error) {
	return read(m, ctx, "sync committee contribution", func(ctx context.Context, b Beacon) (*altair.SyncCommitteeContribution, error) {
		return b.SyncCommitteeContribution(ctx, slot, sub, root)
	})
}

func (m *MultiBeacon) SubmitSyncCommitteeContributions(ctx context.Context, cs []*altair.SignedContributionAndProof) error {
	return submitAll(m, ctx, fmt.Sprintf("submit %d sync committee contributions", len(cs)), func(ctx context.Context, b Beacon) error {
		return b.SubmitSyncCommitteeContributions(ctx, cs)
	})
}

func (m *MultiBeacon) SubmitVoluntaryExit(ctx context.Context, exit *phase0.SignedVoluntaryExit) error {
	return submitAll(m, ctx, "submit voluntary exit", func(ctx context.Context, b Beacon) error { return b.SubmitVoluntaryExit(ctx, exit) })
}
