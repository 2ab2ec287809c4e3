package slashingdb

import (
	"encoding/binary"
	"fmt"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// Storage layout (schema version 1):
//
//	"meta"                      bucket
//	    "version"               1 byte: schemaVersion
//	    "gvr"                   32 bytes: genesis validators root
//	"validators"                bucket
//	    <pubkey, 48 bytes>      bucket, one per validator
//	        "w"                 watermarks (see watermarks.encode)
//	        "a" | target BE 8   attestation: source BE 8 | root 32 | known 1 [| max source BE 8]
//	        "b" | slot BE 8     block: root 32 | known 1
//
// Keys are big-endian so cursor order is numeric order. One record per target
// epoch (or slot): when an import brings several records for one target they are
// merged into one that keeps the lowest and highest source and an unknown root,
// which refuses exactly what the separate records would refuse.
// Attestations, blocks and watermarks share the validator's bucket (no nested
// buckets), so recording one attestation dirties one B-tree path per validator:
// its leaf page and, once the history outgrows a page, its branch pages.

const schemaVersion = 1

var (
	bucketMeta       = []byte("meta")
	bucketValidators = []byte("validators")
	keyVersion       = []byte("version")
	keyGVR           = []byte("gvr")
	keyWatermarks    = []byte("w")
)

// Key prefixes inside a validator bucket.
const (
	prefixAtt   = 'a'
	prefixBlock = 'b'
)

func initSchema(tx *bolt.Tx, gvr phase0.Root) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create meta bucket: %w", err)
	}
	if _, err := tx.CreateBucketIfNotExists(bucketValidators); err != nil {
		return fmt.Errorf("create validators bucket: %w", err)
	}
	if v := meta.Get(keyVersion); v != nil {
		if len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("schema version %x, want %d: %w", v, schemaVersion, ErrCorrupt)
		}
	} else if err := meta.Put(keyVersion, []byte{schemaVersion}); err != nil {
		return fmt.Errorf("store schema version: %w", err)
	}
	if stored := meta.Get(keyGVR); stored != nil {
		return checkGVR(stored, gvr)
	}
	if err := meta.Put(keyGVR, gvr[:]); err != nil {
		return fmt.Errorf("store genesis validators root: %w", err)
	}
	return nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// attRecord is one stored attestation (or several merged ones) for a target.
type attRecord struct {
	minSource uint64 // lowest source recorded for this target
	maxSource uint64 // highest source recorded for this target (== minSource unless merged)
	root      phase0.Root
	known     bool // root is known; a record with an unknown root matches nothing
}

func (r attRecord) encode() []byte {
	n := 41
	if r.maxSource != r.minSource {
		n = 49
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:8], r.minSource)
	copy(b[8:40], r.root[:])
	if r.known {
		b[40] = 1
	}
	if n == 49 {
		binary.BigEndian.PutUint64(b[41:49], r.maxSource)
	}
	return b
}

func decodeAtt(target uint64, v []byte) (attRecord, error) {
	var r attRecord
	if (len(v) != 41 && len(v) != 49) || v[40] > 1 {
		return r, fmt.Errorf("attestation record target %d=%x: %w", target, v, ErrCorrupt)
	}
	r.minSource = binary.BigEndian.Uint64(v[0:8])
	r.maxSource = r.minSource
	copy(r.root[:], v[8:40])
	r.known = v[40] == 1
	if len(v) == 49 {
		r.maxSource = binary.BigEndian.Uint64(v[41:49])
		if r.maxSource < r.minSource || r.known {
			return r, fmt.Errorf("attestation record target %d=%x: %w", target, v, ErrCorrupt)
		}
	}
	return r, nil
}

// mergeAtt combines two records for the same target. The result keeps a known
// root only when both are the same known root with the same single source.
func mergeAtt(a, b attRecord) attRecord {
	if a.known && b.known && a.root == b.root && a.minSource == b.minSource &&
		a.maxSource == a.minSource && b.maxSource == b.minSource {
		return a
	}
	return attRecord{minSource: min(a.minSource, b.minSource), maxSource: max(a.maxSource, b.maxSource)}
}

