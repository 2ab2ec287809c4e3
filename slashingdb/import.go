package slashingdb

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// imported is the content of an interchange for one key, all its data entries merged.
type imported struct {
	atts   []attRec
	blocks []blockRec
}

// ImportInterchange reads an EIP-3076 interchange document (format version "5")
// and merges it into the database in one transaction: either everything is
// imported or, on any error, nothing. The document's genesis validators root must
// equal the database's (ErrGenesisMismatch); malformed content fails with
// ErrBadInterchange. The input is treated as untrusted. Every key in the document
// is registered, even one without records; data entries with the same key are
// merged.
//
// Per key, attestations and blocks are imported separately:
//   - If the imported records together with the stored ones are not slashable
//     (same target only with the same source; sources non-decreasing in target
//     order; source <= target; same slot only with equal or unknown roots) and lie
//     at or above the existing watermarks, they are stored as they are. Records
//     for one target or slot whose roots are not the same known root are stored
//     once with an unknown root, which matches no later request. A key without
//     watermarks gets them from its lowest imported records (lowest source and
//     target, lowest slot); stored records below them are dropped.
//   - Otherwise the history is minified as EIP-3076 recommends: it is replaced by
//     one record with the highest source and highest target (highest slot) of
//     the stored and imported records, with an unknown root, and the watermarks
//     are raised to it. Only the offending key's attestations (or blocks) are
//     minified.
//
// An import never lowers a watermark and never makes a stored record match more
// requests. The never-slashable invariant (checkInvariant) is asserted for every
// touched key before the commit; a violation fails the import.
func (db *DB) ImportInterchange(r io.Reader) error {
	keys, data, err := parseInterchange(r, db.gvr)
	if err != nil {
		return fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	return db.importParsed(keys, data)
}

// ImportFile imports the interchange read from r into the database file at path
// (see ImportInterchange), and returns the number of validators in it. The file
// is bound to the interchange's genesis validators root: it is created with that
// root if it does not exist, and an existing file must have it
// (ErrGenesisMismatch). The file must not be open elsewhere (ErrLocked).
func ImportFile(path string, r io.Reader) (int, error) {
	doc, err := decodeInterchange(r)
	if err != nil {
		return 0, fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	gvr, err := parseHex32(doc.Metadata.GVR)
	if err != nil {
		return 0, fmt.Errorf("slashingdb: import interchange: genesis_validators_root: %w", err)
	}
	keys, data, err := parseDoc(doc, gvr)
	if err != nil {
		return 0, fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	db, err := Open(path, gvr)
	if err != nil {
		return 0, err
	}
	if err := db.importParsed(keys, data); err != nil {
		_ = db.Close()
		return 0, err
	}
	return len(keys), db.Close()
}

// importParsed merges parsed interchange data; see ImportInterchange.
func (db *DB) importParsed(keys []phase0.BLSPubKey, data map[phase0.BLSPubKey]*imported) error {
	if err := db.lockWrite(); err != nil {
		return fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	defer db.mu.Unlock()
	var (
		entry   []byte
		changed []*validator
		added   []*validator
	)
	for _, pk := range keys {
		cur := db.vals[pk]
		var nv *validator
		if cur == nil {
			nv = &validator{pubkey: pk, num: uint32(len(db.byNum) + len(added))}
			added = append(added, nv)
		} else {
			nv = cur.clone()
		}
		start := len(entry)
		entry = importAtts(nv, data[pk].atts, entry)
		entry = importBlocks(nv, data[pk].blocks, entry)
		if err := nv.checkInvariant(); err != nil {
			return fmt.Errorf("slashingdb: import interchange: invariant violated after merge: %w", err)
		}
		if err := verifyOps(cur, nv, entry[start:]); err != nil {
			return fmt.Errorf("slashingdb: import interchange: %w", err)
		}
		changed = append(changed, nv)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, v := range changed {
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
		return fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	if len(entry) > 0 {
		db.nextSeq++
	}
	for _, v := range changed {
		if int(v.num) < len(db.byNum) {
			*db.byNum[v.num] = *v
		}
	}
	db.addValidators(added)
	return nil
}

// verifyOps asserts that replaying ops on the stored state cur (nil for a new
// key) gives nv: the log and the index must never disagree.
func verifyOps(cur, nv *validator, ops []byte) error {
	replay := &validator{pubkey: nv.pubkey, num: nv.num}
	if cur != nil {
		replay = cur.clone()
	}
	err := decodeOps(0, ops, func(op logOp) error {
		if op.num != nv.num {
			return fmt.Errorf("op for validator %d in the ops of %d: %w", op.num, nv.num, ErrCorrupt)
		}
		replay.apply(op)
		return nil
	})
	if err != nil {
		return err
	}
	if !slices.Equal(replay.atts, nv.atts) || !slices.Equal(replay.blocks, nv.blocks) {
		return fmt.Errorf("validator %#x: log ops do not reproduce the merged history: %w", nv.pubkey[:], ErrCorrupt)
	}
	return nil
}

// importAtts merges imp into v.atts and v.wm (see ImportInterchange) and appends
// the log ops that turn the old records into the new ones.
func importAtts(v *validator, imp []attRec, entry []byte) []byte {
	if len(imp) == 0 {
		return entry
	}
	old := v.atts
	merged, ok := mergeAtts(old, imp, v.wm)
	if ok {
		if !v.wm.att {
			v.wm.att = true
			v.wm.source, v.wm.target = imp[0].source, imp[0].target
			for _, r := range imp {
				v.wm.source, v.wm.target = min(v.wm.source, r.source), min(v.wm.target, r.target)
			}
			merged = merged[findAtt(merged, v.wm.target):] // below the watermarks: redundant
		}
	} else {
		top := attRec{}
		if v.wm.att {
			top.source, top.target = v.wm.source, v.wm.target
		}
		for _, r := range slices.Concat(old, imp) {
			top.source, top.target = max(top.source, r.source), max(top.target, r.target)
		}
		top.target = max(top.target, top.source) // an inverted record must not stay inverted
		merged = []attRec{top}
		v.wm.att, v.wm.source, v.wm.target = true, top.source, top.target
	}
	v.atts = merged
	if len(old) > 0 && old[0].target < merged[0].target {
		entry = appendFloorOp(entry, opAttFloor, v.num, merged[0].target)
	}
	for _, r := range merged {
		if i := findAtt(old, r.target); i < len(old) && old[i] == r {
			continue
		}
		entry = appendAttOp(entry, v.num, r)
	}
	return entry
}

// mergeAtts returns old and imp merged, and whether the result is never
// slashable and imp lies at or above wm.
func mergeAtts(old, imp []attRec, wm watermarks) ([]attRec, bool) {
	merged := slices.Clone(old)
	imp = slices.Clone(imp)
	slices.SortStableFunc(imp, func(a, b attRec) int { return cmp.Compare(a.target, b.target) })
	for _, r := range imp {
		if r.source > r.target || (wm.att && (r.source < wm.source || r.target < wm.target)) {
			return nil, false
		}
		i := findAtt(merged, r.target)
		if i < len(merged) && merged[i].target == r.target {
			p := &merged[i]
			if p.source != r.source {
				return nil, false
			}
			if !p.known || !r.known || p.root != r.root {
				p.known, p.root = false, phase0.Root{}
			}
			continue
		}
		merged = slices.Insert(merged, i, r)
	}
	for i := 1; i < len(merged); i++ {
		if merged[i-1].source > merged[i].source {
			return nil, false
		}
	}
	return merged, true
}

// importBlocks is importAtts for blocks.
func importBlocks(v *validator, imp []blockRec, entry []byte) []byte {
	if len(imp) == 0 {
		return entry
	}
	old := v.blocks
	merged, ok := mergeBlocks(old, imp, v.wm)
	if ok {
		if !v.wm.block {
			v.wm.block, v.wm.slot = true, imp[0].slot
			for _, r := range imp {
				v.wm.slot = min(v.wm.slot, r.slot)
			}
			merged = merged[findBlock(merged, v.wm.slot):]
		}
	} else {
		top := blockRec{}
		if v.wm.block {
			top.slot = v.wm.slot
		}
		for _, r := range slices.Concat(old, imp) {
			top.slot = max(top.slot, r.slot)
		}
		merged = []blockRec{top}
		v.wm.block, v.wm.slot = true, top.slot
	}
	v.blocks = merged
	if len(old) > 0 && old[0].slot < merged[0].slot {
		entry = appendFloorOp(entry, opBlockFloor, v.num, merged[0].slot)
	}
	for _, r := range merged {
		if i := findBlock(old, r.slot); i < len(old) && old[i] == r {
			continue
		}
		entry = appendBlockOp(entry, v.num, r)
	}
	return entry
}

// mergeBlocks returns old and imp merged, and whether no two known roots differ
// at one slot and imp lies at or above wm.
func mergeBlocks(old, imp []blockRec, wm watermarks) ([]blockRec, bool) {
	merged := slices.Clone(old)
	imp = slices.Clone(imp)
	slices.SortStableFunc(imp, func(a, b blockRec) int { return cmp.Compare(a.slot, b.slot) })
	for _, r := range imp {
		if wm.block && r.slot < wm.slot {
			return nil, false
		}
		i := findBlock(merged, r.slot)
		if i < len(merged) && merged[i].slot == r.slot {
			p := &merged[i]
			if p.known && r.known && p.root != r.root {
				return nil, false
			}
			if !p.known || !r.known {
				p.known, p.root = false, phase0.Root{}
			}
			continue
		}
		merged = slices.Insert(merged, i, r)
	}
	return merged, true
}
