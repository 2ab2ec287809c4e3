package node

import (
	"context"
	"log/slog"
	"runtime/pprof"
	"sync"
	"time"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// startSlot launches the duties of slot (called once per slot, at its start or, on the first
// slot after start-up, part-way through it).
func (n *Node) startSlot(ctx context.Context, wg *sync.WaitGroup, slot phase0.Slot) {
	chain := n.chain
	epoch := chain.EpochOf(slot)
	n.ensureDuties(ctx, epoch)
	// The next slot's selection proofs and RANDAO reveals need its duties: in an epoch's last
	// slot these are the next epoch's, normally fetched during the epoch already.
	if next := chain.EpochOf(slot + 1); next != epoch {
		n.ensureDuties(ctx, next)
	}
	// Otherwise the next epoch's duties are fetched after this slot's duties have started: in an
	// epoch's first slot, their three beacon calls delayed every duty of the slot (by 150 ms on
	// the devnet, where the proposer's block then reached the beacon node later too).
	defer n.ensureDuties(ctx, epoch+1)
	if uint64(slot)%chain.SlotsPerEpoch == chain.SlotsPerEpoch/2 && pruneDue(epoch, n.cfg.SlashingKeepEpochs) {
		n.prune(epoch)
	}
	n.agg.Trim(slot - min(slot, 2))
	n.tracker.Trim(slot - min(slot, trackerKeepSlots))
	n.trimRuns(slot - min(slot, 2))
	// spawn runs f with a deadline, owned by wg, under the pprof label duty=<type> so that a
	// CPU profile splits by duty type (go tool pprof -tagfocus duty=attester).
	spawn := func(dutyType string, deadline time.Time, f func(context.Context)) {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			pprof.Do(dctx, dutyLabels(dutyType), f)
		}()
	}
	slotEnd := chain.SlotStart(slot + 1)
	first := n.firstSlot.CompareAndSwap(false, true)
	if first || uint64(slot)%chain.SlotsPerEpoch == 0 {
		spawn("epoch_preparation", slotEnd, func(ctx context.Context) { n.runEpochPreparations(ctx, slot) })
		if members := n.syncDutiesOf(epoch); len(members) > 0 {
			spawn("sync_subscription", slotEnd, func(ctx context.Context) { n.subscribeSync(ctx, epoch, members) })
		}
	}
	// Selection proofs are made a slot ahead (and for this slot right after start-up), so that
	// the beacon node knows its aggregators before their slot. The next slot's wait for half of
	// this one: they cost as much as this slot's attestations (a partial per attester to sign,
	// verify and recover), and made at the slot's start they would compete with them for the CPU
	// once the head block comes early. Started half a slot in, they still reach the beacon node
	// about half a slot before their slot starts, and 7/6 of a slot before its aggregation.
	for _, s := range []phase0.Slot{slot, slot + 1} {
		if !n.markStarted(dutyKey{Slot: s, Type: dutySelection}) {
			continue
		}
		begin := chain.SlotStart(slot)
		if s > slot {
			begin = begin.Add(chain.SlotDuration / 2)
		}
		if due := n.attesterDutiesAt(s); len(due) > 0 {
			spawn(dutySelection, chain.SlotStart(s+1), func(ctx context.Context) {
				if sleepUntil(ctx, begin) {
					n.runSelections(ctx, s, due)
				}
			})
		}
		// The RANDAO reveals of the proposers too, so that a proposal starts with its block.
		if props := n.proposerDutiesAt(s); len(props) > 0 {
			if r, created := n.revealsFor(s, props); created {
				spawn(dutyRandao, chain.SlotStart(s+1), func(ctx context.Context) {
					if sleepUntil(ctx, begin) {
						n.signReveals(ctx, r, s, dutyRandao)
					} else {
						r.finish(nil, ctx.Err())
					}
				})
			}
		}
		if members := n.syncDutiesOf(chain.EpochOf(s)); len(members) > 0 {
			spawn(dutySyncSelection, chain.SlotStart(s+1), func(ctx context.Context) {
				if sleepUntil(ctx, begin) {
					n.runSyncSelections(ctx, s, members)
				}
			})
		}
	}
	// An attestation (and an aggregate, a block, a sync message) is worth little after its
	// slot: that is each duty's deadline.
	if due := n.attesterDutiesAt(slot); len(due) > 0 {
		spawn(dutyAttester, slotEnd, func(ctx context.Context) { n.runAttester(ctx, slot, due) })
		spawn(dutyAggregator, slotEnd, func(ctx context.Context) { n.runAggregator(ctx, slot, due) })
	}
	for _, p := range n.proposerDutiesAt(slot) {
		spawn(dutyProposer, slotEnd, func(ctx context.Context) { n.runProposer(ctx, p) })
	}
	if members := n.syncDutiesOf(epoch); len(members) > 0 {
		spawn(dutySyncMessage, slotEnd, func(ctx context.Context) { n.runSyncMessage(ctx, slot, members) })
		spawn(dutySyncContrib, slotEnd, func(ctx context.Context) { n.runSyncContributions(ctx, slot, members) })
	}
}