// blockRecord is one stored block (or several merged ones) for a slot.
type blockRecord struct {
	root  phase0.Root
	known bool
}

func (r blockRecord) encode() []byte {
	b := make([]byte, 33)
	copy(b[:32], r.root[:])
	if r.known {
		b[32] = 1
	}
	return b
}

func decodeBlock(slot uint64, v []byte) (blockRecord, error) {
	var r blockRecord
	if len(v) != 33 || v[32] > 1 {
		return r, fmt.Errorf("block record slot %d=%x: %w", slot, v, ErrCorrupt)
	}
	copy(r.root[:], v[:32])
	r.known = v[32] == 1
	return r, nil
}

func mergeBlock(a, b blockRecord) blockRecord {
	if a.known && b.known && a.root == b.root {
		return a
	}
	return blockRecord{}
}

// Watermark flags.
const (
	wmAtt       = 1 << iota // minSource/minTarget are set (attestations were imported)
	wmBlock                 // minSlot is set (blocks were imported)
	wmGuardEp               // guardEpoch is set
	wmGuardSlot             // guardSlot is set
	wmInverted              // an imported attestation with source > target is stored
	wmAllFlags  = wmAtt | wmBlock | wmGuardEp | wmGuardSlot | wmInverted
)

// watermarks are a validator's low watermarks: the lowest imported source, target
// and slot, and the start-up guard.
type watermarks struct {
	flags      byte
	minSource  uint64
	minTarget  uint64
	minSlot    uint64
	guardEpoch uint64
	guardSlot  uint64
}

const wmLen = 1 + 5*8

func (w watermarks) encode() []byte {
	b := make([]byte, wmLen)
	b[0] = w.flags
	for i, v := range []uint64{w.minSource, w.minTarget, w.minSlot, w.guardEpoch, w.guardSlot} {
		binary.BigEndian.PutUint64(b[1+8*i:], v)
	}
	return b
}

func decodeWatermarks(v []byte) (watermarks, error) {
	var w watermarks
	if v == nil {
		return w, nil
	}
	if len(v) != wmLen || v[0]&^wmAllFlags != 0 {
		return w, fmt.Errorf("watermarks %x: %w", v, ErrCorrupt)
	}
	w.flags = v[0]
	w.minSource = binary.BigEndian.Uint64(v[1:])
	w.minTarget = binary.BigEndian.Uint64(v[9:])
	w.minSlot = binary.BigEndian.Uint64(v[17:])
	w.guardEpoch = binary.BigEndian.Uint64(v[25:])
	w.guardSlot = binary.BigEndian.Uint64(v[33:])
	return w, nil
}

func (w *watermarks) noteImportedAtt(source, target uint64) {
	if w.flags&wmAtt == 0 {
		w.minSource, w.minTarget = source, target
		w.flags |= wmAtt
	} else {
		w.minSource = min(w.minSource, source)
		w.minTarget = min(w.minTarget, target)
	}
	if source > target {
		w.flags |= wmInverted
	}
}

func (w *watermarks) noteImportedBlock(slot uint64) {
	if w.flags&wmBlock == 0 {
		w.minSlot = slot
		w.flags |= wmBlock
	} else {
		w.minSlot = min(w.minSlot, slot)
	}
}

func (w *watermarks) raiseGuard(epoch, slot uint64) {
	if w.flags&wmGuardEp == 0 || epoch > w.guardEpoch {
		w.guardEpoch = epoch
	}
	if w.flags&wmGuardSlot == 0 || slot > w.guardSlot {
		w.guardSlot = slot
	}
	w.flags |= wmGuardEp | wmGuardSlot
}

// validator is a validator's bucket inside one transaction.
type validator struct {
	b  *bolt.Bucket
	wm watermarks
}

