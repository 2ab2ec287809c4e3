package slashingdb

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// CheckAndRecordAttestations checks every request against the stored history and
// against the requests before it in reqs, and records the allowed ones, all in one
// bbolt write transaction (one fsynced commit, even when nothing new is recorded).
// The result has one Verdict per request, in order; a refusal does not affect the
// other requests, except that of two conflicting requests for one key the first
// wins. The verdicts are returned only after the transaction committed. On error
// nothing was recorded and the caller must treat every request as refused.
//
// Rules, in the order checked (the first that applies gives the Rule):
//   - the key is not registered: RuleUnknownValidator.
//   - source > target: RuleSourceAfterTarget.
//   - A record with the same target exists: allowed (and nothing written) only if
//     its root is known and equal and its source is equal, else RuleDoubleVote.
//   - A stored record surrounds the request (s.source < source, target < s.target):
//     RuleSurrounded; the request surrounds one (source < s.source, s.target <
//     target): RuleSurrounding.
//   - target <= start-up guard epoch: RuleStartupGuard.
//   - source < source watermark: RuleBelowSourceWatermark; target <= target
//     watermark: RuleAtOrBelowTargetWatermark.
//
// Cost: O(log n) per request for a validator with n stored records.
func (db *DB) CheckAndRecordAttestations(reqs []AttestationRequest) ([]Verdict, error) {
	if err := db.lockWrite(); err != nil {
		return nil, fmt.Errorf("slashingdb: check and record attestations: %w", err)
	}
	defer db.mu.Unlock()
	verdicts := make([]Verdict, len(reqs))
	var (
		pending batchAtts
		entry   []byte
	)
	for i, req := range reqs {
		v := db.vals[req.Pubkey]
		if v == nil {
			verdicts[i] = refuseUnknown(req.Pubkey)
			continue
		}
		verdict, record := db.checkAttestation(v, pending.of(v), req)
		if record {
			r := attRec{source: uint64(req.SourceEpoch), target: uint64(req.TargetEpoch), root: req.SigningRoot, known: true}
			pending.add(v, r)
			if entry == nil {
				entry = make([]byte, 0, opAttLen*(len(reqs)-i))
			}
			entry = appendAttOp(entry, v.num, r)
		}
		verdicts[i] = verdict
	}
	if err := db.commitLog(entry); err != nil {
		return nil, fmt.Errorf("slashingdb: check and record attestations: %w", err)
	}
	for _, v := range pending.order {
		for _, r := range pending.byVal[v] {
			v.atts = putAtt(v.atts, r)
		}
	}
	return verdicts, nil
}

// commitLog appends entry (if any) to the log in one fsynced write transaction.
// The transaction commits even when entry is empty, so that every call returns
// after a sync of the database file that started after the call did: a caller
// can order its release after that sync (the crash tests check this).
func (db *DB) commitLog(entry []byte) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		if len(entry) == 0 {
			return nil
		}
		return db.appendLog(tx, entry)
	})
	if err != nil {
		return err
	}
	if len(entry) > 0 {
		db.nextSeq++
	}
	return nil
}

// batchAtts holds the attestations allowed earlier in the current batch: they are
// checked against like stored records but enter the index only after the commit.
type batchAtts struct {
	order []*validator            // validators with pending records, in first-seen order
	byVal map[*validator][]attRec // sorted by target, like validator.atts
}

func (b *batchAtts) add(v *validator, r attRec) {
	if b.byVal == nil {
		b.byVal = map[*validator][]attRec{}
	}
	p, ok := b.byVal[v]
	if !ok {
		b.order = append(b.order, v)
	}
	b.byVal[v] = putAtt(p, r)
}

// of returns v's pending records, sorted by target.
func (b *batchAtts) of(v *validator) []attRec { return b.byVal[v] }

