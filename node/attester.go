package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
)

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

// runAttester performs the attester duty of slot for the given validators. ctx carries the
// duty's deadline (the end of the slot); the duty's tracker record is closed at that deadline.
func (n *Node) runAttester(ctx context.Context, slot phase0.Slot, duties []*attesterDuty) {
	chain := n.chain
	start := chain.SlotStart(slot)
	d := n.beginDuty(dutyKey{Slot: slot, Type: dutyAttester}, attesterPubkeys(duties))
	defer d.finish(ctx)

	if reason := n.haltedReason(); reason != "" {
		d.fail(StepFetch, ReasonDuplicateInstance, fmt.Errorf("%w: %s", ErrHalted, reason))
		return
	}
	// Attest once the slot's head block is seen, at the latest at one third of the slot.
	n.heads.Wait(ctx, slot, start.Add(chain.SlotDuration/3))
	if ctx.Err() != nil {
		d.fail(StepFetch, ReasonLate, ctx.Err())
		return
	}
	d.step(StepStart)
	var value []byte
	data, err := n.beacon.AttestationData(ctx, slot)
	if err == nil {
		if value, err = data.MarshalSSZ(); err != nil {
			err = fmt.Errorf("%w: encode attestation data: %v", ErrBeacon, err)
		}
	}
	decidedBytes, ok := n.agree(ctx, d, value, err)
	if !ok {
		return
	}
	decided, err := n.validAttestationData(ctx, slot, decidedBytes)
	if err != nil {
		d.fail(StepValidate, failureReason(err), err)
		return
	}
	d.step(StepValidate)
	run, err := n.signAttestations(ctx, d, decided, duties)
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
	version, _ := chain.AttestationVersion(decided.Target.Epoch) // checked by signAttestations
	byPubkey := make(map[phase0.BLSPubKey]*attesterDuty, len(duties))
	for _, a := range duties {
		byPubkey[a.Pubkey] = a
	}
	run.collect(ctx, n.linger(), func(sigs []fullSig) {
		atts, pks := buildAttestations(sigs, byPubkey, decided, version)
		d.submit(pks, func() error { return n.beacon.SubmitAttestations(ctx, atts) })
	})
}

// linger is how long a duty's submission waits for the signatures still missing once the first
// ones are in: long enough that normally one call carries all, short enough that a validator
// that never completes costs the others little.
func (n *Node) linger() time.Duration { return min(n.chain.SlotDuration/24, 500*time.Millisecond) }

// validAttestationData decodes the decided attestation data of slot and checks it (see
// validateAttestationData) against this node's own view of the chain.
func (n *Node) validAttestationData(ctx context.Context, slot phase0.Slot, b []byte) (*phase0.AttestationData, error) {
	decided := new(phase0.AttestationData)
	if err := decided.UnmarshalSSZ(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDecided, err)
	}
	// The justified epoch only bounds the source from above, and the highest one this node's
	// beacon node reported is kept: only a source above it costs a request (on the hot path,
	// one per slot at most, usually none). In an epoch's first slot, before its block arrives,
	// the head state predates the epoch transition and its justified checkpoint can trail the
	// source of the slot's attestation data (computed through the transition): then the
	// justified checkpoint of the state at the duty's slot, advanced through it, is the bound.
	// Never the attestation data's own source: that is the value under test.
	if decided.Source == nil || decided.Source.Epoch > phase0.Epoch(n.justified.Load()) {
		j, err := n.beacon.JustifiedEpoch(ctx, "head")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBeacon, err)
		}
		n.raiseJustified(j)
	}
	if decided.Source != nil && decided.Source.Epoch > phase0.Epoch(n.justified.Load()) {
		if j, err := n.beacon.JustifiedEpoch(ctx, strconv.FormatUint(uint64(slot), 10)); err == nil {
			n.raiseJustified(j)
		}
	}
	justified := phase0.Epoch(n.justified.Load())
	current, _ := n.chain.SlotAt(time.Now())
	if err := validateAttestationData(decided, slot, current, n.chain.EpochOf(slot), justified); err != nil {
		return nil, err
	}
	return decided, nil
}

