package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	apiv1electra "github.com/attestantio/go-eth2-client/api/v1/electra"
	apiv1fulu "github.com/attestantio/go-eth2-client/api/v1/fulu"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
)

// proposerDuty is one validator's block proposal, as its beacon node assigned it.
type proposerDuty struct {
	Pubkey phase0.BLSPubKey
	*apiv1.ProposerDuty
}

// sszUint64 is a uint64 (a slot or an epoch) as an SSZ object: its hash tree root is its
// little-endian bytes padded to 32.
type sszUint64 uint64

func (u sszUint64) HashTreeRoot() ([32]byte, error) {
	var r [32]byte
	binary.LittleEndian.PutUint64(r[:8], uint64(u))
	return r, nil
}

// rootObj is an already computed hash tree root (a block root) as an SSZ object.
type rootObj phase0.Root

func (r rootObj) HashTreeRoot() ([32]byte, error) { return r, nil }

// graffiti marks dvmesh's blocks.
var graffiti = [32]byte{'d', 'v', 'm', 'e', 's', 'h'}

// runProposer performs a block proposal: the RANDAO reveal is threshold-signed first, then one
// node's block is agreed through Raft, checked by every node, recorded in the slashing DB and
// only then signed, combined and submitted.
func (n *Node) runProposer(ctx context.Context, duty *proposerDuty) {
	slot := duty.Slot
	d := n.beginDuty(dutyKey{Slot: slot, Type: dutyProposer}, []phase0.BLSPubKey{duty.Pubkey})
	defer d.finish(ctx)
	d.step(StepStart)
	if reason := n.haltedReason(); reason != "" {
		d.fail(StepFetch, ReasonDuplicateInstance, fmt.Errorf("%w: %s", ErrHalted, reason))
		return
	}
	settings := n.id.Lock.Proposals
	if settings == nil {
		d.fail(StepFetch, ReasonInternal, errors.New("the cluster lock has no proposal settings (fee recipient): recreate the cluster with --fee-recipient"))
		return
	}
	feeRecipient, err := settings.FeeRecipientAddress()
	if err != nil {
		d.fail(StepFetch, ReasonInternal, err)
		return
	}
	epoch := n.chain.EpochOf(slot)
	// The reveal is normally being signed since half a slot before this one (startSlot). If
	// nobody started the slot's reveals, they are signed now; a proposer that was not among them
	// (its duty changed since, after a reorg) is signed now under its own duty type.
	r, created := n.revealsFor(slot, []*proposerDuty{duty})
	if created {
		n.signReveals(ctx, r, slot, dutyRandao)
	} else if !r.has(duty.Pubkey) {
		r = newRandaoReveals([]*proposerDuty{duty})
		n.signReveals(ctx, r, slot, dutyRandaoLate)
	}
	reveal, err := r.wait(ctx, duty.Pubkey)
	if err != nil {
		d.fail(StepFetch, failureReason(err), fmt.Errorf("RANDAO reveal: %w", err))
		return
	}
	d.step("randao")
	var boost *uint64
	zero := uint64(0)
	boost = &zero // local blocks only, unless the cluster uses builders
	if settings.Builder {
		boost = &settings.BuilderBoostFactor
	}
	// Only the Raft leader's block can be decided, so only the leader asks its beacon node for
	// one: four concurrent block builds on one beacon node run one after another.
	decidedBytes, ok := n.agreeLazy(ctx, d, func(ctx context.Context) ([]byte, error) {
		proposal, err := n.beacon.Proposal(ctx, slot, reveal, graffiti, boost)
		if err != nil {
			return nil, err
		}
		return encodeProposal(proposal)
	})
	if !ok {
		return
	}
	decided, err := decodeProposal(decidedBytes)
	if err == nil {
		err = validateProposal(decided, duty, reveal, feeRecipient)
	}
	if err == nil {
		err = n.knownBlock(ctx, decided)
	}
	if err != nil {
		d.fail(StepValidate, failureReason(err), err)
		return
	}
	d.step(StepValidate)
	blockRoot, err := decided.Root()
	if err != nil {
		d.fail(StepValidate, ReasonInvalidDecided, fmt.Errorf("%w: block root: %v", ErrInvalidDecided, err))
		return
	}
	root, err := n.signingRoot(signing.DomainBeaconProposer, epoch, rootObj(blockRoot))
	if err != nil {
		d.fail(StepValidate, ReasonInternal, err)
		return
	}
	run := n.expect(d.key, map[phase0.BLSPubKey]phase0.Root{duty.Pubkey: root})
	if !n.signable(duty.Pubkey, d.log) {
		d.fail(StepRecorded, ReasonDoppelganger, ErrBlocked)
		return
	}
	items := []toSign{{pubkey: duty.Pubkey, root: root}}
	verdicts, err := n.db.CheckAndRecordBlocks([]slashingdb.BlockRequest{{Pubkey: duty.Pubkey, Slot: slot, SigningRoot: root}})
	allowed, err := n.allowedByDB(d, items, verdicts, err)
	if err == nil {
		err = n.sendPartials(ctx, d.key, allowed, d.log)
	}
	if err != nil {
		var refused *refusalError
		if errors.As(err, &refused) {
			d.fail(StepRecorded, refused.reason, err)
		} else {
			d.fail(StepRecorded, failureReason(err), err)
		}
		return
	}
	d.step(StepSent)
	sigs, err := run.wait(ctx)
	sig, ok := sigs[duty.Pubkey]
	if !ok {
		d.fail(StepSent, ReasonInsufficientPartials, err)
		return
	}
	d.submit([]phase0.BLSPubKey{duty.Pubkey}, func() error { return n.submitProposal(ctx, decided, sig) })
}

