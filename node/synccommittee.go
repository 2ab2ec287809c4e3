package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/signing"
)

// syncDuty is one validator's sync committee membership in an epoch.
type syncDuty struct {
	Pubkey phase0.BLSPubKey
	*apiv1.SyncCommitteeDuty
}

// subcommittees returns the subcommittees the validator's seats are in.
func (c *Chain) subcommittees(d *syncDuty) []uint64 {
	size := max(1, c.SyncCommitteeSize/maxSyncSubcommittees)
	seen := map[uint64]bool{}
	var out []uint64
	for _, seat := range d.ValidatorSyncCommitteeIndices {
		k := uint64(seat) / size
		if k < maxSyncSubcommittees && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func syncPubkeys(duties []*syncDuty) []phase0.BLSPubKey {
	out := make([]phase0.BLSPubKey, len(duties))
	for i, d := range duties {
		out[i] = d.Pubkey
	}
	return out
}

// runSyncMessage signs the slot's sync committee messages over the head block root the cluster
// agreed on.
func (n *Node) runSyncMessage(ctx context.Context, slot phase0.Slot, duties []*syncDuty) {
	d := n.beginDuty(dutyKey{Slot: slot, Type: dutySyncMessage}, syncPubkeys(duties))
	defer d.finish(ctx)
	if reason := n.haltedReason(); reason != "" {
		d.fail(StepFetch, ReasonDuplicateInstance, fmt.Errorf("%w: %s", ErrHalted, reason))
		return
	}
	n.heads.Wait(ctx, slot, n.chain.SlotStart(slot).Add(n.chain.SlotDuration/3))
	d.step(StepStart)
	var value []byte
	head, err := n.beacon.BeaconBlockRoot(ctx, "head")
	if err == nil {
		value = head[:]
	}
	decided, ok := n.agree(ctx, d, value, err)
	if !ok {
		return
	}
	root, err := n.validBlockRoot(ctx, decided)
	if err != nil {
		d.fail(StepValidate, failureReason(err), err)
		return
	}
	d.step(StepValidate)
	sroot, err := n.signingRoot(signing.DomainSyncCommittee, n.chain.EpochOf(slot), rootObj(root))
	if err != nil {
		d.fail(StepValidate, ReasonInternal, err)
		return
	}
	roots := map[phase0.BLSPubKey]phase0.Root{}
	byPubkey := map[phase0.BLSPubKey]*syncDuty{}
	var items []toSign
	for _, s := range duties {
		roots[s.Pubkey], byPubkey[s.Pubkey] = sroot, s
		if n.signable(s.Pubkey, d.log) {
			items = append(items, toSign{pubkey: s.Pubkey, root: sroot})
		}
	}
	run := n.expect(d.key, roots)
	if err := n.sendPartials(ctx, d.key, items, d.log); err != nil {
		d.fail(StepSent, failureReason(err), err)
		return
	}
	d.step(StepSent)
	run.collect(ctx, n.linger(), func(sigs []fullSig) {
		msgs := make([]*altair.SyncCommitteeMessage, 0, len(sigs))
		pks := make([]phase0.BLSPubKey, 0, len(sigs))
		for _, s := range sigs {
			if sd, ok := byPubkey[s.Pubkey]; ok {
				msgs = append(msgs, &altair.SyncCommitteeMessage{Slot: slot, BeaconBlockRoot: root, ValidatorIndex: sd.ValidatorIndex, Signature: s.Signature})
				pks = append(pks, s.Pubkey)
			}
		}
		d.submit(pks, func() error { return n.beacon.SubmitSyncCommitteeMessages(ctx, msgs) })
	})
}

// validBlockRoot decodes an agreed block root and checks that this node's beacon node knows it.
func (n *Node) validBlockRoot(ctx context.Context, b []byte) (phase0.Root, error) {
	var root phase0.Root
	if len(b) != len(root) {
		return root, fmt.Errorf("%w: block root of %d bytes", ErrInvalidDecided, len(b))
	}
	copy(root[:], b)
	got, err := n.beacon.BeaconBlockRoot(ctx, fmt.Sprintf("%#x", root))
	if err != nil {
		return root, fmt.Errorf("%w: block %#x is unknown to this node's beacon node: %w", ErrInvalidDecided, root, err)
	}
	if got != root {
		return root, fmt.Errorf("%w: block %#x: beacon node answered %#x", ErrInvalidDecided, root, got)
	}
	return root, nil
}

// runSyncSelections threshold-signs the sync aggregator selection proofs of slot, one duty per
// subcommittee, and keeps the combined proofs that make a validator a contribution aggregator.
func (n *Node) runSyncSelections(ctx context.Context, slot phase0.Slot, duties []*syncDuty) {
	bySub := map[uint64][]*syncDuty{}
	for _, s := range duties {
		for _, k := range n.chain.subcommittees(s) {
			bySub[k] = append(bySub[k], s)
		}
	}
	modulo := n.chain.SyncCommitteeSize / maxSyncSubcommittees / targetAggregatorsPerSyncSubcommit
	sctx, cancel := context.WithDeadline(ctx, n.chain.SlotStart(slot).Add(n.chain.SlotDuration/2))
	defer cancel()
	var wg sync.WaitGroup
	for k, members := range bySub {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := dutyKey{Slot: slot, Type: syncSelectionType(k)}
			log := n.log.With("slot", slot, "duty", key.Type)
			root, err := n.signingRoot(signing.DomainSyncCommitteeSelectionProof, n.chain.EpochOf(slot), &altair.SyncAggregatorSelectionData{Slot: slot, SubcommitteeIndex: k})
			if err != nil {
				log.Error("Sync selection root", "err", err)
				return
			}
			roots := map[phase0.BLSPubKey]phase0.Root{}
			for _, m := range members {
				roots[m.Pubkey] = root
			}
			proofs, err := n.thresholdSign(sctx, key, roots, log)
			if err != nil {
				log.Warn("Not every sync selection proof combined; those validators do not aggregate", "err", err)
			}
			sels := map[phase0.BLSPubKey]selection{}
			for pk, p := range proofs {
				sels[pk] = selection{proof: p, aggregator: isAggregator(modulo, p)}
			}
			n.mu.Lock()
			n.selections[key] = sels
			n.mu.Unlock()
		}()
	}
	wg.Wait()
}

// syncAggregator is one validator's contribution duty in one subcommittee.
type syncAggregator struct {
	duty *syncDuty
	sub  uint64
	sel  selection
}

// runSyncContributions performs the slot's sync committee contribution duty: at two thirds of
// the slot the aggregators' subcommittee contributions over the agreed head are fetched, agreed,
// checked, signed and submitted in one call.
func (n *Node) runSyncContributions(ctx context.Context, slot phase0.Slot, duties []*syncDuty) {
	if !sleepUntil(ctx, n.chain.SlotStart(slot).Add(n.chain.SlotDuration*2/3)) {
		return
	}
	var aggs []syncAggregator
	subs := map[uint64]bool{}
	var order []uint64
	for _, s := range duties {
		for _, k := range n.chain.subcommittees(s) {
			sel := n.selectionsOf(dutyKey{Slot: slot, Type: syncSelectionType(k)})[s.Pubkey]
			if !sel.aggregator {
				continue
			}
			aggs = append(aggs, syncAggregator{duty: s, sub: k, sel: sel})
			if !subs[k] {
				subs[k] = true
				order = append(order, k)
			}
		}
	}
	if len(aggs) == 0 {
		return
	}
	pks := make([]phase0.BLSPubKey, len(aggs))
	for i, a := range aggs {
		pks[i] = a.duty.Pubkey
	}
	d := n.beginDuty(dutyKey{Slot: slot, Type: dutySyncContrib}, pks)
	defer d.finish(ctx)
	d.step(StepStart)
	decidedRoot, ok := n.cons.Decided(consensus.Duty{Slot: uint64(slot), Type: dutySyncMessage})
	if !ok || len(decidedRoot) != 32 {
		d.fail(StepFetch, ReasonNoConsensus, errors.New("the slot's sync committee block root was never agreed"))
		return
	}
	var root phase0.Root
	copy(root[:], decidedRoot)
	value, err := n.fetchContributions(ctx, slot, root, order)
	decidedBytes, ok := n.agree(ctx, d, value, err)
	if !ok {
		return
	}
	decided, err := decodeContributions(decidedBytes)
	if err == nil {
		err = validateContributions(decided, slot, root, subs)
	}
	if err != nil {
		d.fail(StepValidate, failureReason(err), err)
		return
	}
	d.step(StepValidate)
	bySub := map[uint64]*altair.SyncCommitteeContribution{}
	for _, c := range decided {
		bySub[c.SubcommitteeIndex] = c
	}
	// One partial-signature duty per subcommittee: a validator may aggregate in several.
	type pending struct {
		run  *sigRun
		msgs map[phase0.BLSPubKey]*altair.ContributionAndProof
	}
	var runs []pending
	for _, k := range order {
		if bySub[k] == nil {
			continue // the beacon node had no message of this subcommittee to aggregate
		}
		key := dutyKey{Slot: slot, Type: fmt.Sprintf("%s/%d", dutySyncContrib, k)}
		roots := map[phase0.BLSPubKey]phase0.Root{}
		msgs := map[phase0.BLSPubKey]*altair.ContributionAndProof{}
		var items []toSign
		for _, a := range aggs {
			if a.sub != k {
				continue
			}
			m := &altair.ContributionAndProof{AggregatorIndex: a.duty.ValidatorIndex, Contribution: bySub[k], SelectionProof: a.sel.proof}
			r, err := n.signingRoot(signing.DomainContributionAndProof, n.chain.EpochOf(slot), m)
			if err != nil {
				d.fail(StepValidate, ReasonInternal, err)
				return
			}
			roots[a.duty.Pubkey], msgs[a.duty.Pubkey] = r, m
			if n.signable(a.duty.Pubkey, d.log) {
				items = append(items, toSign{pubkey: a.duty.Pubkey, root: r})
			}
		}
		run := n.expect(key, roots)
		if err := n.sendPartials(ctx, key, items, d.log); err != nil {
			d.fail(StepSent, failureReason(err), err)
			return
		}
		runs = append(runs, pending{run: run, msgs: msgs})
	}
	d.step(StepSent)
	// Wait for every subcommittee's signatures, but submit before the slot ends.
	wctx, cancel := context.WithDeadline(ctx, n.chain.SlotStart(slot).Add(n.chain.SlotDuration*11/12))
	defer cancel()
	var (
		out    []*altair.SignedContributionAndProof
		signed []phase0.BLSPubKey
	)
	for _, p := range runs {
		sigs, _ := p.run.wait(wctx)
		for pk, sig := range sigs {
			if m, ok := p.msgs[pk]; ok {
				out = append(out, &altair.SignedContributionAndProof{Message: m, Signature: sig})
				signed = append(signed, pk)
			}
		}
	}
	if len(out) == 0 {
		d.fail(StepSent, ReasonInsufficientPartials, ErrInsufficientPartials)
		return
	}
	d.submit(signed, func() error { return n.beacon.SubmitSyncCommitteeContributions(ctx, out) })
}

// fetchContributions fetches each subcommittee's contribution and encodes them for agreement.
func (n *Node) fetchContributions(ctx context.Context, slot phase0.Slot, root phase0.Root, subs []uint64) ([]byte, error) {
	var fetched []*altair.SyncCommitteeContribution
	for _, k := range subs {
		c, err := n.beacon.SyncCommitteeContribution(ctx, slot, k, root)
		if isNotFound(err) {
			continue // no message of this subcommittee in the pool (Prysm: 404): its aggregators sit out
		}
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("%w: empty contribution", ErrBeacon)
		}
		fetched = append(fetched, c)
	}
	if len(fetched) == 0 {
		return nil, fmt.Errorf("%w: no subcommittee has sync committee messages to aggregate at slot %d", ErrBeacon, slot)
	}
	return encodeContributions(fetched)
}