// raiseJustified records a justified epoch this node's own beacon node reported, keeping the
// highest.
func (n *Node) raiseJustified(e phase0.Epoch) {
	for old := n.justified.Load(); uint64(e) > old && !n.justified.CompareAndSwap(old, uint64(e)); old = n.justified.Load() {
	}
}

// buildAttestations turns recovered signatures into SingleAttestation-convertible attestations.
func buildAttestations(sigs []fullSig, duties map[phase0.BLSPubKey]*attesterDuty, data *phase0.AttestationData, version spec.DataVersion) ([]*spec.VersionedAttestation, []phase0.BLSPubKey) {
	atts := make([]*spec.VersionedAttestation, 0, len(sigs))
	pks := make([]phase0.BLSPubKey, 0, len(sigs))
	for _, s := range sigs {
		d, ok := duties[s.Pubkey]
		if !ok {
			continue // the aggregator expects only this run's validators; never index a missing duty
		}
		aggBits := bitfield.NewBitlist(d.CommitteeLength)
		aggBits.SetBitAt(d.ValidatorCommitteeIndex, true)
		committeeBits := bitfield.NewBitvector64()
		committeeBits.SetBitAt(uint64(d.CommitteeIndex), true)
		att := &electra.Attestation{AggregationBits: aggBits, Data: data, Signature: s.Signature, CommitteeBits: committeeBits}
		idx := d.ValidatorIndex
		va := &spec.VersionedAttestation{Version: version, ValidatorIndex: &idx}
		if version == spec.DataVersionFulu {
			va.Fulu = att
		} else {
			va.Electra = att
		}
		atts = append(atts, va)
		pks = append(pks, s.Pubkey)
	}
	return atts, pks
}

// finishDuty waits for the duty's deadline, closes its tracker record and shares it with the
// peers. On shutdown the record is closed but not shared.
func (n *Node) finishDuty(ctx context.Context, key dutyKey, log *slog.Logger) {
	<-ctx.Done()
	rec := n.tracker.Finish(key)
	if rec.Reason == ReasonInsufficientPartials {
		n.metrics.duties.WithLabelValues(metricType(key.Type), "failed", ReasonInsufficientPartials).Add(float64(rec.Validators - rec.Submitted))
		log.Warn("Duty incomplete", "reason", rec.Reason, "submitted", rec.Submitted)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		n.shareRecord(context.WithoutCancel(ctx), rec)
	}
}