// markStarted returns true the first time it is called for key.
func (n *Node) markStarted(key dutyKey) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started[key] {
		return false
	}
	n.started[key] = true
	return true
}

// epochDuties are this cluster's duties in one epoch, per type; a type whose have flag is unset
// is not fetched yet.
type epochDuties struct {
	attester                    []*attesterDuty
	proposer                    []*proposerDuty
	sync                        []*syncDuty
	haveAtt, haveProp, haveSync bool
}

func (n *Node) attesterDutiesAt(slot phase0.Slot) []*attesterDuty {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*attesterDuty
	if ed := n.duties[n.chain.EpochOf(slot)]; ed != nil {
		for _, d := range ed.attester {
			if d.Slot == slot {
				out = append(out, d)
			}
		}
	}
	return out
}

func (n *Node) proposerDutiesAt(slot phase0.Slot) []*proposerDuty {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*proposerDuty
	if ed := n.duties[n.chain.EpochOf(slot)]; ed != nil {
		for _, d := range ed.proposer {
			if d.Slot == slot {
				out = append(out, d)
			}
		}
	}
	return out
}

func (n *Node) syncDutiesOf(epoch phase0.Epoch) []*syncDuty {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ed := n.duties[epoch]; ed != nil {
		return ed.sync
	}
	return nil
}

// subscribeSync asks the beacon node to join the sync committee subnets of the epoch's members.
func (n *Node) subscribeSync(ctx context.Context, epoch phase0.Epoch, members []*syncDuty) {
	subs := make([]*apiv1.SyncCommitteeSubscription, 0, len(members))
	for _, m := range members {
		subs = append(subs, &apiv1.SyncCommitteeSubscription{ValidatorIndex: m.ValidatorIndex,
			SyncCommitteeIndices: m.ValidatorSyncCommitteeIndices, UntilEpoch: epoch + 1})
	}
	if err := n.beacon.SubmitSyncCommitteeSubscriptions(ctx, subs); err != nil {
		n.log.Warn("Sync committee subscriptions failed", "epoch", epoch, "err", err)
	}
}

// ensureDuties fetches the duties of epoch that are not known yet (each type on its own, so
// that one failing endpoint does not hold back the others).
func (n *Node) ensureDuties(ctx context.Context, epoch phase0.Epoch) {
	n.mu.Lock()
	ed := n.duties[epoch]
	if ed == nil {
		ed = &epochDuties{}
		n.duties[epoch] = ed
	}
	need := *ed
	for e := range n.duties {
		if e+2 < epoch {
			delete(n.duties, e)
		}
	}
	if need.haveAtt && need.haveProp && need.haveSync {
		n.mu.Unlock()
		return
	}
	indices := make([]phase0.ValidatorIndex, 0, len(n.indices))
	byIndex := map[phase0.ValidatorIndex]phase0.BLSPubKey{}
	for pk, idx := range n.indices {
		indices = append(indices, idx)
		byIndex[idx] = pk
	}
	n.mu.Unlock()
	if len(indices) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, n.chain.SlotDuration/2)
	defer cancel()
	first, last := n.chain.FirstSlot(epoch), n.chain.FirstSlot(epoch+1)
	var (
		att  []*attesterDuty
		prop []*proposerDuty
		syn  []*syncDuty
	)
	if !need.haveAtt {
		raw, err := n.beacon.AttesterDuties(fctx, epoch, indices)
		if err != nil {
			n.log.Warn("Attester duties not fetched; retrying next slot", "epoch", epoch, "err", err)
		} else {
			att = filterAttesterDuties(raw, byIndex, first, last, n.log.With("epoch", epoch))
		}
	}
	if !need.haveProp {
		raw, err := n.beacon.ProposerDuties(fctx, epoch, indices)
		if err != nil {
			n.log.Warn("Proposer duties not fetched; retrying next slot", "epoch", epoch, "err", err)
		} else {
			prop = []*proposerDuty{}
			for _, d := range raw {
				// Proposer duties come for every validator of the epoch: keep ours only.
				if pk, ok := byIndex[d.ValidatorIndex]; ok && pk == d.PubKey && d.Slot >= first && d.Slot < last {
					prop = append(prop, &proposerDuty{Pubkey: pk, ProposerDuty: d})
				}
			}
		}
	}
	if !need.haveSync {
		raw, err := n.beacon.SyncCommitteeDuties(fctx, epoch, indices)
		if err != nil {
			n.log.Warn("Sync committee duties not fetched; retrying next slot", "epoch", epoch, "err", err)
		} else {
			syn = []*syncDuty{}
			for _, d := range raw {
				if pk, ok := byIndex[d.ValidatorIndex]; ok && len(d.ValidatorSyncCommitteeIndices) > 0 {
					syn = append(syn, &syncDuty{Pubkey: pk, SyncCommitteeDuty: d})
				}
			}
		}
	}
	n.mu.Lock()
	if n.duties[epoch] == ed { // not dropped by a reorg meanwhile
		if att != nil {
			ed.attester, ed.haveAtt = att, true
		}
		if prop != nil {
			ed.proposer, ed.haveProp = prop, true
		}
		if syn != nil {
			ed.sync, ed.haveSync = syn, true
		}
	}
	n.mu.Unlock()
	n.log.Debug("Duties fetched", "epoch", epoch, "attester", len(att), "proposer", len(prop), "sync", len(syn))
}

