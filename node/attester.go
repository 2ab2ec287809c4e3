package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
)

const dutyAttester = "attester"

// Reasons a node does not sign.
var (
	// ErrHalted is returned for signing attempts after this node halted.
	ErrHalted = errors.New("signing halted")
	// ErrBlocked is returned when the doppelganger check blocks every validator of a duty.
	ErrBlocked = errors.New("no validator of the duty may be signed for (doppelganger check)")
)

// attesterDuty is one validator's attester duty, as its beacon node assigned it.
type attesterDuty struct {
	Pubkey phase0.BLSPubKey
	*apiv1.AttesterDuty
}

// attesterRun is what this node decided and validated for one attester duty; it is what a
// recovered signature is submitted with.
type attesterRun struct {
	data    *phase0.AttestationData
	version spec.DataVersion
	duties  map[phase0.BLSPubKey]*attesterDuty
}

// runAttester performs the attester duty of slot for the given validators. ctx carries the
// duty's deadline (the end of the slot); the duty's tracker record is closed at that deadline.
func (n *Node) runAttester(ctx context.Context, slot phase0.Slot, duties []*attesterDuty) {
	chain := n.chain
	start := chain.SlotStart(slot)
	key := dutyKey{Slot: slot, Type: dutyAttester}
	log := n.log.With("slot", slot, "duty", dutyAttester, "validators", len(duties))
	n.tracker.Start(key, len(duties))
	n.recordDutyStart(key, duties)
	defer n.finishDuty(ctx, key, log)
	step := func(name string) {
		d := time.Since(start)
		n.metrics.stepSeconds.WithLabelValues(dutyAttester, name).Observe(d.Seconds())
		n.tracker.Step(key, name, d)
	}
	fail := func(step, reason string, err error) {
		n.metrics.duties.WithLabelValues(dutyAttester, "failed", reason).Add(float64(len(duties)))
		n.tracker.Fail(key, step, reason, err)
		n.recordDutyFailure(key, duties, reason, err)
		log.Warn("Attester duty failed", "step", step, "reason", reason, "err", err)
	}

	if reason := n.haltedReason(); reason != "" {
		fail(StepFetch, ReasonDuplicateInstance, fmt.Errorf("%w: %s", ErrHalted, reason))
		return
	}
	// Attest once the slot's head block is seen, at the latest at one third of the slot.
	n.heads.Wait(ctx, slot, start.Add(chain.SlotDuration/3))
	if ctx.Err() != nil {
		fail(StepFetch, ReasonLate, ctx.Err())
		return
	}
	data, err := n.beacon.AttestationData(ctx, slot)
	if err != nil {
		fail(StepFetch, beaconReason(err), err)
		return
	}
	step(StepFetch)
	value, err := data.MarshalSSZ()
	if err != nil {
		fail(StepFetch, ReasonInternal, fmt.Errorf("encode attestation data: %w", err))
		return
	}
	decidedBytes, err := n.cons.Propose(ctx, consensus.Duty{Slot: uint64(slot), Type: dutyAttester}, value)
	if err != nil {
		fail(StepConsensus, ReasonNoConsensus, err)
		return
	}
	step(StepConsensus)
	decided := new(phase0.AttestationData)
	if err := decided.UnmarshalSSZ(decidedBytes); err != nil {
		fail(StepValidate, ReasonInvalidDecided, fmt.Errorf("%w: %v", ErrInvalidDecided, err))
		return
	}
	justified, err := n.beacon.JustifiedEpoch(ctx)
	if err != nil {
		fail(StepValidate, beaconReason(err), err)
		return
	}
	current, _ := chain.SlotAt(time.Now())
	if err := validateAttestationData(decided, slot, current, chain.EpochOf(slot), justified); err != nil {
		fail(StepValidate, ReasonInvalidDecided, err)
		return
	}
	step(StepValidate)
	if err := n.signAttestations(ctx, key, decided, duties, log); err != nil {
		var refused *refusalError
		switch {
		case errors.As(err, &refused):
			fail(StepRecorded, refused.reason, err)
		default:
			fail(StepRecorded, failureReason(err), err)
		}
		return
	}
	step(StepSent)
}

