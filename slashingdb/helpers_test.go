package slashingdb

import (
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

var testGVR = phase0.Root{0x04, 0x70}

// openTestDB opens a fresh database in a temporary directory, closed at cleanup,
// with the test keys pk(0) to pk(255) registered.
func openTestDB(t testing.TB, gvr phase0.Root) *DB {
	t.Helper()
	db := openEmptyTestDB(t, gvr)
	keys := make([]phase0.BLSPubKey, 256)
	for i := range keys {
		keys[i] = pk(byte(i))
	}
	if err := db.Register(keys); err != nil {
		t.Fatal(err)
	}
	return db
}

// openEmptyTestDB opens a fresh database with no key registered.
func openEmptyTestDB(t testing.TB, gvr phase0.Root) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "slashing.db"), gvr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func pk(n byte) phase0.BLSPubKey { return phase0.BLSPubKey{0xa0, n} }

func root(n byte) phase0.Root { return phase0.Root{31: n} }

func att(key byte, source, target uint64, r byte) AttestationRequest {
	return AttestationRequest{Pubkey: pk(key), SourceEpoch: phase0.Epoch(source), TargetEpoch: phase0.Epoch(target), SigningRoot: root(r)}
}

func blk(key byte, slot uint64, r byte) BlockRequest {
	return BlockRequest{Pubkey: pk(key), Slot: phase0.Slot(slot), SigningRoot: root(r)}
}

func attest(t testing.TB, db *DB, reqs ...AttestationRequest) []Verdict {
	t.Helper()
	vs, err := db.CheckAndRecordAttestations(reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(reqs) {
		t.Fatalf("%d verdicts for %d requests", len(vs), len(reqs))
	}
	return vs
}

func propose(t testing.TB, db *DB, reqs ...BlockRequest) []Verdict {
	t.Helper()
	vs, err := db.CheckAndRecordBlocks(reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(reqs) {
		t.Fatalf("%d verdicts for %d requests", len(vs), len(reqs))
	}
	return vs
}
