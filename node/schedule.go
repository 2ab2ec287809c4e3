package node

import (
	"context"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// schedule runs the slot loop until ctx ends: at every slot it makes sure the duties of this and
// the next epoch are known and starts the slot's duties, each in a goroutine owned by wg with
// the duty's deadline. It blocks until ctx ends (nil) or a fatal error stops the node.
func (n *Node) schedule(ctx context.Context, wg *sync.WaitGroup) error {
	chain := n.chain
	wg.Add(2)
	go func() { defer wg.Done(); n.followHeads(ctx) }()
	go func() { defer wg.Done(); n.runSubmitter(ctx) }()
	for {
		now := time.Now()
		slot, started := chain.SlotAt(now)
		next := chain.GenesisTime
		if started {
			next = chain.SlotStart(slot + 1)
		}
		if started {
			n.startSlot(ctx, wg, slot)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-n.fatal:
			return err
		case <-time.After(time.Until(next)):
		}
	}
}

// startSlot launches the duties of slot (called once per slot, at its start or, on the first
// slot after start-up, part-way through it).
func (n *Node) startSlot(ctx context.Context, wg *sync.WaitGroup, slot phase0.Slot) {
	chain := n.chain
	epoch := chain.EpochOf(slot)
	n.ensureDuties(ctx, epoch)
	n.ensureDuties(ctx, epoch+1)
	if uint64(slot)%chain.SlotsPerEpoch == chain.SlotsPerEpoch/2 && epoch%pruneEveryEpochs == 0 && epoch > 0 {
		n.prune(epoch)
	}
	n.agg.Trim(slot - min(slot, 2))
	n.tracker.Trim(slot - min(slot, trackerKeepSlots))
	n.trimRuns(slot - min(slot, 2))
	var due []*attesterDuty
	n.mu.Lock()
	for _, d := range n.duties[epoch] {
		if d.Slot == slot {
			due = append(due, d)
		}
	}
	n.mu.Unlock()
	if len(due) == 0 {
		return
	}
	n.metrics.dutiesExpected.WithLabelValues(dutyAttester).Add(float64(len(due)))
	// An attestation is worth nothing after its slot: that is its deadline.
	dctx, cancel := context.WithDeadline(ctx, chain.SlotStart(slot+1))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		n.runAttester(dctx, slot, due)
	}()
}

// ensureDuties fetches the attester duties of epoch unless they are known.
func (n *Node) ensureDuties(ctx context.Context, epoch phase0.Epoch) {
	n.mu.Lock()
	_, ok := n.duties[epoch]
	indices := make([]phase0.ValidatorIndex, 0, len(n.indices))
	byIndex := map[phase0.ValidatorIndex]phase0.BLSPubKey{}
	for pk, idx := range n.indices {
		indices = append(indices, idx)
		byIndex[idx] = pk
	}
	n.mu.Unlock()
	if ok || len(indices) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, n.chain.SlotDuration/2)
	defer cancel()
	raw, err := n.beacon.AttesterDuties(fctx, epoch, indices)
	if err != nil {
		n.log.Warn("Attester duties not fetched; retrying next slot", "epoch", epoch, "err", err)
		return
	}
	var duties []*attesterDuty
	for _, d := range raw {
		pk, ok := byIndex[d.ValidatorIndex]
		if !ok || d.Slot < n.chain.FirstSlot(epoch) || d.Slot >= n.chain.FirstSlot(epoch+1) {
			n.log.Warn("Beacon node returned a duty that was not asked for; ignored", "epoch", epoch, "validator_index", d.ValidatorIndex, "slot", d.Slot)
			continue
		}
		// The committee position becomes an aggregation bit: refuse what cannot be one.
		if d.CommitteeIndex >= 64 || d.CommitteeLength == 0 || d.ValidatorCommitteeIndex >= d.CommitteeLength {
			n.log.Warn("Beacon node returned an impossible committee position; duty ignored", "epoch", epoch, "validator_index", d.ValidatorIndex,
				"committee_index", d.CommitteeIndex, "committee_length", d.CommitteeLength, "validator_committee_index", d.ValidatorCommitteeIndex)
			continue
		}
		duties = append(duties, &attesterDuty{Pubkey: pk, AttesterDuty: d})
	}
	n.mu.Lock()
	n.duties[epoch] = duties
	for e := range n.duties {
		if e+2 < epoch {
			delete(n.duties, e)
		}
	}
	n.mu.Unlock()
	n.log.Debug("Attester duties fetched", "epoch", epoch, "duties", len(duties))
}

