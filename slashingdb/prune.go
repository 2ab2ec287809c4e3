package slashingdb

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// Prune deletes attestations with target epoch < currentEpoch - keepEpochs and
// blocks with slot < (currentEpoch - keepEpochs) * slotsPerEpoch, except that a
// validator's newest attestation and newest block are always kept. In the same
// transaction, before anything is deleted, each pruned validator's watermarks are
// raised to the highest deleted record (source and target; slot), so everything
// the deleted records refused is still refused: a same or lower target or slot by
// the target or slot watermark, a surrounding vote by the source watermark (the
// stored sources are non-decreasing in target order).
//
// Pruning rewrites the log entries that hold deleted records and reads the whole
// log: call it rarely (say daily), not per duty. slotsPerEpoch 0 prunes no
// blocks. On error nothing changed.
func (db *DB) Prune(keepEpochs uint64, currentEpoch phase0.Epoch, slotsPerEpoch uint64) error {
	cutTarget := uint64(0)
	if uint64(currentEpoch) > keepEpochs {
		cutTarget = uint64(currentEpoch) - keepEpochs
	}
	cutSlot := uint64(math.MaxUint64)
	if hi, lo := bits.Mul64(cutTarget, slotsPerEpoch); hi == 0 {
		cutSlot = lo
	}
	if err := db.lockWrite(); err != nil {
		return fmt.Errorf("slashingdb: prune: %w", err)
	}
	defer db.mu.Unlock()

	type floors struct{ att, block uint64 }
	fl := make([]floors, len(db.byNum))
	var changed []*validator
	for _, v := range db.byNum {
		i := min(findAtt(v.atts, cutTarget), max(len(v.atts)-1, 0))
		j := min(findBlock(v.blocks, cutSlot), max(len(v.blocks)-1, 0))
		if i == 0 && j == 0 {
			continue
		}
		nv := *v
		if i > 0 {
			last := v.atts[i-1]
			nv.wm.source, nv.wm.target = max(nv.wm.source, last.source), max(nv.wm.target, last.target)
			nv.wm.att = true
			nv.atts = slices.Clone(v.atts[i:])
			fl[v.num].att = nv.atts[0].target
		}
		if j > 0 {
			nv.wm.slot, nv.wm.block = max(nv.wm.slot, v.blocks[j-1].slot), true
			nv.blocks = slices.Clone(v.blocks[j:])
			fl[v.num].block = nv.blocks[0].slot
		}
		if err := nv.checkInvariant(); err != nil {
			return fmt.Errorf("slashingdb: prune: invariant violated: %w", err)
		}
		changed = append(changed, &nv)
	}
	if len(changed) == 0 {
		return nil
	}
	keep := func(op logOp) (bool, error) {
		if int(op.num) >= len(fl) {
			return false, fmt.Errorf("log op for unregistered validator number %d: %w", op.num, ErrCorrupt)
		}
		f := fl[op.num]
		switch op.kind {
		case opAtt:
			return op.att.target >= f.att, nil
		case opAttFloor:
			return op.floor > f.att, nil
		case opBlock:
			return op.block.slot >= f.block, nil
		default:
			return op.floor > f.block, nil
		}
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, v := range changed { // watermarks first: never a deletion without them
			if err := saveValidator(tx, v); err != nil {
				return err
			}
		}
		return rewriteLog(tx, keep)
	})
	if err != nil {
		return fmt.Errorf("slashingdb: prune: %w", err)
	}
	for _, v := range changed {
		*db.byNum[v.num] = *v
	}
	return nil
}

// rewriteLog drops the ops for which keep returns false, rewriting or deleting
// the log entries that held them.
func rewriteLog(tx *bolt.Tx, keep func(logOp) (bool, error)) error {
	b := tx.Bucket(bucketLog)
	type update struct {
		key, value []byte // value nil: delete
	}
	var updates []update
	c := b.Cursor()
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		var kept []byte
		dropped := false
		err := decodeOps(0, raw, func(op logOp) error {
			ok, err := keep(op)
			if err != nil {
				return err
			}
			if !ok {
				dropped = true
				return nil
			}
			kept = appendOp(kept, op)
			return nil
		})
		if err != nil {
			return fmt.Errorf("log entry %x: %w", k, err)
		}
		if dropped {
			updates = append(updates, update{slices.Clone(k), kept})
		}
	}
	for _, u := range updates {
		var err error
		if len(u.value) == 0 {
			err = b.Delete(u.key)
		} else {
			err = b.Put(u.key, u.value)
		}
		if err != nil {
			return fmt.Errorf("rewrite log entry %x: %w", u.key, err)
		}
	}
	return nil
}

// appendOp re-encodes a decoded op.
func appendOp(b []byte, op logOp) []byte {
	switch op.kind {
	case opAtt:
		return appendAttOp(b, op.num, op.att)
	case opBlock:
		return appendBlockOp(b, op.num, op.block)
	default:
		return appendFloorOp(b, op.kind, op.num, op.floor)
	}
}