// checkAttestation applies the rules after the registration check to v's stored
// records plus pend (records allowed earlier in the batch). record is true when
// the request is allowed and not yet stored.
func (db *DB) checkAttestation(v *validator, pend []attRec, req AttestationRequest) (verdict Verdict, record bool) {
	source, target := uint64(req.SourceEpoch), uint64(req.TargetEpoch)
	if source > target {
		return refuse(RuleSourceAfterTarget, "source epoch %d > target epoch %d", source, target), false
	}
	// Stored records neighbouring the target; the invariant makes these enough.
	i := findAtt(v.atts, target)
	var same, pred, succ *attRec
	if i < len(v.atts) {
		if v.atts[i].target == target {
			same = &v.atts[i]
			if i+1 < len(v.atts) {
				succ = &v.atts[i+1]
			}
		} else {
			succ = &v.atts[i]
		}
	}
	if i > 0 {
		pred = &v.atts[i-1]
	}
	if len(pend) > 0 { // records allowed earlier in this batch
		j := findAtt(pend, target)
		if j > 0 && (pred == nil || pend[j-1].target > pred.target) {
			pred = &pend[j-1]
		}
		if j < len(pend) && pend[j].target == target {
			same = &pend[j]
			j++
		}
		if j < len(pend) && (succ == nil || pend[j].target < succ.target) {
			succ = &pend[j]
		}
	}
	if same != nil {
		if same.known && same.root == req.SigningRoot && same.source == source {
			return allow(), false
		}
		if !same.known {
			return refuse(RuleDoubleVote, "target epoch %d already signed (signing root unknown)", target), false
		}
		return refuse(RuleDoubleVote, "target epoch %d already signed with source %d, root %#x", target, same.source, same.root[:]), false
	}
	if succ != nil && succ.source < source {
		return refuse(RuleSurrounded, "surrounded by stored attestation source %d target %d", succ.source, succ.target), false
	}
	if pred != nil && pred.source > source {
		return refuse(RuleSurrounding, "surrounds stored attestation source %d target %d", pred.source, pred.target), false
	}
	if g, ok := db.guards[v.pubkey]; ok && target <= g.epoch {
		return refuse(RuleStartupGuard, "target epoch %d <= start-up guard epoch %d", target, g.epoch), false
	}
	if v.wm.att {
		if source < v.wm.source {
			return refuse(RuleBelowSourceWatermark, "source epoch %d < source watermark %d", source, v.wm.source), false
		}
		if target <= v.wm.target {
			return refuse(RuleAtOrBelowTargetWatermark, "target epoch %d <= target watermark %d", target, v.wm.target), false
		}
	}
	return allow(), true
}

// CheckAndRecordBlocks checks every block request and records the allowed ones
// in one bbolt write transaction, with the same batch and error contract as
// CheckAndRecordAttestations.
//
// Rules, in the order checked:
//   - the key is not registered: RuleUnknownValidator.
//   - A record with the same slot exists: allowed (nothing written) only if its
//     root is known and equal, else RuleDoubleBlock.
//   - slot <= start-up guard slot: RuleStartupGuard.
//   - slot <= slot watermark: RuleAtOrBelowSlotWatermark.
func (db *DB) CheckAndRecordBlocks(reqs []BlockRequest) ([]Verdict, error) {
	if err := db.lockWrite(); err != nil {
		return nil, fmt.Errorf("slashingdb: check and record blocks: %w", err)
	}
	defer db.mu.Unlock()
	verdicts := make([]Verdict, len(reqs))
	type pendingBlock struct {
		v *validator
		r blockRec
	}
	var (
		pending []pendingBlock // proposals are rare: a linear scan is fine
		entry   []byte
	)
	for i, req := range reqs {
		v := db.vals[req.Pubkey]
		if v == nil {
			verdicts[i] = refuseUnknown(req.Pubkey)
			continue
		}
		slot := uint64(req.Slot)
		var same *blockRec
		if j := findBlock(v.blocks, slot); j < len(v.blocks) && v.blocks[j].slot == slot {
			same = &v.blocks[j]
		}
		for k := range pending {
			if pending[k].v == v && pending[k].r.slot == slot {
				same = &pending[k].r
			}
		}
		verdict, record := db.checkBlock(v, same, req)
		if record {
			r := blockRec{slot: slot, root: req.SigningRoot, known: true}
			pending = append(pending, pendingBlock{v, r})
			entry = appendBlockOp(entry, v.num, r)
		}
		verdicts[i] = verdict
	}
	if err := db.commitLog(entry); err != nil {
		return nil, fmt.Errorf("slashingdb: check and record blocks: %w", err)
	}
	for _, p := range pending {
		p.v.blocks = putBlock(p.v.blocks, p.r)
	}
	return verdicts, nil
}

func (db *DB) checkBlock(v *validator, same *blockRec, req BlockRequest) (verdict Verdict, record bool) {
	slot := uint64(req.Slot)
	if same != nil {
		if same.known && same.root == req.SigningRoot {
			return allow(), false
		}
		if !same.known {
			return refuse(RuleDoubleBlock, "slot %d already signed (signing root unknown)", slot), false
		}
		return refuse(RuleDoubleBlock, "slot %d already signed with root %#x", slot, same.root[:]), false
	}
	if g, ok := db.guards[v.pubkey]; ok && slot <= g.slot {
		return refuse(RuleStartupGuard, "slot %d <= start-up guard slot %d", slot, g.slot), false
	}
	if v.wm.block && slot <= v.wm.slot {
		return refuse(RuleAtOrBelowSlotWatermark, "slot %d <= slot watermark %d", slot, v.wm.slot), false
	}
	return allow(), true
}
