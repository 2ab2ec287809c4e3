package node

import (
	"context"
	"fmt"

	eth2client "github.com/attestantio/go-eth2-client"
	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// DutyBeacon is the part of Beacon that serves the duties beyond attesting: proposals,
// aggregation, sync committees, builder registrations and exits. Every method honours ctx.
type DutyBeacon interface {
	ProposerDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.ProposerDuty, error)
	SyncCommitteeDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.SyncCommitteeDuty, error)
	SubmitBeaconCommitteeSubscriptions(ctx context.Context, subs []*apiv1.BeaconCommitteeSubscription) error
	SubmitSyncCommitteeSubscriptions(ctx context.Context, subs []*apiv1.SyncCommitteeSubscription) error
	// AggregateAttestation is the v2 aggregate of the committee's attestations to dataRoot.
	AggregateAttestation(ctx context.Context, slot phase0.Slot, dataRoot phase0.Root, committee phase0.CommitteeIndex) (*spec.VersionedAttestation, error)
	SubmitAggregateAttestations(ctx context.Context, aggs []*spec.VersionedSignedAggregateAndProof) error
	// Proposal is produce-block v3: a full or blinded block for slot with the given reveal.
	Proposal(ctx context.Context, slot phase0.Slot, randao phase0.BLSSignature, graffiti [32]byte, builderBoostFactor *uint64) (*api.VersionedProposal, error)
	SubmitProposal(ctx context.Context, p *api.VersionedSignedProposal) error
	SubmitBlindedProposal(ctx context.Context, p *api.VersionedSignedBlindedProposal) error
	SubmitProposalPreparations(ctx context.Context, preps []*apiv1.ProposalPreparation) error
	SubmitValidatorRegistrations(ctx context.Context, regs []*api.VersionedSignedValidatorRegistration) error
	// BeaconBlockRoot is the root of the block with the given id ("head", a slot, a root).
	BeaconBlockRoot(ctx context.Context, blockID string) (phase0.Root, error)
	SubmitSyncCommitteeMessages(ctx context.Context, msgs []*altair.SyncCommitteeMessage) error
	SyncCommitteeContribution(ctx context.Context, slot phase0.Slot, subcommittee uint64, root phase0.Root) (*altair.SyncCommitteeContribution, error)
	SubmitSyncCommitteeContributions(ctx context.Context, cs []*altair.SignedContributionAndProof) error
	SubmitVoluntaryExit(ctx context.Context, exit *phase0.SignedVoluntaryExit) error
}

// HeadEvent is a new head as the beacon node reports it. The dependent roots change when a
// reorg changes the blocks the duties were computed from: the duties must then be fetched again.
type HeadEvent struct {
	Slot                      phase0.Slot
	Block                     phase0.Root
	PreviousDutyDependentRoot phase0.Root
	CurrentDutyDependentRoot  phase0.Root
}