// finishDuty waits for the duty's deadline, closes its tracker record and shares it with the
// peers. On shutdown the record is closed but not shared.
func (n *Node) finishDuty(ctx context.Context, key dutyKey, log *slog.Logger) {
	<-ctx.Done()
	rec := n.tracker.Finish(key)
	if rec.Reason == ReasonInsufficientPartials {
		n.metrics.duties.WithLabelValues(key.Type, "failed", ReasonInsufficientPartials).Add(float64(rec.Validators - rec.Submitted))
		log.Warn("Attester duty incomplete", "reason", rec.Reason, "submitted", rec.Submitted)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		n.shareRecord(context.WithoutCancel(ctx), rec)
	}
}

// beaconReason tells a beacon node fault from a missed deadline.
func beaconReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ReasonLate
	}
	return ReasonBeaconError
}

// refusalError is returned when the slashing DB refused every validator of a duty.
type refusalError struct {
	reason string
	rule   slashingdb.Rule
}

func (e *refusalError) Error() string {
	return fmt.Sprintf("slashing protection refused every validator of the duty (rule %s)", e.rule)
}

// refusalReason maps a slashing DB rule to the tracker's reason list.
func refusalReason(r slashingdb.Rule) string {
	switch r {
	case slashingdb.RuleStartupGuard:
		return ReasonStartupGuard
	case slashingdb.RuleUnknownValidator:
		return ReasonUnknownValidator
	}
	return ReasonSlashingRefusal
}

// signAttestations checks and records every validator's attestation in the slashing DB in one
// transaction, and only after it has committed signs the allowed ones with this node's shares
// and sends the partials to its peers.
func (n *Node) signAttestations(ctx context.Context, key dutyKey, data *phase0.AttestationData, duties []*attesterDuty, log *slog.Logger) error {
	version, err := n.chain.AttestationVersion(data.Target.Epoch)
	if err != nil {
		return err
	}
	domain, err := n.chain.Domain(signing.DomainBeaconAttester, data.Target.Epoch)
	if err != nil {
		return err
	}
	root, err := signing.SigningRoot(data, domain)
	if err != nil {
		return err
	}
	run := &attesterRun{data: data, version: version, duties: map[phase0.BLSPubKey]*attesterDuty{}}
	roots := map[phase0.BLSPubKey]phase0.Root{}
	var (
		reqs    []slashingdb.AttestationRequest
		signers []*attesterDuty // the duties this node may sign, in reqs order
	)
	for _, d := range duties {
		run.duties[d.Pubkey] = d
		roots[d.Pubkey] = root
		if reason := n.gate.Blocked(d.Pubkey); reason != "" {
			log.Warn("Not signing", "pubkey", fmt.Sprintf("%#x", d.Pubkey), "reason", reason)
			continue
		}
		signers = append(signers, d)
		reqs = append(reqs, slashingdb.AttestationRequest{Pubkey: d.Pubkey, SourceEpoch: data.Source.Epoch, TargetEpoch: data.Target.Epoch, SigningRoot: root})
	}
	n.mu.Lock()
	n.atts[key] = run
	n.mu.Unlock()

	if reason := n.haltedReason(); reason != "" {
		return fmt.Errorf("%w: %s", ErrHalted, reason)
	}
	sigs, errs := n.agg.Expect(key, roots)
	n.handleFull(key, sigs, errs)
	if len(reqs) == 0 {
		return ErrBlocked
	}
	verdicts, err := n.db.CheckAndRecordAttestations(reqs)
	if err != nil {
		return fmt.Errorf("slashing DB: %w", err)
	}
	if len(verdicts) != len(reqs) {
		return fmt.Errorf("slashing DB answered %d verdicts for %d requests: refusing the duty", len(verdicts), len(reqs))
	}
	// The DB transaction has committed (fsync included): only now may partials exist.
	n.tracker.Step(key, StepRecorded, time.Since(n.chain.SlotStart(key.Slot)))
	msg := p2p.Message{Slot: uint64(key.Slot), DutyType: key.Type}
	var (
		lastRule slashingdb.Rule
		allowed  []*attesterDuty
		keys     []*bls.SecretKey
	)
	for i, v := range verdicts {
		if !v.Allowed {
			lastRule = v.Rule
			n.metrics.slashingRefusals.WithLabelValues(string(v.Rule)).Inc()
			n.tracker.Fail(key, StepRecorded, refusalReason(v.Rule), fmt.Errorf("validator %#x: %s: %s", signers[i].Pubkey, v.Rule, v.Detail))
			log.Warn("Slashing protection refused to sign", "pubkey", fmt.Sprintf("%#x", signers[i].Pubkey), "rule", v.Rule, "detail", v.Detail)
			continue
		}
		allowed = append(allowed, signers[i])
		keys = append(keys, n.id.Shares[signers[i].Pubkey])
	}
	for i, sig := range signing.SignSameMessage(keys, root[:]) {
		msg.Partials = append(msg.Partials, p2p.Partial{GroupPubkey: allowed[i].Pubkey[:], SigningRoot: root[:], Signature: sig})
	}
	if len(msg.Partials) == 0 {
		return &refusalError{reason: refusalReason(lastRule), rule: lastRule}
	}
	n.metrics.partialsSent.Add(float64(len(msg.Partials)))
	sigs, errs = n.agg.Add(key, n.id.ShareIndex, msg.Partials)
	n.handleFull(key, sigs, errs)
	if err := n.ex.Broadcast(ctx, msg); err != nil {
		// Peers that are down miss our partials; the others can still reach the threshold.
		log.Debug("Partials not delivered to every peer", "err", err)
	}
	return nil
}

