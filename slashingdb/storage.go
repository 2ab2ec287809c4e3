package slashingdb

import (
	"encoding/binary"
	"fmt"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// Storage layout (schema version 2):
//
//	"meta"                   bucket
//	    "version"            1 byte: schemaVersion
//	    "gvr"                32 bytes: genesis validators root
//	"validators"             bucket
//	    <pubkey, 48 bytes>   number u32 | wm flags u8 | source u64 | target u64 | slot u64
//	"log"                    bucket, append-only
//	    <seq, u64>           one write (a duty batch, an import, ...): a list of ops
//
// All integers are big-endian, so cursor order is numeric order. Validator
// numbers are dense (0, 1, 2, ...) in registration order. An op is
//
//	opAtt        num u32 | source u64 | target u64 | known u8 | root [32]  put the attestation record for target
//	opBlock      num u32 | slot u64 | known u8 | root [32]                  put the block record for slot
//	opAttFloor   num u32 | target u64                                       delete attestation records with target < it
//	opBlockFloor num u32 | slot u64                                         delete block records with slot < it
//
// each prefixed with its op byte. Replaying the log in order rebuilds the
// in-memory index. A duty batch appends one entry at the right edge of the log's
// B-tree, so a write dirties a few pages whatever the number of validators.
// Watermarks change only on import and pruning and live in "validators".
// Pruning deletes or rewrites old log entries.

const schemaVersion = 2

var (
	bucketMeta       = []byte("meta")
	bucketValidators = []byte("validators")
	bucketLog        = []byte("log")
	keyVersion       = []byte("version")
	keyGVR           = []byte("gvr")
)

const (
	opAtt        = 1
	opBlock      = 2
	opAttFloor   = 3
	opBlockFloor = 4

	opAttLen   = 1 + 4 + 8 + 8 + 1 + 32
	opBlockLen = 1 + 4 + 8 + 1 + 32
	opFloorLen = 1 + 4 + 8

	valLen = 4 + 1 + 3*8

	wmAtt   = 1 // watermark flags
	wmBlock = 2
)

func initSchema(tx *bolt.Tx, gvr phase0.Root) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create meta bucket: %w", err)
	}
	if v := meta.Get(keyVersion); v != nil {
		if len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("schema version %x, this build reads %d (export with the build that wrote it and import here): %w",
				v, schemaVersion, ErrCorrupt)
		}
	} else if err := meta.Put(keyVersion, []byte{schemaVersion}); err != nil {
		return fmt.Errorf("store schema version: %w", err)
	}
	for _, name := range [][]byte{bucketValidators, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create %s bucket: %w", name, err)
		}
	}
	if stored := meta.Get(keyGVR); stored != nil {
		if len(stored) != 32 || phase0.Root(stored) != gvr {
			return fmt.Errorf("database has %#x, caller has %#x: %w", stored, gvr[:], ErrGenesisMismatch)
		}
		return nil
	}
	if err := meta.Put(keyGVR, gvr[:]); err != nil {
		return fmt.Errorf("store genesis validators root: %w", err)
	}
	return nil
}

func encodeValidator(v *validator) []byte {
	b := make([]byte, valLen)
	binary.BigEndian.PutUint32(b, v.num)
	if v.wm.att {
		b[4] |= wmAtt
	}
	if v.wm.block {
		b[4] |= wmBlock
	}
	binary.BigEndian.PutUint64(b[5:], v.wm.source)
	binary.BigEndian.PutUint64(b[13:], v.wm.target)
	binary.BigEndian.PutUint64(b[21:], v.wm.slot)
	return b
}

func decodeValidator(k, b []byte) (*validator, error) {
	if len(k) != 48 || len(b) != valLen || b[4]&^(wmAtt|wmBlock) != 0 {
		return nil, fmt.Errorf("validator entry %x=%x: %w", k, b, ErrCorrupt)
	}
	v := &validator{pubkey: phase0.BLSPubKey(k), num: binary.BigEndian.Uint32(b)}
	v.wm = watermarks{
		att: b[4]&wmAtt != 0, block: b[4]&wmBlock != 0,
		source: binary.BigEndian.Uint64(b[5:]), target: binary.BigEndian.Uint64(b[13:]), slot: binary.BigEndian.Uint64(b[21:]),
	}
	return v, nil
}

func saveValidator(tx *bolt.Tx, v *validator) error {
	if err := tx.Bucket(bucketValidators).Put(v.pubkey[:], encodeValidator(v)); err != nil {
		return fmt.Errorf("store validator %#x: %w", v.pubkey[:], err)
	}
	return nil
}

func appendAttOp(b []byte, num uint32, r attRec) []byte {
	b = append(b, opAtt)
	b = binary.BigEndian.AppendUint32(b, num)
	b = binary.BigEndian.AppendUint64(b, r.source)
	b = binary.BigEndian.AppendUint64(b, r.target)
	b = append(b, boolByte(r.known))
	return append(b, r.root[:]...)
}