// beaconReason tells a beacon node fault from a missed deadline or this node's shutdown, by
// failureReason's rules (which come first when a stop also cancelled the call).
func beaconReason(err error) string {
	if r := failureReason(err); r == ReasonStopping || r == ReasonLate {
		return r
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

// allowedByDB keeps the items the slashing DB allowed (verdicts in items' order), booking every
// refusal. It fails the whole duty if the DB's answer does not match the request.
func (n *Node) allowedByDB(d *dutyExec, items []toSign, verdicts []slashingdb.Verdict, err error) ([]toSign, error) {
	if err != nil {
		return nil, fmt.Errorf("slashing DB: %w", err)
	}
	if len(verdicts) != len(items) {
		return nil, fmt.Errorf("slashing DB answered %d verdicts for %d requests: refusing the duty", len(verdicts), len(items))
	}
	// The DB transaction has committed (fsync included): only now may partials exist.
	d.step(StepRecorded)
	var (
		lastRule slashingdb.Rule
		allowed  []toSign
	)
	for i, v := range verdicts {
		if !v.Allowed {
			lastRule = v.Rule
			n.metrics.slashingRefusals.WithLabelValues(string(v.Rule)).Inc()
			n.tracker.Fail(d.key, StepRecorded, refusalReason(v.Rule), fmt.Errorf("validator %#x: %s: %s", items[i].pubkey, v.Rule, v.Detail))
			d.log.Warn("Slashing protection refused to sign", "pubkey", fmt.Sprintf("%#x", items[i].pubkey), "rule", v.Rule, "detail", v.Detail)
			continue
		}
		allowed = append(allowed, items[i])
	}
	if len(allowed) == 0 {
		return nil, &refusalError{reason: refusalReason(lastRule), rule: lastRule}
	}
	return allowed, nil
}

// signAttestations checks and records every validator's attestation in the slashing DB in one
// transaction, and only after it has committed signs the allowed ones with this node's shares
// and sends the partials to its peers. It returns the run that collects the group signatures.
func (n *Node) signAttestations(ctx context.Context, d *dutyExec, data *phase0.AttestationData, duties []*attesterDuty) (*sigRun, error) {
	if _, err := n.chain.AttestationVersion(data.Target.Epoch); err != nil {
		return nil, err
	}
	domain, err := n.chain.Domain(signing.DomainBeaconAttester, data.Target.Epoch)
	if err != nil {
		return nil, err
	}
	root, err := signing.SigningRoot(data, domain)
	if err != nil {
		return nil, err
	}
	roots := map[phase0.BLSPubKey]phase0.Root{}
	var (
		reqs  []slashingdb.AttestationRequest
		items []toSign // the duties this node may sign, in reqs order
	)
	for _, a := range duties {
		roots[a.Pubkey] = root
		if !n.signable(a.Pubkey, d.log) {
			continue
		}
		items = append(items, toSign{pubkey: a.Pubkey, root: root})
		reqs = append(reqs, slashingdb.AttestationRequest{Pubkey: a.Pubkey, SourceEpoch: data.Source.Epoch, TargetEpoch: data.Target.Epoch, SigningRoot: root})
	}
	if reason := n.haltedReason(); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrHalted, reason)
	}
	run := n.expect(d.key, roots)
	if len(reqs) == 0 {
		return nil, ErrBlocked
	}
	verdicts, err := n.db.CheckAndRecordAttestations(reqs)
	allowed, err := n.allowedByDB(d, items, verdicts, err)
	if err != nil {
		return nil, err
	}
	if err := n.sendPartials(ctx, d.key, allowed, d.log); err != nil {
		return nil, err
	}
	return run, nil
}

// onPartials handles a partial-signature message from a cluster peer.
func (n *Node) onPartials(from peer.ID, msg p2p.Message) {
	idx, ok := n.id.Lock.ShareIndex(from)
	if !ok {
		return // the gater admits lock peers only
	}
	chain := n.currentChain()
	if chain == nil || !knownDutyType(msg.DutyType) {
		return
	}
	cur, started := chain.SlotAt(time.Now())
	slot := phase0.Slot(msg.Slot)
	// Only duties from the previous to the next slot are accepted (selection proofs are made a
	// slot ahead): anything else is stale or an attempt to fill memory.
	if !started || slot > cur+1 || slot+1 < cur {
		n.log.Debug("Partials for a slot outside the window dropped", "peer", idx, "slot", slot, "current", cur)
		return
	}
	key := dutyKey{Slot: slot, Type: msg.DutyType}
	// The type is known (checked above), so the label's values stay a small fixed set.
	pprof.Do(context.Background(), dutyLabels(msg.DutyType), func(context.Context) {
		sigs, errs := n.agg.Add(key, idx, msg.Partials)
		n.metrics.partials.WithLabelValues("received").Add(float64(len(msg.Partials)))
		n.handleFull(key, sigs, errs)
	})
}

// handleFull hands recovered signatures to their duty's run, and logs refused partials.
func (n *Node) handleFull(key dutyKey, sigs []fullSig, errs []error) {
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrBadBatch):
			n.metrics.partials.WithLabelValues("bad_batch").Inc()
		case errors.Is(err, ErrOwnShare):
			n.metrics.partials.WithLabelValues("own_dropped").Inc()
			n.log.Error("This node's partial did not combine: check its key share", "slot", key.Slot, "duty", key.Type, "err", err)
			continue
		default:
			n.metrics.partials.WithLabelValues("invalid").Inc()
		}
		n.log.Warn("Partial signature refused", "slot", key.Slot, "duty", key.Type, "err", err)
	}
	if len(sigs) == 0 {
		return
	}
	n.mu.Lock()
	run := n.runs[key]
	n.mu.Unlock()
	if run != nil {
		run.add(sigs)
	}
}