func (n *Node) trimRuns(before phase0.Slot) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.atts {
		if k.Slot < before {
			delete(n.atts, k)
		}
	}
}

func (n *Node) currentChain() *Chain {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chain
}

// followHeads feeds the beacon node's head events to the head tracker until ctx ends.
func (n *Node) followHeads(ctx context.Context) {
	if err := n.beacon.SubscribeHeads(ctx, n.heads.Seen); err != nil {
		n.log.Warn("No head events: attesting at one third of each slot", "err", err)
	}
	<-ctx.Done()
}

// submission is a batch of recovered attestations of one duty.
type submission struct {
	key  dutyKey
	atts []*spec.VersionedAttestation
}

// submit queues a batch for the submitter; it never blocks the caller (a p2p handler).
func (n *Node) submit(key dutyKey, atts []*spec.VersionedAttestation) {
	select {
	case n.submitQ <- submission{key: key, atts: atts}:
	default:
		n.metrics.submitted.WithLabelValues(key.Type, "dropped").Add(float64(len(atts)))
		n.log.Error("Submission queue full; attestations dropped", "slot", key.Slot, "count", len(atts))
	}
}

// runSubmitter submits queued batches until ctx ends, each before the end of its slot.
func (n *Node) runSubmitter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-n.submitQ:
			sctx, cancel := context.WithDeadline(ctx, n.chain.SlotStart(s.key.Slot+1))
			err := n.beacon.SubmitAttestations(sctx, s.atts)
			cancel()
			n.recordSubmission(s.key, s.atts, err)
			if err != nil {
				n.metrics.submitted.WithLabelValues(s.key.Type, "error").Add(float64(len(s.atts)))
				n.metrics.duties.WithLabelValues(s.key.Type, "failed", ReasonBeaconError).Add(float64(len(s.atts)))
				n.tracker.Fail(s.key, StepSubmitted, beaconReason(err), err)
				n.log.Warn("Submission failed", "slot", s.key.Slot, "duty", s.key.Type, "count", len(s.atts), "err", err)
				continue
			}
			n.metrics.submitted.WithLabelValues(s.key.Type, "ok").Add(float64(len(s.atts)))
			n.tracker.Submitted(s.key, len(s.atts), time.Since(n.chain.SlotStart(s.key.Slot)))
			n.metrics.duties.WithLabelValues(s.key.Type, "success", "").Add(float64(len(s.atts)))
			n.metrics.stepSeconds.WithLabelValues(s.key.Type, "submitted").Observe(time.Since(n.chain.SlotStart(s.key.Slot)).Seconds())
			n.log.Info("Attestations submitted", "slot", s.key.Slot, "duty", s.key.Type, "count", len(s.atts))
		}
	}
}

// headTracker remembers the newest head slot seen and wakes waiters.
type headTracker struct {
	mu      sync.Mutex
	highest phase0.Slot
	changed chan struct{}
}

func newHeadTracker() *headTracker { return &headTracker{changed: make(chan struct{})} }

// Seen records a head at slot.
func (h *headTracker) Seen(slot phase0.Slot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if slot > h.highest {
		h.highest = slot
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// Wait returns once a head at or after slot has been seen, at latest, or when ctx ends.
func (h *headTracker) Wait(ctx context.Context, slot phase0.Slot, latest time.Time) {
	timer := time.NewTimer(time.Until(latest))
	defer timer.Stop()
	for {
		h.mu.Lock()
		seen, changed := h.highest >= slot, h.changed
		h.mu.Unlock()
		if seen {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case <-changed:
		}
	}
}

// prune drops slashing history older than the configured window (it blocks the DB briefly:
// it rewrites the log, so it runs rarely and mid-epoch).
func (n *Node) prune(epoch phase0.Epoch) {
	start := time.Now()
	if err := n.db.Prune(n.cfg.SlashingKeepEpochs, epoch, n.chain.SlotsPerEpoch); err != nil {
		n.log.Error("Slashing DB pruning failed", "epoch", epoch, "err", err)
		return
	}
	n.log.Info("Slashing DB pruned", "epoch", epoch, "keep_epochs", n.cfg.SlashingKeepEpochs, "took", time.Since(start))
}