// randaoReveals are the threshold-signed RANDAO reveals of one slot's proposers: one run per
// slot (the peers sign the same set at the same time), awaited by each proposal of the slot.
type randaoReveals struct {
	proposers []*proposerDuty // fixed at creation
	done      chan struct{}
	reveals   map[phase0.BLSPubKey]phase0.BLSSignature
	err       error
}

func newRandaoReveals(proposers []*proposerDuty) *randaoReveals {
	return &randaoReveals{proposers: proposers, done: make(chan struct{})}
}

// revealsFor returns slot's reveals, and whether this call created them for proposers (the
// caller must then sign them with signReveals, or finish them).
func (n *Node) revealsFor(slot phase0.Slot, proposers []*proposerDuty) (r *randaoReveals, created bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.reveals[slot]; ok {
		return r, false
	}
	r = newRandaoReveals(proposers)
	n.reveals[slot] = r
	return r, true
}

// has reports whether pk is one of the proposers r is signed for.
func (r *randaoReveals) has(pk phase0.BLSPubKey) bool {
	for _, p := range r.proposers {
		if p.Pubkey == pk {
			return true
		}
	}
	return false
}

// signReveals threshold-signs the RANDAO reveals (the proposal epoch, under the RANDAO domain)
// of r's proposers as duty dutyType of slot, and finishes r with them.
func (n *Node) signReveals(ctx context.Context, r *randaoReveals, slot phase0.Slot, dutyType string) {
	epoch := n.chain.EpochOf(slot)
	root, err := n.signingRoot(signing.DomainRandao, epoch, sszUint64(epoch))
	if err != nil {
		r.finish(nil, err)
		return
	}
	roots := make(map[phase0.BLSPubKey]phase0.Root, len(r.proposers))
	for _, p := range r.proposers {
		roots[p.Pubkey] = root
	}
	log := n.log.With("slot", slot, "duty", dutyType, "validators", len(roots))
	r.finish(n.thresholdSign(ctx, dutyKey{Slot: slot, Type: dutyType}, roots, log))
}

func (r *randaoReveals) finish(reveals map[phase0.BLSPubKey]phase0.BLSSignature, err error) {
	r.reveals, r.err = reveals, err
	close(r.done)
}

// wait returns pk's reveal, one of r's proposers, once r is signed.
func (r *randaoReveals) wait(ctx context.Context, pk phase0.BLSPubKey) (phase0.BLSSignature, error) {
	select {
	case <-ctx.Done():
		return phase0.BLSSignature{}, ctx.Err()
	case <-r.done:
	}
	if reveal, ok := r.reveals[pk]; ok {
		return reveal, nil
	}
	if r.err != nil {
		return phase0.BLSSignature{}, r.err
	}
	return phase0.BLSSignature{}, fmt.Errorf("%w: no RANDAO reveal for %#x", ErrInsufficientPartials, pk)
}

// signingRoot is compute_signing_root(obj, domain of domainType at epoch).
func (n *Node) signingRoot(domainType phase0.DomainType, epoch phase0.Epoch, obj interface{ HashTreeRoot() ([32]byte, error) }) (phase0.Root, error) {
	domain, err := n.chain.Domain(domainType, epoch)
	if err != nil {
		return phase0.Root{}, err
	}
	return signing.SigningRoot(obj, domain)
}

// Proposal encoding in the Raft log: version byte, blinded byte, the block's SSZ.
func encodeProposal(p *api.VersionedProposal) ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: empty proposal", ErrBeacon)
	}
	var (
		body []byte
		err  error
	)
	switch {
	case p.Version == spec.DataVersionFulu && !p.Blinded && p.Fulu != nil:
		body, err = p.Fulu.MarshalSSZ()
	case p.Version == spec.DataVersionFulu && p.Blinded && p.FuluBlinded != nil:
		body, err = p.FuluBlinded.MarshalSSZ()
	case p.Version == spec.DataVersionElectra && !p.Blinded && p.Electra != nil:
		body, err = p.Electra.MarshalSSZ()
	case p.Version == spec.DataVersionElectra && p.Blinded && p.ElectraBlinded != nil:
		body, err = p.ElectraBlinded.MarshalSSZ()
	default:
		return nil, fmt.Errorf("%w: unsupported proposal version %s (blinded %v)", ErrBeacon, p.Version, p.Blinded)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: encode proposal: %v", ErrBeacon, err)
	}
	blinded := byte(0)
	if p.Blinded {
		blinded = 1
	}
	return append([]byte{byte(p.Version), blinded}, body...), nil
}