// onPartials handles a partial-signature message from a cluster peer.
func (n *Node) onPartials(from peer.ID, msg p2p.Message) {
	idx, ok := n.id.Lock.ShareIndex(from)
	if !ok {
		return // the gater admits lock peers only
	}
	chain := n.currentChain()
	if chain == nil || msg.DutyType != dutyAttester {
		return
	}
	cur, started := chain.SlotAt(time.Now())
	slot := phase0.Slot(msg.Slot)
	// Only duties of the current or the previous slot are accepted: anything else is stale or
	// an attempt to fill memory.
	if !started || slot > cur || slot+1 < cur {
		n.log.Debug("Partials for a slot outside the window dropped", "peer", idx, "slot", slot, "current", cur)
		return
	}
	key := dutyKey{Slot: slot, Type: msg.DutyType}
	sigs, errs := n.agg.Add(key, idx, msg.Partials)
	n.metrics.partials.WithLabelValues("received").Add(float64(len(msg.Partials)))
	n.handleFull(key, sigs, errs)
}

// handleFull submits recovered signatures, and logs refused partials.
func (n *Node) handleFull(key dutyKey, sigs []fullSig, errs []error) {
	for _, err := range errs {
		if errors.Is(err, ErrBadBatch) {
			n.metrics.partials.WithLabelValues("bad_batch").Inc()
		} else {
			n.metrics.partials.WithLabelValues("invalid").Inc()
		}
		n.log.Warn("Partial signature refused", "slot", key.Slot, "duty", key.Type, "err", err)
	}
	if len(sigs) == 0 {
		return
	}
	n.mu.Lock()
	run := n.atts[key]
	n.mu.Unlock()
	if run == nil {
		return
	}
	atts := make([]*spec.VersionedAttestation, 0, len(sigs))
	for _, s := range sigs {
		d, ok := run.duties[s.Pubkey]
		if !ok {
			continue // the aggregator expects only this run's validators; never index a missing duty
		}
		aggBits := bitfield.NewBitlist(d.CommitteeLength)
		aggBits.SetBitAt(d.ValidatorCommitteeIndex, true)
		committeeBits := bitfield.NewBitvector64()
		committeeBits.SetBitAt(uint64(d.CommitteeIndex), true)
		att := &electra.Attestation{AggregationBits: aggBits, Data: run.data, Signature: s.Signature, CommitteeBits: committeeBits}
		idx := d.ValidatorIndex
		va := &spec.VersionedAttestation{Version: run.version, ValidatorIndex: &idx}
		if run.version == spec.DataVersionFulu {
			va.Fulu = att
		} else {
			va.Electra = att
		}
		atts = append(atts, va)
	}
	n.submit(key, atts)
}
