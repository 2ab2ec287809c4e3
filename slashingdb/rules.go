package slashingdb

import (
	"fmt"
	"math"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// CheckAndRecordAttestations checks every request against the stored history and
// against the requests before it in reqs, and records the allowed ones, all in one
// bbolt write transaction (one fsynced commit). The result has one Verdict per
// request, in order; a refusal does not affect the other requests, except that of
// two conflicting requests for one key the first wins. The verdicts are returned
// only after the transaction committed. On error nothing was recorded and the
// caller must treat every request as refused.
//
// Rules, in the order checked (the first that applies gives the Rule):
//   - source > target: RuleSourceAfterTarget.
//   - A record with the same target exists: allowed (and nothing written) only if
//     its root is known and equal and its source is equal, else RuleDoubleVote.
//   - A stored record surrounds the request (s.source < source, target < s.target):
//     RuleSurrounded; the request surrounds one (source < s.source, s.target <
//     target): RuleSurrounding.
//   - target <= start-up guard epoch: RuleStartupGuard.
//   - source < lowest imported source: RuleBelowSourceWatermark; target <= lowest
//     imported target: RuleAtOrBelowTargetWatermark.
func (db *DB) CheckAndRecordAttestations(reqs []AttestationRequest) ([]Verdict, error) {
	verdicts := make([]Verdict, len(reqs))
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		cache := make(map[phase0.BLSPubKey]*validator)
		for i, req := range reqs {
			if req.SourceEpoch > req.TargetEpoch {
				verdicts[i] = refuse(RuleSourceAfterTarget, "source epoch %d > target epoch %d", req.SourceEpoch, req.TargetEpoch)
				continue
			}
			v, err := cachedValidator(tx, cache, req.Pubkey)
			if err != nil {
				return err
			}
			verdict, record, err := checkAttestation(v, req)
			if err != nil {
				return fmt.Errorf("validator %#x: %w", req.Pubkey[:], err)
			}
			if record {
				r := attRecord{minSource: uint64(req.SourceEpoch), maxSource: uint64(req.SourceEpoch), root: req.SigningRoot, known: true}
				if err := v.putAtt(uint64(req.TargetEpoch), r); err != nil {
					return fmt.Errorf("validator %#x: %w", req.Pubkey[:], err)
				}
			}
			verdicts[i] = verdict
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("slashingdb: check and record attestations: %w", err)
	}
	return verdicts, nil
}

// checkAttestation applies the rules after the source > target check. record is
// true when the request is allowed and not yet stored.
func checkAttestation(v *validator, req AttestationRequest) (verdict Verdict, record bool, err error) {
	source, target := uint64(req.SourceEpoch), uint64(req.TargetEpoch)
	prev, found, err := v.getAtt(target)
	if err != nil {
		return Verdict{}, false, err
	}
	if found {
		if prev.known && prev.root == req.SigningRoot && prev.minSource == source && prev.maxSource == source {
			return allow(), false, nil
		}
		if !prev.known {
			return refuse(RuleDoubleVote, "target epoch %d already signed (signing root unknown)", target), false, nil
		}
		return refuse(RuleDoubleVote, "target epoch %d already signed with source %d, root %#x", target, prev.minSource, prev.root[:]), false, nil
	}

	// A stored record surrounds the request: s.target > target and s.source < source.
	// Scan every target above the request's (usually none: the newest is signed last).
	var refusal *Verdict
	if target < math.MaxUint64 {
		err := v.scanAtts(target+1, func(t uint64, r attRecord) (bool, error) {
			if r.minSource < source {
				refusal = ptrTo(refuse(RuleSurrounded, "surrounded by stored attestation source %d target %d", r.minSource, t))
				return false, nil
			}
			return true, nil
		})
		if err != nil || refusal != nil {
			return deref(refusal), false, err
		}
	}
	// The request surrounds a stored record: source < s.source and s.target < target.
	// For records with s.source <= s.target that means s.target in (source, target);
	// imported records with s.source > s.target can lie lower, so scan from 0 then.
	start := source + 1
	if v.wm.flags&wmInverted != 0 {
		start = 0
	}
	err = v.scanAtts(start, func(t uint64, r attRecord) (bool, error) {
		if t >= target {
			return false, nil
		}
		if r.maxSource > source {
			refusal = ptrTo(refuse(RuleSurrounding, "surrounds stored attestation source %d target %d", r.maxSource, t))
			return false, nil
		}
		return true, nil
	})
	if err != nil || refusal != nil {
		return deref(refusal), false, err
	}

	wm := v.wm
	if wm.flags&wmGuardEp != 0 && target <= wm.guardEpoch {
		return refuse(RuleStartupGuard, "target epoch %d <= start-up guard epoch %d", target, wm.guardEpoch), false, nil
	}
	if wm.flags&wmAtt != 0 {
		if source < wm.minSource {
			return refuse(RuleBelowSourceWatermark, "source epoch %d < lowest imported source %d", source, wm.minSource), false, nil
		}
		if target <= wm.minTarget {
			return refuse(RuleAtOrBelowTargetWatermark, "target epoch %d <= lowest imported target %d", target, wm.minTarget), false, nil
		}
	}
	return allow(), true, nil
}

// CheckAndRecordBlocks checks every block request and records the allowed ones
// in one bbolt write transaction, with the same batch and error contract as
// CheckAndRecordAttestations.
//
// Rules, in the order checked:
//   - A record with the same slot exists: allowed (nothing written) only if its
//     root is known and equal, else RuleDoubleBlock.
//   - slot <= start-up guard slot: RuleStartupGuard.
//   - slot <= lowest imported slot: RuleAtOrBelowSlotWatermark.
func (db *DB) CheckAndRecordBlocks(reqs []BlockRequest) ([]Verdict, error) {
	verdicts := make([]Verdict, len(reqs))
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		cache := make(map[phase0.BLSPubKey]*validator)
		for i, req := range reqs {
			v, err := cachedValidator(tx, cache, req.Pubkey)
			if err != nil {
				return err
			}
			verdict, record, err := checkBlock(v, req)
			if err != nil {
				return fmt.Errorf("validator %#x: %w", req.Pubkey[:], err)
			}
			if record {
				if err := v.putBlock(uint64(req.Slot), blockRecord{root: req.SigningRoot, known: true}); err != nil {
					return fmt.Errorf("validator %#x: %w", req.Pubkey[:], err)
				}
			}
			verdicts[i] = verdict
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("slashingdb: check and record blocks: %w", err)
	}
	return verdicts, nil
}

func checkBlock(v *validator, req BlockRequest) (verdict Verdict, record bool, err error) {
	slot := uint64(req.Slot)
	prev, found, err := v.getBlock(slot)
	if err != nil {
		return Verdict{}, false, err
	}
	if found {
		if prev.known && prev.root == req.SigningRoot {
			return allow(), false, nil
		}
		if !prev.known {
			return refuse(RuleDoubleBlock, "slot %d already signed (signing root unknown)", slot), false, nil
		}
		return refuse(RuleDoubleBlock, "slot %d already signed with root %#x", slot, prev.root[:]), false, nil
	}
	wm := v.wm
	if wm.flags&wmGuardSlot != 0 && slot <= wm.guardSlot {
		return refuse(RuleStartupGuard, "slot %d <= start-up guard slot %d", slot, wm.guardSlot), false, nil
	}
	if wm.flags&wmBlock != 0 && slot <= wm.minSlot {
		return refuse(RuleAtOrBelowSlotWatermark, "slot %d <= lowest imported slot %d", slot, wm.minSlot), false, nil
	}
	return allow(), true, nil
}

func ptrTo(v Verdict) *Verdict { return &v }

func deref(v *Verdict) Verdict {
	if v == nil {
		return Verdict{}
	}
	return *v
}

func cachedValidator(tx *bolt.Tx, cache map[phase0.BLSPubKey]*validator, pubkey phase0.BLSPubKey) (*validator, error) {
	if v, ok := cache[pubkey]; ok {
		return v, nil
	}
	v, err := openValidator(tx, pubkey, true)
	if err != nil {
		return nil, err
	}
	cache[pubkey] = v
	return v, nil
}

// RaiseStartupGuard persistently raises the start-up guard of each key so that
// afterwards no attestation with target epoch <= epoch and no block with slot <=
// slot is signed (RuleStartupGuard), except an identical re-sign of a record
// already stored. The guard never goes down: a lower value than the stored one
// is ignored. Call it at start-up (and after restoring a backup) with the current
// epoch and slot from the wall clock, so that history lost since the backup cannot
// lead to a slashable signature. All keys are updated in one transaction.
func (db *DB) RaiseStartupGuard(pubkeys []phase0.BLSPubKey, epoch phase0.Epoch, slot phase0.Slot) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, pk := range pubkeys {
			v, err := openValidator(tx, pk, true)
			if err != nil {
				return err
			}
			v.wm.raiseGuard(uint64(epoch), uint64(slot))
			if err := v.saveWatermarks(); err != nil {
				return fmt.Errorf("validator %#x: %w", pk[:], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("slashingdb: raise start-up guard: %w", err)
	}
	return nil
}