func decodeProposal(b []byte) (*api.VersionedProposal, error) {
	if len(b) < 2 || b[1] > 1 {
		return nil, fmt.Errorf("%w: proposal of %d bytes", ErrInvalidDecided, len(b))
	}
	p := &api.VersionedProposal{Version: spec.DataVersion(b[0]), Blinded: b[1] == 1}
	body := b[2:]
	var err error
	switch {
	case p.Version == spec.DataVersionFulu && !p.Blinded:
		p.Fulu = new(apiv1fulu.BlockContents)
		err = p.Fulu.UnmarshalSSZ(body)
	case p.Version == spec.DataVersionFulu:
		p.FuluBlinded = new(apiv1electra.BlindedBeaconBlock)
		err = p.FuluBlinded.UnmarshalSSZ(body)
	case p.Version == spec.DataVersionElectra && !p.Blinded:
		p.Electra = new(apiv1electra.BlockContents)
		err = p.Electra.UnmarshalSSZ(body)
	case p.Version == spec.DataVersionElectra:
		p.ElectraBlinded = new(apiv1electra.BlindedBeaconBlock)
		err = p.ElectraBlinded.UnmarshalSSZ(body)
	default:
		return nil, fmt.Errorf("%w: proposal version %d", ErrInvalidDecided, b[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decode proposal: %v", ErrInvalidDecided, err)
	}
	return p, nil
}

// validateProposal checks a decided block against what this node knows on its own: the slot, the
// proposer, the RANDAO reveal the cluster combined, and the cluster's fee recipient.
func validateProposal(p *api.VersionedProposal, duty *proposerDuty, reveal phase0.BLSSignature, feeRecipient [20]byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: proposal: %s", ErrInvalidDecided, fmt.Sprintf(format, a...))
	}
	slot, err := p.Slot()
	if err != nil {
		return bad("%v", err)
	}
	if slot != duty.Slot {
		return bad("slot %d, the duty's is %d", slot, duty.Slot)
	}
	idx, err := p.ProposerIndex()
	if err != nil {
		return bad("%v", err)
	}
	if idx != duty.ValidatorIndex {
		return bad("proposer index %d, the duty's is %d", idx, duty.ValidatorIndex)
	}
	r, err := p.RandaoReveal()
	if err != nil {
		return bad("%v", err)
	}
	if r != reveal {
		return bad("RANDAO reveal is not the cluster's combined reveal")
	}
	fr, err := p.FeeRecipient()
	if err != nil {
		return bad("%v", err)
	}
	if !bytes.Equal(fr[:], feeRecipient[:]) {
		return bad("fee recipient %#x, the cluster's is %#x", fr[:], feeRecipient[:])
	}
	return nil
}

// knownBlock checks that this node's beacon node knows the proposal's parent block.
func (n *Node) knownBlock(ctx context.Context, p *api.VersionedProposal) error {
	parent, err := p.ParentRoot()
	if err != nil {
		return fmt.Errorf("%w: proposal: %v", ErrInvalidDecided, err)
	}
	got, err := n.beacon.BeaconBlockRoot(ctx, fmt.Sprintf("%#x", parent))
	if err != nil {
		return fmt.Errorf("%w: proposal's parent %#x is not a block this node's beacon node knows: %w", ErrInvalidDecided, parent, err)
	}
	if got != parent {
		return fmt.Errorf("%w: proposal's parent %#x: beacon node answered root %#x", ErrInvalidDecided, parent, got)
	}
	return nil
}

// submitProposal submits the decided block with the cluster's signature.
func (n *Node) submitProposal(ctx context.Context, p *api.VersionedProposal, sig phase0.BLSSignature) error {
	switch {
	case p.Blinded && p.Version == spec.DataVersionFulu:
		return n.beacon.SubmitBlindedProposal(ctx, &api.VersionedSignedBlindedProposal{Version: p.Version,
			Fulu: &apiv1electra.SignedBlindedBeaconBlock{Message: p.FuluBlinded, Signature: sig}})
	case p.Blinded:
		return n.beacon.SubmitBlindedProposal(ctx, &api.VersionedSignedBlindedProposal{Version: p.Version,
			Electra: &apiv1electra.SignedBlindedBeaconBlock{Message: p.ElectraBlinded, Signature: sig}})
	case p.Version == spec.DataVersionFulu:
		return n.beacon.SubmitProposal(ctx, &api.VersionedSignedProposal{Version: p.Version, Fulu: &apiv1fulu.SignedBlockContents{
			SignedBlock: &electra.SignedBeaconBlock{Message: p.Fulu.Block, Signature: sig}, KZGProofs: p.Fulu.KZGProofs, Blobs: p.Fulu.Blobs}})
	default:
		return n.beacon.SubmitProposal(ctx, &api.VersionedSignedProposal{Version: p.Version, Electra: &apiv1electra.SignedBlockContents{
			SignedBlock: &electra.SignedBeaconBlock{Message: p.Electra.Block, Signature: sig}, KZGProofs: p.Electra.KZGProofs, Blobs: p.Electra.Blobs}})
	}
}