// filterAttesterDuties keeps the duties that were asked for and can be performed.
func filterAttesterDuties(raw []*apiv1.AttesterDuty, byIndex map[phase0.ValidatorIndex]phase0.BLSPubKey, first, last phase0.Slot, log *slog.Logger) []*attesterDuty {
	duties := []*attesterDuty{}
	for _, d := range raw {
		pk, ok := byIndex[d.ValidatorIndex]
		if !ok || d.Slot < first || d.Slot >= last {
			log.Warn("Beacon node returned a duty that was not asked for; ignored", "validator_index", d.ValidatorIndex, "slot", d.Slot)
			continue
		}
		// The committee position becomes an aggregation bit: refuse what cannot be one.
		if d.CommitteeIndex >= 64 || d.CommitteeLength == 0 || d.ValidatorCommitteeIndex >= d.CommitteeLength {
			log.Warn("Beacon node returned an impossible committee position; duty ignored", "validator_index", d.ValidatorIndex,
				"committee_index", d.CommitteeIndex, "committee_length", d.CommitteeLength, "validator_committee_index", d.ValidatorCommitteeIndex)
			continue
		}
		duties = append(duties, &attesterDuty{Pubkey: pk, AttesterDuty: d})
	}
	return duties
}

func (n *Node) trimRuns(before phase0.Slot) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.runs {
		if k.Slot < before {
			delete(n.runs, k)
		}
	}
	for k := range n.selections {
		if k.Slot < before {
			delete(n.selections, k)
		}
	}
	for k := range n.started {
		if k.Slot < before {
			delete(n.started, k)
		}
	}
	for slot := range n.reveals {
		if slot < before {
			delete(n.reveals, slot)
		}
	}
}

func (n *Node) currentChain() *Chain {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chain
}

// followHeads feeds the beacon node's head events to the head tracker, and drops the duties a
// reorg made stale, until ctx ends.
func (n *Node) followHeads(ctx context.Context) {
	if err := n.beacon.SubscribeHeads(ctx, n.onHead); err != nil {
		n.log.Warn("No head events: attesting at one third of each slot", "err", err)
	}
	<-ctx.Done()
}

// onHead handles a head event. Attester duties of epoch E are computed from the block before
// E-1 (previous_duty_dependent_root in E), proposer duties of E and attester duties of E+1 from
// the block before E (current_duty_dependent_root): when either changes within an epoch, the
// duties computed from the old block are dropped and fetched again at the next slot.
func (n *Node) onHead(e HeadEvent) {
	n.heads.Seen(e.Slot)
	chain := n.currentChain()
	if chain == nil {
		return
	}
	epoch := chain.EpochOf(e.Slot)
	n.mu.Lock()
	defer n.mu.Unlock()
	old, ok := n.depRoots[epoch]
	n.depRoots[epoch] = [2]phase0.Root{e.PreviousDutyDependentRoot, e.CurrentDutyDependentRoot}
	for ep := range n.depRoots {
		if ep+2 < epoch {
			delete(n.depRoots, ep)
		}
	}
	if !ok {
		return
	}
	var dropped []phase0.Epoch
	if old[0] != e.PreviousDutyDependentRoot {
		delete(n.duties, epoch)
		dropped = append(dropped, epoch)
	}
	if old[1] != e.CurrentDutyDependentRoot {
		delete(n.duties, epoch)
		delete(n.duties, epoch+1)
		dropped = append(dropped, epoch, epoch+1)
	}
	if len(dropped) > 0 {
		n.metrics.reorgs.Inc()
		n.log.Info("Reorg changed the duties' dependent roots: duties dropped and fetched again", "slot", e.Slot, "epochs", dropped)
	}
}