// openValidator returns the validator's bucket, creating it if create is set;
// without create it returns (nil, nil) for an unknown validator.
func openValidator(tx *bolt.Tx, pubkey phase0.BLSPubKey, create bool) (*validator, error) {
	vals := tx.Bucket(bucketValidators)
	if vals == nil {
		return nil, fmt.Errorf("validators bucket missing: %w", ErrCorrupt)
	}
	b := vals.Bucket(pubkey[:])
	if b == nil {
		if !create {
			return nil, nil
		}
		var err error
		if b, err = vals.CreateBucket(pubkey[:]); err != nil {
			return nil, fmt.Errorf("create bucket for %#x: %w", pubkey[:], err)
		}
	}
	return loadValidator(b, pubkey[:])
}

func loadValidator(b *bolt.Bucket, pubkey []byte) (*validator, error) {
	wm, err := decodeWatermarks(b.Get(keyWatermarks))
	if err != nil {
		return nil, fmt.Errorf("validator %#x: %w", pubkey, err)
	}
	return &validator{b: b, wm: wm}, nil
}

func (v *validator) saveWatermarks() error {
	if err := v.b.Put(keyWatermarks, v.wm.encode()); err != nil {
		return fmt.Errorf("store watermarks: %w", err)
	}
	return nil
}

func recordKey(prefix byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

// getAtt returns the record for target, if any.
func (v *validator) getAtt(target uint64) (attRecord, bool, error) {
	raw := v.b.Get(recordKey(prefixAtt, target))
	if raw == nil {
		return attRecord{}, false, nil
	}
	r, err := decodeAtt(target, raw)
	return r, err == nil, err
}

func (v *validator) putAtt(target uint64, r attRecord) error {
	if err := v.b.Put(recordKey(prefixAtt, target), r.encode()); err != nil {
		return fmt.Errorf("store attestation target %d: %w", target, err)
	}
	return nil
}

// scanAtts calls fn for the attestation records with target >= from, in target
// order, until fn returns false or an error.
func (v *validator) scanAtts(from uint64, fn func(target uint64, r attRecord) (bool, error)) error {
	c := v.b.Cursor()
	for k, raw := c.Seek(recordKey(prefixAtt, from)); k != nil && k[0] == prefixAtt; k, raw = c.Next() {
		if len(k) != 9 {
			return fmt.Errorf("attestation key %x: %w", k, ErrCorrupt)
		}
		target := binary.BigEndian.Uint64(k[1:])
		r, err := decodeAtt(target, raw)
		if err != nil {
			return err
		}
		if more, err := fn(target, r); err != nil || !more {
			return err
		}
	}
	return nil
}

func (v *validator) getBlock(slot uint64) (blockRecord, bool, error) {
	raw := v.b.Get(recordKey(prefixBlock, slot))
	if raw == nil {
		return blockRecord{}, false, nil
	}
	r, err := decodeBlock(slot, raw)
	return r, err == nil, err
}

func (v *validator) putBlock(slot uint64, r blockRecord) error {
	if err := v.b.Put(recordKey(prefixBlock, slot), r.encode()); err != nil {
		return fmt.Errorf("store block slot %d: %w", slot, err)
	}
	return nil
}

// scanBlocks calls fn for every block record in slot order.
func (v *validator) scanBlocks(fn func(slot uint64, r blockRecord) error) error {
	c := v.b.Cursor()
	for k, raw := c.Seek([]byte{prefixBlock}); k != nil && k[0] == prefixBlock; k, raw = c.Next() {
		if len(k) != 9 {
			return fmt.Errorf("block key %x: %w", k, ErrCorrupt)
		}
		slot := binary.BigEndian.Uint64(k[1:])
		r, err := decodeBlock(slot, raw)
		if err != nil {
			return err
		}
		if err := fn(slot, r); err != nil {
			return err
		}
	}
	return nil
}