// validateContributions checks decided contributions: the duty's slot, the agreed block root,
// at most one per subcommittee this node's aggregators need and no other, and at least one (a
// subcommittee whose messages the beacon node does not have is left out).
func validateContributions(cs []*altair.SyncCommitteeContribution, slot phase0.Slot, root phase0.Root, subs map[uint64]bool) error {
	seen := map[uint64]bool{}
	for i, c := range cs {
		switch {
		case c.Slot != slot:
			return fmt.Errorf("%w: contribution %d for slot %d, the duty's is %d", ErrInvalidDecided, i, c.Slot, slot)
		case c.BeaconBlockRoot != root:
			return fmt.Errorf("%w: contribution %d over block %#x, the agreed head is %#x", ErrInvalidDecided, i, c.BeaconBlockRoot, root)
		case !subs[c.SubcommitteeIndex] || seen[c.SubcommitteeIndex]:
			return fmt.Errorf("%w: contribution %d for subcommittee %d: not needed or repeated", ErrInvalidDecided, i, c.SubcommitteeIndex)
		}
		seen[c.SubcommitteeIndex] = true
	}
	if len(seen) == 0 {
		return fmt.Errorf("%w: no contribution for any of %d subcommittees", ErrInvalidDecided, len(subs))
	}
	return nil
}

// Contributions in the Raft log: per contribution a 4-byte length and its SSZ.
func encodeContributions(cs []*altair.SyncCommitteeContribution) ([]byte, error) {
	var buf bytes.Buffer
	for _, c := range cs {
		b, err := c.MarshalSSZ()
		if err != nil {
			return nil, fmt.Errorf("%w: encode contribution: %v", ErrBeacon, err)
		}
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func decodeContributions(b []byte) ([]*altair.SyncCommitteeContribution, error) {
	var out []*altair.SyncCommitteeContribution
	for rest := b; len(rest) > 0; {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: truncated contributions", ErrInvalidDecided)
		}
		l := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(l) > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: truncated contribution", ErrInvalidDecided)
		}
		c := new(altair.SyncCommitteeContribution)
		if err := c.UnmarshalSSZ(rest[:l]); err != nil {
			return nil, fmt.Errorf("%w: decode contribution: %v", ErrInvalidDecided, err)
		}
		out = append(out, c)
		rest = rest[l:]
	}
	return out, nil
}
