package slashingdb

import (
	"fmt"
	"slices"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// RaiseWatermarks persists what RaiseStartupGuard keeps in memory: for every known validator,
// no attestation with target epoch <= epoch and no block with slot <= slot is signed any more
// (RuleAtOrBelowTargetWatermark, RuleAtOrBelowSlotWatermark). It is for imports: history that
// was imported from a validator client that has just stopped may lack its newest signatures, and
// the wall clock bounds them.
//
// Records below the new watermarks are dropped in the same transaction, and the source
// watermark is raised to the highest source among the dropped attestations, so that everything
// they refused is still refused (as Prune does); records at or above stay. Watermarks never go
// down: a lower value than the current one changes nothing. On error nothing changed.
func (db *DB) RaiseWatermarks(epoch phase0.Epoch, slot phase0.Slot) error {
	if err := db.lockWrite(); err != nil {
		return fmt.Errorf("slashingdb: raise watermarks: %w", err)
	}
	defer db.mu.Unlock()
	var (
		entry   []byte
		changed []*validator
	)
	for _, v := range db.byNum {
		nv := v.clone()
		start := len(entry)
		entry = raiseAtt(nv, uint64(epoch), entry)
		entry = raiseBlock(nv, uint64(slot), entry)
		if nv.wm == v.wm && len(entry) == start {
			continue
		}
		if err := nv.checkInvariant(); err != nil {
			return fmt.Errorf("slashingdb: raise watermarks: invariant violated: %w", err)
		}
		if err := verifyOps(v, nv, entry[start:]); err != nil {
			return fmt.Errorf("slashingdb: raise watermarks: %w", err)
		}
		changed = append(changed, nv)
	}
	if len(changed) == 0 {
		return nil
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, v := range changed { // watermarks first: never a deletion without them
			if err := saveValidator(tx, v); err != nil {
				return err
			}
		}
		if len(entry) == 0 {
			return nil
		}
		return db.appendLog(tx, entry)
	})
	if err != nil {
		return fmt.Errorf("slashingdb: raise watermarks: %w", err)
	}
	if len(entry) > 0 {
		db.nextSeq++
	}
	for _, v := range changed {
		*db.byNum[v.num] = *v
	}
	return nil
}

// raiseAtt raises v's attestation watermarks to target, dropping the records below it.
func raiseAtt(v *validator, target uint64, entry []byte) []byte {
	if v.wm.att && v.wm.target >= target {
		return entry
	}
	if i := findAtt(v.atts, target); i > 0 {
		// Sources are non-decreasing in target order: the last dropped record has the highest.
		v.wm.source = max(v.wm.source, v.atts[i-1].source)
		v.atts = slices.Clone(v.atts[i:])
		entry = appendFloorOp(entry, opAttFloor, v.num, target)
	}
	v.wm.att, v.wm.target = true, max(v.wm.target, target)
	return entry
}

// raiseBlock raises v's slot watermark to slot, dropping the blocks below it.
func raiseBlock(v *validator, slot uint64, entry []byte) []byte {
	if v.wm.block && v.wm.slot >= slot {
		return entry
	}
	if j := findBlock(v.blocks, slot); j > 0 {
		v.blocks = slices.Clone(v.blocks[j:])
		entry = appendFloorOp(entry, opBlockFloor, v.num, slot)
	}
	v.wm.block, v.wm.slot = true, max(v.wm.slot, slot)
	return entry
}
