package node

import (
	"context"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// runEpochPreparations tells the beacon node the cluster's fee recipient for every validator
// (prepare_beacon_proposer) and, when the cluster uses builders, submits the validator
// registrations. Both come from the lock only: every node signs the identical registration,
// so the partials combine, and the combined registrations are kept for later epochs.
func (n *Node) runEpochPreparations(ctx context.Context, slot phase0.Slot) {
	settings := n.id.Lock.Proposals
	if settings == nil {
		return
	}
	log := n.log.With("slot", slot, "duty", dutyRegistration)
	fee, err := settings.FeeRecipientAddress()
	if err != nil {
		log.Error("Fee recipient", "err", err)
		return
	}
	n.mu.Lock()
	indices := make(map[phase0.BLSPubKey]phase0.ValidatorIndex, len(n.indices))
	for pk, idx := range n.indices {
		indices[pk] = idx
	}
	n.mu.Unlock()
	preps := make([]*apiv1.ProposalPreparation, 0, len(indices))
	for _, idx := range indices {
		preps = append(preps, &apiv1.ProposalPreparation{ValidatorIndex: idx, FeeRecipient: bellatrix.ExecutionAddress(fee)})
	}
	if len(preps) > 0 {
		if err := n.beacon.SubmitProposalPreparations(ctx, preps); err != nil {
			log.Warn("Proposal preparations failed", "err", err)
		}
	}
	if !settings.Builder {
		return
	}
	n.mu.Lock()
	regs := n.registrations
	n.mu.Unlock()
	if regs == nil {
		regs = n.signRegistrations(ctx, slot, fee, settings.GasLimit, settings.RegistrationTimestamp)
	}
	if len(regs) == 0 {
		return
	}
	if err := n.beacon.SubmitValidatorRegistrations(ctx, regs); err != nil {
		log.Warn("Validator registrations failed", "err", err)
		return
	}
	n.metrics.submitted.WithLabelValues(dutyRegistration, "ok").Add(float64(len(regs)))
	log.Debug("Validator registrations submitted", "count", len(regs))
}

// signRegistrations threshold-signs every validator's builder registration (builder domain:
// genesis fork version, zero genesis validators root) and keeps the complete set.
func (n *Node) signRegistrations(ctx context.Context, slot phase0.Slot, fee [20]byte, gasLimit, timestamp uint64) []*api.VersionedSignedValidatorRegistration {
	log := n.log.With("slot", slot, "duty", dutyRegistration)
	domain, err := signing.ComputeDomain(signing.DomainApplicationBuilder, n.chain.GenesisForkVersion, phase0.Root{})
	if err != nil {
		log.Error("Builder domain", "err", err)
		return nil
	}
	msgs := map[phase0.BLSPubKey]*apiv1.ValidatorRegistration{}
	roots := map[phase0.BLSPubKey]phase0.Root{}
	for _, pk := range n.id.Pubkeys() {
		m := &apiv1.ValidatorRegistration{FeeRecipient: bellatrix.ExecutionAddress(fee), GasLimit: gasLimit,
			Timestamp: time.Unix(int64(timestamp), 0), Pubkey: pk}
		r, err := signing.SigningRoot(m, domain)
		if err != nil {
			log.Error("Registration root", "err", err)
			return nil
		}
		msgs[pk], roots[pk] = m, r
	}
	sctx, cancel := context.WithDeadline(ctx, n.chain.SlotStart(slot+1))
	defer cancel()
	sigs, err := n.thresholdSign(sctx, dutyKey{Slot: slot, Type: dutyRegistration}, roots, log)
	if err != nil {
		log.Warn("Not every registration combined; retrying next epoch", "err", err)
	}
	out := make([]*api.VersionedSignedValidatorRegistration, 0, len(sigs))
	for pk, sig := range sigs {
		out = append(out, &api.VersionedSignedValidatorRegistration{Version: spec.BuilderVersionV1,
			V1: &apiv1.SignedValidatorRegistration{Message: msgs[pk], Signature: sig}})
	}
	if err == nil {
		n.mu.Lock()
		n.registrations = out
		n.mu.Unlock()
	}
	return out
}
