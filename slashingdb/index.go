package slashingdb

import (
	"fmt"
	"sort"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// attRec is one stored attestation.
type attRec struct {
	source, target uint64
	root           phase0.Root
	known          bool // root is known; a record with an unknown root matches nothing
}

// blockRec is one stored block proposal.
type blockRec struct {
	slot  uint64
	root  phase0.Root
	known bool
}

// watermarks are a validator's low watermarks: nothing is signed with source <
// source, target <= target or slot <= slot. They are set by imports and raised
// by minification and pruning; they never go down.
type watermarks struct {
	att, block     bool // the attestation / block watermark is set
	source, target uint64
	slot           uint64
}

// guard is a validator's in-memory start-up guard.
type guard struct {
	epoch, slot uint64
}

// validator is the in-memory index of one validator. atts is sorted by strictly
// increasing target and blocks by strictly increasing slot; see checkInvariant.
type validator struct {
	pubkey phase0.BLSPubKey
	num    uint32
	wm     watermarks
	atts   []attRec
	blocks []blockRec
}

// findAtt returns the index of the first record with target >= t.
func findAtt(atts []attRec, t uint64) int {
	return sort.Search(len(atts), func(i int) bool { return atts[i].target >= t })
}

// findBlock returns the index of the first record with slot >= s.
func findBlock(blocks []blockRec, s uint64) int {
	return sort.Search(len(blocks), func(i int) bool { return blocks[i].slot >= s })
}

// putAtt stores r, replacing a record with the same target.
func putAtt(atts []attRec, r attRec) []attRec {
	if n := len(atts); n == 0 || atts[n-1].target < r.target { // the usual case: newest last
		return append(atts, r)
	}
	i := findAtt(atts, r.target)
	if i < len(atts) && atts[i].target == r.target {
		atts[i] = r
		return atts
	}
	atts = append(atts, attRec{})
	copy(atts[i+1:], atts[i:])
	atts[i] = r
	return atts
}

// putBlock stores r, replacing a record with the same slot.
func putBlock(blocks []blockRec, r blockRec) []blockRec {
	if n := len(blocks); n == 0 || blocks[n-1].slot < r.slot {
		return append(blocks, r)
	}
	i := findBlock(blocks, r.slot)
	if i < len(blocks) && blocks[i].slot == r.slot {
		blocks[i] = r
		return blocks
	}
	blocks = append(blocks, blockRec{})
	copy(blocks[i+1:], blocks[i:])
	blocks[i] = r
	return blocks
}

// checkInvariant verifies that v's stored history is never slashable and that
// every record lies at or above the watermarks:
//   - attestations are ordered by strictly increasing target, their sources are
//     non-decreasing and every source <= its target. Then no two records form a
//     double vote or a surround, and for a new (s, t) the only stored record that
//     can surround it is the next one above t, and the only one it can surround
//     is the previous one below t: checks are two binary searches.
//   - blocks are ordered by strictly increasing slot.
//   - with a watermark set, every record has source >= wm.source and target >=
//     wm.target (slot >= wm.slot), so an export, whose importer derives its
//     watermarks from the lowest records, is at least as strict as this database.
func (v *validator) checkInvariant() error {
	for i, r := range v.atts {
		if r.source > r.target {
			return fmt.Errorf("validator %#x: attestation source %d > target %d: %w", v.pubkey[:], r.source, r.target, ErrCorrupt)
		}
		if i > 0 {
			p := v.atts[i-1]
			if p.target >= r.target || p.source > r.source {
				return fmt.Errorf("validator %#x: attestations (%d,%d) and (%d,%d) out of order or slashable: %w",
					v.pubkey[:], p.source, p.target, r.source, r.target, ErrCorrupt)
			}
		}
		if v.wm.att && (r.source < v.wm.source || r.target < v.wm.target) {
			return fmt.Errorf("validator %#x: attestation (%d,%d) below watermarks (%d,%d): %w",
				v.pubkey[:], r.source, r.target, v.wm.source, v.wm.target, ErrCorrupt)
		}
	}
	for i, b := range v.blocks {
		if i > 0 && v.blocks[i-1].slot >= b.slot {
			return fmt.Errorf("validator %#x: blocks out of order at slot %d: %w", v.pubkey[:], b.slot, ErrCorrupt)
		}
		if v.wm.block && b.slot < v.wm.slot {
			return fmt.Errorf("validator %#x: block slot %d below watermark %d: %w", v.pubkey[:], b.slot, v.wm.slot, ErrCorrupt)
		}
	}
	return nil
}

// clone returns a deep copy of v, for building a new state that replaces v only
// after a commit.
func (v *validator) clone() *validator {
	c := *v
	c.atts = append([]attRec(nil), v.atts...)
	c.blocks = append([]blockRec(nil), v.blocks...)
	return &c
}
