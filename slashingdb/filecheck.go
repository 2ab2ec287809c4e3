package slashingdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's meta page, as far as checkFile needs it (go.etcd.io/bbolt
// internal/common/meta.go): a 16-byte page header, then magic u32, version u32,
// pageSize u32, flags u32, root pgid u64, root sequence u64, freelist pgid u64,
// high-water pgid u64, txid u64, checksum u64 (FNV-64a of the bytes before it),
// in the machine's (little-endian) byte order.
const (
	boltMagic     = 0xED0CDAED
	boltVersion   = 2
	metaOffset    = 16
	metaSumOffset = 56
)

type boltMeta struct {
	pageSize             uint32
	root, freelist, pgid uint64
	txid                 uint64
}

// checkFile looks at an existing database file before bbolt maps it: bbolt
// faults (an unrecoverable crash, not a panic) when a truncated file's meta page
// points past the end of the file. It reports a file whose valid meta pages all
// point past its end, or that has no valid meta page. A missing or empty file is
// fine (Open creates the database). A file that another process holds is not
// read (lockShared fails); bbolt then reports ErrLocked.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if !lockShared(f) {
		return nil
	}
	defer unlock(f)
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	var best *boltMeta
	m0 := readMeta(f, 0)
	offsets := []int64{0}
	if m0 != nil {
		offsets = append(offsets, int64(m0.pageSize))
	} else {
		offsets = append(offsets, 4096, int64(os.Getpagesize()))
	}
	for _, off := range offsets {
		if m := readMeta(f, off); m != nil && (best == nil || m.txid > best.txid) {
			best = m
		}
	}
	if best == nil {
		return fmt.Errorf("no valid bbolt meta page (%d bytes; truncated, or not a slashing database): %w", size, ErrCorrupt)
	}
	if need := int64(best.pgid) * int64(best.pageSize); best.pgid > 1<<40 || size < need ||
		best.root >= best.pgid || (best.freelist >= best.pgid && best.freelist != ^uint64(0)) {
		return fmt.Errorf("file has %d bytes, its meta page needs %d (pages %d, root %d, freelist %d): truncated: %w",
			size, need, best.pgid, best.root, best.freelist, ErrCorrupt)
	}
	return nil
}

// readMeta returns the meta page at off if it is valid, else nil.
func readMeta(f *os.File, off int64) *boltMeta {
	var b [metaOffset + metaSumOffset + 8]byte
	if _, err := f.ReadAt(b[:], off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	m := b[metaOffset:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[metaSumOffset:]) != h.Sum64() {
		return nil
	}
	ps := le.Uint32(m[8:])
	if ps < 512 || ps > 1<<20 {
		return nil
	}
	return &boltMeta{pageSize: ps, root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
}