func (b *httpBeacon) ProposerDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.ProposerDuty, error) {
	resp, err := b.svc.(eth2client.ProposerDutiesProvider).ProposerDuties(ctx, &api.ProposerDutiesOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		return nil, fmt.Errorf("proposer duties for epoch %d: %w", epoch, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) SyncCommitteeDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.SyncCommitteeDuty, error) {
	resp, err := b.svc.(eth2client.SyncCommitteeDutiesProvider).SyncCommitteeDuties(ctx, &api.SyncCommitteeDutiesOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		return nil, fmt.Errorf("sync committee duties for epoch %d: %w", epoch, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) SubmitBeaconCommitteeSubscriptions(ctx context.Context, subs []*apiv1.BeaconCommitteeSubscription) error {
	if err := b.svc.(eth2client.BeaconCommitteeSubscriptionsSubmitter).SubmitBeaconCommitteeSubscriptions(ctx, subs); err != nil {
		return fmt.Errorf("submit %d beacon committee subscriptions: %w", len(subs), err)
	}
	return nil
}

func (b *httpBeacon) SubmitSyncCommitteeSubscriptions(ctx context.Context, subs []*apiv1.SyncCommitteeSubscription) error {
	if err := b.svc.(eth2client.SyncCommitteeSubscriptionsSubmitter).SubmitSyncCommitteeSubscriptions(ctx, subs); err != nil {
		return fmt.Errorf("submit %d sync committee subscriptions: %w", len(subs), err)
	}
	return nil
}

func (b *httpBeacon) AggregateAttestation(ctx context.Context, slot phase0.Slot, dataRoot phase0.Root, committee phase0.CommitteeIndex) (*spec.VersionedAttestation, error) {
	resp, err := b.svc.(eth2client.AggregateAttestationProvider).AggregateAttestation(ctx, &api.AggregateAttestationOpts{
		Slot: slot, AttestationDataRoot: dataRoot, CommitteeIndex: committee,
	})
	if err != nil {
		return nil, fmt.Errorf("aggregate attestation for slot %d committee %d: %w", slot, committee, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) SubmitAggregateAttestations(ctx context.Context, aggs []*spec.VersionedSignedAggregateAndProof) error {
	err := b.svc.(eth2client.AggregateAttestationsSubmitter).SubmitAggregateAttestations(ctx, &api.SubmitAggregateAttestationsOpts{SignedAggregateAndProofs: aggs})
	if err != nil {
		return fmt.Errorf("submit %d aggregates: %w", len(aggs), err)
	}
	return nil
}

func (b *httpBeacon) Proposal(ctx context.Context, slot phase0.Slot, randao phase0.BLSSignature, graffiti [32]byte, boost *uint64) (*api.VersionedProposal, error) {
	resp, err := b.svc.(eth2client.ProposalProvider).Proposal(ctx, &api.ProposalOpts{
		Slot: slot, RandaoReveal: randao, Graffiti: graffiti, BuilderBoostFactor: boost,
	})
	if err != nil {
		return nil, fmt.Errorf("proposal for slot %d: %w", slot, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) SubmitProposal(ctx context.Context, p *api.VersionedSignedProposal) error {
	if err := b.svc.(eth2client.ProposalSubmitter).SubmitProposal(ctx, &api.SubmitProposalOpts{Proposal: p}); err != nil {
		return fmt.Errorf("submit proposal: %w", err)
	}
	return nil
}

func (b *httpBeacon) SubmitBlindedProposal(ctx context.Context, p *api.VersionedSignedBlindedProposal) error {
	if err := b.svc.(eth2client.BlindedProposalSubmitter).SubmitBlindedProposal(ctx, &api.SubmitBlindedProposalOpts{Proposal: p}); err != nil {
		return fmt.Errorf("submit blinded proposal: %w", err)
	}
	return nil
}

func (b *httpBeacon) SubmitProposalPreparations(ctx context.Context, preps []*apiv1.ProposalPreparation) error {
	if err := b.svc.(eth2client.ProposalPreparationsSubmitter).SubmitProposalPreparations(ctx, preps); err != nil {
		return fmt.Errorf("submit %d proposal preparations: %w", len(preps), err)
	}
	return nil
}

func (b *httpBeacon) SubmitValidatorRegistrations(ctx context.Context, regs []*api.VersionedSignedValidatorRegistration) error {
	if err := b.svc.(eth2client.ValidatorRegistrationsSubmitter).SubmitValidatorRegistrations(ctx, regs); err != nil {
		return fmt.Errorf("submit %d validator registrations: %w", len(regs), err)
	}
	return nil
}

func (b *httpBeacon) BeaconBlockRoot(ctx context.Context, blockID string) (phase0.Root, error) {
	resp, err := b.svc.(eth2client.BeaconBlockRootProvider).BeaconBlockRoot(ctx, &api.BeaconBlockRootOpts{Block: blockID})
	if err != nil {
		return phase0.Root{}, fmt.Errorf("block root of %s: %w", blockID, err)
	}
	if resp.Data == nil {
		return phase0.Root{}, fmt.Errorf("%w: no block root for %s", ErrBeacon, blockID)
	}
	return *resp.Data, nil
}

func (b *httpBeacon) SubmitSyncCommitteeMessages(ctx context.Context, msgs []*altair.SyncCommitteeMessage) error {
	if err := b.svc.(eth2client.SyncCommitteeMessagesSubmitter).SubmitSyncCommitteeMessages(ctx, msgs); err != nil {
		return fmt.Errorf("submit %d sync committee messages: %w", len(msgs), err)
	}
	return nil
}

func (b *httpBeacon) SyncCommitteeContribution(ctx context.Context, slot phase0.Slot, subcommittee uint64, root phase0.Root) (*altair.SyncCommitteeContribution, error) {
	resp, err := b.svc.(eth2client.SyncCommitteeContributionProvider).SyncCommitteeContribution(ctx, &api.SyncCommitteeContributionOpts{
		Slot: slot, SubcommitteeIndex: subcommittee, BeaconBlockRoot: root,
	})
	if err != nil {
		return nil, fmt.Errorf("sync committee contribution for slot %d subcommittee %d: %w", slot, subcommittee, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) SubmitSyncCommitteeContributions(ctx context.Context, cs []*altair.SignedContributionAndProof) error {
	if err := b.svc.(eth2client.SyncCommitteeContributionsSubmitter).SubmitSyncCommitteeContributions(ctx, cs); err != nil {
		return fmt.Errorf("submit %d sync committee contributions: %w", len(cs), err)
	}
	return nil
}

func (b *httpBeacon) SubmitVoluntaryExit(ctx context.Context, exit *phase0.SignedVoluntaryExit) error {
	if err := b.svc.(eth2client.VoluntaryExitSubmitter).SubmitVoluntaryExit(ctx, exit); err != nil {
		return fmt.Errorf("submit voluntary exit: %w", err)
	}
	return nil
}
