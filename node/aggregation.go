package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/signing"
)

// Spec constants of aggregation.
const (
	targetAggregatorsPerCommittee     = 16 // TARGET_AGGREGATORS_PER_COMMITTEE
	targetAggregatorsPerSyncSubcommit = 16 // TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE
)

// selection is a validator's combined selection proof for one slot and what it decides.
type selection struct {
	proof      phase0.BLSSignature
	aggregator bool
}

// isAggregator is the spec's is_aggregator rule applied to a (combined) selection proof.
func isAggregator(modulo uint64, proof phase0.BLSSignature) bool {
	h := sha256.Sum256(proof[:])
	return binary.LittleEndian.Uint64(h[:8])%max(1, modulo) == 0
}

// runSelections threshold-signs the slot's selection proofs of every attester of slot, decides
// from the combined proofs which of them aggregate, and tells the beacon node ahead of the slot
// (beacon_committee_subscriptions with is_aggregator) so that it collects the subnets'
// attestations. A proof that does not combine in time means "not an aggregator".
func (n *Node) runSelections(ctx context.Context, slot phase0.Slot, duties []*attesterDuty) {
	log := n.log.With("slot", slot, "duty", dutySelection)
	root, err := n.signingRoot(signing.DomainSelectionProof, n.chain.EpochOf(slot), sszUint64(slot))
	if err != nil {
		log.Error("Selection proof root", "err", err)
		return
	}
	roots := make(map[phase0.BLSPubKey]phase0.Root, len(duties))
	for _, d := range duties {
		roots[d.Pubkey] = root
	}
	// Selections must be known before the slot's aggregation at two thirds of it.
	sctx, cancel := context.WithDeadline(ctx, n.chain.SlotStart(slot).Add(n.chain.SlotDuration/2))
	proofs, err := n.thresholdSign(sctx, dutyKey{Slot: slot, Type: dutySelection}, roots, log)
	cancel()
	if err != nil {
		log.Warn("Not every selection proof combined; those validators do not aggregate", "err", err)
	}
	sels := make(map[phase0.BLSPubKey]selection, len(proofs))
	subs := make([]*apiv1.BeaconCommitteeSubscription, 0, len(duties))
	aggregators := 0
	for _, d := range duties {
		s, ok := selection{}, false
		if p, have := proofs[d.Pubkey]; have {
			s, ok = selection{proof: p, aggregator: isAggregator(d.CommitteeLength/targetAggregatorsPerCommittee, p)}, true
		}
		if ok {
			sels[d.Pubkey] = s
		}
		if s.aggregator {
			aggregators++
		}
		subs = append(subs, &apiv1.BeaconCommitteeSubscription{ValidatorIndex: d.ValidatorIndex, Slot: slot,
			CommitteeIndex: d.CommitteeIndex, CommitteesAtSlot: d.CommitteesAtSlot, IsAggregator: s.aggregator})
	}
	n.mu.Lock()
	n.selections[dutyKey{Slot: slot, Type: dutySelection}] = sels
	n.mu.Unlock()
	if err := n.beacon.SubmitBeaconCommitteeSubscriptions(ctx, subs); err != nil {
		log.Warn("Beacon committee subscriptions failed", "err", err)
		return
	}
	log.Debug("Selections done", "validators", len(duties), "aggregators", aggregators)
}

// selectionsOf returns the combined selections of a selection duty key.
func (n *Node) selectionsOf(key dutyKey) map[phase0.BLSPubKey]selection {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.selections[key]
}