func appendBlockOp(b []byte, num uint32, r blockRec) []byte {
	b = append(b, opBlock)
	b = binary.BigEndian.AppendUint32(b, num)
	b = binary.BigEndian.AppendUint64(b, r.slot)
	b = append(b, boolByte(r.known))
	return append(b, r.root[:]...)
}

func appendFloorOp(b []byte, op byte, num uint32, floor uint64) []byte {
	b = append(b, op)
	b = binary.BigEndian.AppendUint32(b, num)
	return binary.BigEndian.AppendUint64(b, floor)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// logOp is one decoded op; only the fields of its kind are set.
type logOp struct {
	kind  byte
	num   uint32
	att   attRec
	block blockRec
	floor uint64
}

// decodeOps calls fn for each op of a log entry, in order.
func decodeOps(seq uint64, b []byte, fn func(op logOp) error) error {
	for len(b) > 0 {
		var op logOp
		n := opLen(b[0])
		if n == 0 || len(b) < n || (b[0] == opAtt && b[21] > 1) || (b[0] == opBlock && b[13] > 1) {
			return fmt.Errorf("log entry %d: bad op %x: %w", seq, b[:min(len(b), 16)], ErrCorrupt)
		}
		op.kind, op.num = b[0], binary.BigEndian.Uint32(b[1:])
		switch op.kind {
		case opAtt:
			op.att = attRec{source: binary.BigEndian.Uint64(b[5:]), target: binary.BigEndian.Uint64(b[13:]), known: b[21] == 1, root: phase0.Root(b[22:54])}
		case opBlock:
			op.block = blockRec{slot: binary.BigEndian.Uint64(b[5:]), known: b[13] == 1, root: phase0.Root(b[14:46])}
		default:
			op.floor = binary.BigEndian.Uint64(b[5:])
		}
		if err := fn(op); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// opLen returns the encoded length of an op of kind, 0 for an unknown kind.
func opLen(kind byte) int {
	switch kind {
	case opAtt:
		return opAttLen
	case opBlock:
		return opBlockLen
	case opAttFloor, opBlockFloor:
		return opFloorLen
	}
	return 0
}

// apply applies op to the in-memory index.
func (db *DB) apply(op logOp) error {
	if int(op.num) >= len(db.byNum) {
		return fmt.Errorf("log op for unregistered validator number %d: %w", op.num, ErrCorrupt)
	}
	db.byNum[op.num].apply(op)
	return nil
}

// apply applies op, which must be for v, to v.
func (v *validator) apply(op logOp) {
	switch op.kind {
	case opAtt:
		v.atts = putAtt(v.atts, op.att)
	case opBlock:
		v.blocks = putBlock(v.blocks, op.block)
	case opAttFloor:
		if i := findAtt(v.atts, op.floor); i > 0 {
			v.atts = append([]attRec(nil), v.atts[i:]...) // let the dropped records be freed
		}
	case opBlockFloor:
		if i := findBlock(v.blocks, op.floor); i > 0 {
			v.blocks = append([]blockRec(nil), v.blocks[i:]...)
		}
	}
}

// load rebuilds the in-memory index from the validators bucket and the log, and
// checks every validator's invariant.
func (db *DB) load(tx *bolt.Tx) error {
	db.vals = map[phase0.BLSPubKey]*validator{}
	var all []*validator
	if err := tx.Bucket(bucketValidators).ForEach(func(k, b []byte) error {
		v, err := decodeValidator(k, b)
		if err != nil {
			return err
		}
		all = append(all, v)
		return nil
	}); err != nil {
		return err
	}
	db.byNum = make([]*validator, len(all))
	for _, v := range all {
		if int(v.num) >= len(all) || db.byNum[v.num] != nil {
			return fmt.Errorf("validator %#x has number %d (of %d): %w", v.pubkey[:], v.num, len(all), ErrCorrupt)
		}
		db.byNum[v.num] = v
		db.vals[v.pubkey] = v
	}
	c := tx.Bucket(bucketLog).Cursor()
	for k, b := c.First(); k != nil; k, b = c.Next() {
		if len(k) != 8 {
			return fmt.Errorf("log key %x: %w", k, ErrCorrupt)
		}
		seq := binary.BigEndian.Uint64(k)
		if err := decodeOps(seq, b, db.apply); err != nil {
			return err
		}
		db.nextSeq = seq + 1
	}
	for _, v := range db.byNum {
		if err := v.checkInvariant(); err != nil {
			return err
		}
	}
	return nil
}

// appendLog writes entry as the next log entry; the caller advances db.nextSeq
// after the commit.
func (db *DB) appendLog(tx *bolt.Tx, entry []byte) error {
	b := tx.Bucket(bucketLog)
	b.FillPercent = 1 // append-only: pack pages full
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], db.nextSeq)
	if err := b.Put(k[:], entry); err != nil {
		return fmt.Errorf("append log entry %d: %w", db.nextSeq, err)
	}
	return nil
}