// runAggregator performs the aggregation duty of slot for the attesters whose selection proofs
// made them aggregators: at two thirds of the slot the committees' aggregates of the slot's
// agreed attestation data are fetched, agreed through Raft, checked, signed and submitted.
func (n *Node) runAggregator(ctx context.Context, slot phase0.Slot, duties []*attesterDuty) {
	// Wait for the selections (made a slot ahead, or at the start of this one).
	if !sleepUntil(ctx, n.chain.SlotStart(slot).Add(n.chain.SlotDuration*2/3)) {
		return
	}
	sels := n.selectionsOf(dutyKey{Slot: slot, Type: dutySelection})
	var aggs []*attesterDuty
	for _, a := range duties {
		if sels[a.Pubkey].aggregator {
			aggs = append(aggs, a)
		}
	}
	if len(aggs) == 0 {
		return
	}
	d := n.beginDuty(dutyKey{Slot: slot, Type: dutyAggregator}, attesterPubkeys(aggs))
	defer d.finish(ctx)
	d.step(StepStart)
	decidedData, ok := n.cons.Decided(consensus.Duty{Slot: uint64(slot), Type: dutyAttester})
	if !ok {
		d.fail(StepFetch, ReasonNoConsensus, errors.New("the slot's attestation data was never agreed"))
		return
	}
	data, err := n.validAttestationData(ctx, slot, decidedData)
	if err != nil {
		d.fail(StepFetch, failureReason(err), err)
		return
	}
	dataRoot, err := data.HashTreeRoot()
	if err != nil {
		d.fail(StepFetch, ReasonInternal, err)
		return
	}
	committees := map[phase0.CommitteeIndex]uint64{} // index -> length
	var order []phase0.CommitteeIndex
	for _, a := range aggs {
		if _, ok := committees[a.CommitteeIndex]; !ok {
			order = append(order, a.CommitteeIndex)
		}
		committees[a.CommitteeIndex] = a.CommitteeLength
	}
	value, err := n.fetchAggregates(ctx, slot, dataRoot, order)
	decidedBytes, ok := n.agree(ctx, d, value, err)
	if !ok {
		return
	}
	version, decided, err := decodeAggregates(decidedBytes)
	if err == nil {
		err = validateAggregates(decided, dataRoot, committees)
	}
	if err != nil {
		d.fail(StepValidate, failureReason(err), err)
		return
	}
	d.step(StepValidate)
	byCommittee := map[phase0.CommitteeIndex]*electra.Attestation{}
	for _, a := range decided {
		byCommittee[committeeOf(a)] = a
	}
	roots := map[phase0.BLSPubKey]phase0.Root{}
	messages := map[phase0.BLSPubKey]*electra.AggregateAndProof{}
	var items []toSign
	for _, a := range aggs {
		agg, ok := byCommittee[a.CommitteeIndex]
		if !ok {
			continue // a committee without attestations in the beacon node's pool has no aggregate
		}
		msg := &electra.AggregateAndProof{AggregatorIndex: a.ValidatorIndex, Aggregate: agg, SelectionProof: sels[a.Pubkey].proof}
		root, err := n.signingRoot(signing.DomainAggregateAndProof, n.chain.EpochOf(slot), msg)
		if err != nil {
			d.fail(StepValidate, ReasonInternal, err)
			return
		}
		roots[a.Pubkey], messages[a.Pubkey] = root, msg
		if n.signable(a.Pubkey, d.log) {
			items = append(items, toSign{pubkey: a.Pubkey, root: root})
		}
	}
	run := n.expect(d.key, roots)
	if err := n.sendPartials(ctx, d.key, items, d.log); err != nil {
		d.fail(StepSent, failureReason(err), err)
		return
	}
	d.step(StepSent)
	run.collect(ctx, n.linger(), func(sigs []fullSig) {
		out := make([]*spec.VersionedSignedAggregateAndProof, 0, len(sigs))
		pks := make([]phase0.BLSPubKey, 0, len(sigs))
		for _, s := range sigs {
			m, ok := messages[s.Pubkey]
			if !ok {
				continue
			}
			signed := &electra.SignedAggregateAndProof{Message: m, Signature: s.Signature}
			v := &spec.VersionedSignedAggregateAndProof{Version: version}
			if version == spec.DataVersionFulu {
				v.Fulu = signed
			} else {
				v.Electra = signed
			}
			out = append(out, v)
			pks = append(pks, s.Pubkey)
		}
		d.submit(pks, func() error { return n.beacon.SubmitAggregateAttestations(ctx, out) })
	})
}

// fetchAggregates fetches the aggregate of each committee and encodes them for agreement.
func (n *Node) fetchAggregates(ctx context.Context, slot phase0.Slot, dataRoot phase0.Root, committees []phase0.CommitteeIndex) ([]byte, error) {
	var (
		fetched []*electra.Attestation
		version spec.DataVersion
	)
	for _, ci := range committees {
		va, err := n.beacon.AggregateAttestation(ctx, slot, dataRoot, ci)
		if isNotFound(err) {
			continue // no attestation of this committee in the pool (Prysm: 404): its aggregators sit out
		}
		if err != nil {
			return nil, err
		}
		att, err := electraAttestation(va)
		if err != nil {
			return nil, err
		}
		version = va.Version
		fetched = append(fetched, att)
	}
	if len(fetched) == 0 {
		return nil, fmt.Errorf("%w: no committee has attestations to aggregate at slot %d", ErrBeacon, slot)
	}
	return encodeAggregates(version, fetched)
}

// electraAttestation unwraps an Electra or Fulu attestation.
func electraAttestation(va *spec.VersionedAttestation) (*electra.Attestation, error) {
	if va == nil {
		return nil, fmt.Errorf("%w: empty aggregate", ErrBeacon)
	}
	switch {
	case va.Version == spec.DataVersionFulu && va.Fulu != nil:
		return va.Fulu, nil
	case va.Version == spec.DataVersionElectra && va.Electra != nil:
		return va.Electra, nil
	}
	return nil, fmt.Errorf("%w: aggregate of unsupported version %s", ErrBeacon, va.Version)
}

// committeeOf returns the committee of an Electra attestation with exactly one committee bit.
func committeeOf(a *electra.Attestation) phase0.CommitteeIndex {
	idx := a.CommitteeBits.BitIndices()
	if len(idx) != 1 {
		return phase0.CommitteeIndex(1 << 62) // matches no committee
	}
	return phase0.CommitteeIndex(idx[0])
}

// validateAggregates checks decided aggregates: each is of the agreed attestation data, of one
// of this duty's committees (one bit set, bits as long as the committee), at most one per
// committee, and at least one (a committee whose attestations the beacon node lacks is left out).
func validateAggregates(aggs []*electra.Attestation, dataRoot phase0.Root, committees map[phase0.CommitteeIndex]uint64) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: aggregates: %s", ErrInvalidDecided, fmt.Sprintf(format, a...))
	}
	seen := map[phase0.CommitteeIndex]bool{}
	for i, a := range aggs {
		if a == nil || a.Data == nil || a.CommitteeBits == nil || a.AggregationBits == nil {
			return bad("aggregate %d incomplete", i)
		}
		r, err := a.Data.HashTreeRoot()
		if err != nil || r != dataRoot {
			return bad("aggregate %d is not of the agreed attestation data", i)
		}
		ci := committeeOf(a)
		length, ok := committees[ci]
		if !ok || seen[ci] {
			return bad("aggregate %d: committee bits %v not one of this duty's committees, or repeated", i, a.CommitteeBits.BitIndices())
		}
		seen[ci] = true
		if a.AggregationBits.Len() != length {
			return bad("aggregate %d: %d aggregation bits for a committee of %d", i, a.AggregationBits.Len(), length)
		}
	}
	if len(seen) == 0 {
		return bad("no aggregate for any of %d committees", len(committees))
	}
	return nil
}

// Aggregates in the Raft log: version byte, then per aggregate a 4-byte length and its SSZ.
func encodeAggregates(version spec.DataVersion, aggs []*electra.Attestation) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(byte(version))
	for _, a := range aggs {
		b, err := a.MarshalSSZ()
		if err != nil {
			return nil, fmt.Errorf("%w: encode aggregate: %v", ErrBeacon, err)
		}
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func decodeAggregates(b []byte) (spec.DataVersion, []*electra.Attestation, error) {
	if len(b) < 1 {
		return 0, nil, fmt.Errorf("%w: empty aggregates", ErrInvalidDecided)
	}
	version := spec.DataVersion(b[0])
	if version != spec.DataVersionElectra && version != spec.DataVersionFulu {
		return 0, nil, fmt.Errorf("%w: aggregates of version %d", ErrInvalidDecided, b[0])
	}
	var out []*electra.Attestation
	for rest := b[1:]; len(rest) > 0; {
		if len(rest) < 4 {
			return 0, nil, fmt.Errorf("%w: truncated aggregates", ErrInvalidDecided)
		}
		l := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(l) > uint64(len(rest)) {
			return 0, nil, fmt.Errorf("%w: truncated aggregate", ErrInvalidDecided)
		}
		a := new(electra.Attestation)
		if err := a.UnmarshalSSZ(rest[:l]); err != nil {
			return 0, nil, fmt.Errorf("%w: decode aggregate: %v", ErrInvalidDecided, err)
		}
		out = append(out, a)
		rest = rest[l:]
	}
	return version, out, nil
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
