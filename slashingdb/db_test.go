package slashingdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// TestConcurrentConflictingAttestations: many goroutines race to sign the same
// target with different roots; exactly one wins.
func TestConcurrentConflictingAttestations(t *testing.T) {
	db := openTestDB(t, testGVR)
	const n = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed []int
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Each call carries one conflicting request plus one for a private key.
			vs, err := db.CheckAndRecordAttestations([]AttestationRequest{att(1, 3, 4, byte(i)), att(byte(100+i), 3, 4, 1)})
			if err != nil {
				t.Error(err)
				return
			}
			if !vs[1].Allowed {
				t.Errorf("goroutine %d: independent request refused: %+v", i, vs[1])
			}
			if vs[0].Allowed {
				mu.Lock()
				allowed = append(allowed, i)
				mu.Unlock()
			} else if vs[0].Rule != RuleDoubleVote {
				t.Errorf("goroutine %d: %+v", i, vs[0])
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(allowed) != 1 {
		t.Fatalf("%d requests allowed (%v), want exactly 1", len(allowed), allowed)
	}
	// The winner may re-sign; nobody else may.
	for i := range n {
		v := attest(t, db, att(1, 3, 4, byte(i)))[0]
		if v.Allowed != (i == allowed[0]) {
			t.Fatalf("after the race, root %d: %+v (winner %d)", i, v, allowed[0])
		}
	}
}

// TestReopenPersistence: records, watermarks and registrations survive
// Close/Open; the start-up guard is in memory and does not.
func TestReopenPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Register([]phase0.BLSPubKey{pk(1), pk(2)}); err != nil {
		t.Fatal(err)
	}
	if v := attest(t, db, att(1, 3, 4, 1))[0]; !v.Allowed {
		t.Fatal(v)
	}
	if v := propose(t, db, blk(1, 40, 1))[0]; !v.Allowed {
		t.Fatal(v)
	}
	if err := db.RaiseStartupGuard([]phase0.BLSPubKey{pk(2)}, 7, 224); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := attest(t, db, att(1, 3, 4, 2))[0]; v.Rule != RuleDoubleVote {
		t.Fatalf("conflicting attestation after reopen: %+v", v)
	}
	if v := attest(t, db, att(1, 2, 5, 2))[0]; v.Rule != RuleSurrounding {
		t.Fatalf("surrounding attestation after reopen: %+v", v)
	}
	if v := propose(t, db, blk(1, 40, 2))[0]; v.Rule != RuleDoubleBlock {
		t.Fatalf("conflicting block after reopen: %+v", v)
	}
	if v := attest(t, db, att(2, 6, 7, 2))[0]; !v.Allowed {
		t.Fatalf("the start-up guard is in memory: after reopen: %+v", v)
	}
	if v := attest(t, db, att(1, 3, 4, 1))[0]; !v.Allowed {
		t.Fatalf("identical re-sign after reopen: %+v", v)
	}
}

// TestOpenLocked: a second Open of a file that is open fails quickly with
// ErrLocked, naming the file.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	begin := time.Now()
	db2, err := Open(path, testGVR)
	if err == nil {
		db2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: %v", err)
	}
	if d := time.Since(begin); d > 5*LockTimeout {
		t.Fatalf("second Open took %v", d)
	}
}

// TestGenesisMismatch: the stored GVR binds the file, and imports must match it.
func TestGenesisMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	if got := db.GenesisValidatorsRoot(); got != testGVR {
		t.Fatalf("GVR %x", got)
	}
	other := phase0.Root{1}
	err = db.ImportInterchange(bytes.NewReader(interchangeJSON(t, other, []impAtt{{1, 1, 2, -1}}, nil)))
	if !errors.Is(err, ErrGenesisMismatch) {
		t.Fatalf("import with other GVR: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, other); !errors.Is(err, ErrGenesisMismatch) {
		t.Fatalf("open with other GVR: %v", err)
	}
	db, err = Open(path, testGVR)
	if err != nil {
		t.Fatalf("reopen with the right GVR: %v", err)
	}
	db.Close()
}

// TestImportRejectsBadInput: malformed documents fail with ErrBadInterchange and
// leave the database unchanged (all or nothing).
func TestImportRejectsBadInput(t *testing.T) {
	gvr := "0x" + strings.Repeat("00", 32)
	key := "0x" + strings.Repeat("ab", 48)
	good := `{"pubkey":"` + key + `","signed_blocks":[{"slot":"5"}],"signed_attestations":[]}`
	doc := func(version, data string) string {
		return `{"metadata":{"interchange_format_version":"` + version + `","genesis_validators_root":"` + gvr + `"},"data":[` + data + `]}`
	}
	cases := map[string]string{
		"not json":        `{`,
		"no metadata":     `{"data":[]}`,
		"version 4":       doc("4", good),
		"short pubkey":    doc("5", `{"pubkey":"0xabcd","signed_blocks":[],"signed_attestations":[]}`),
		"bad hex":         doc("5", `{"pubkey":"0x`+strings.Repeat("zz", 48)+`","signed_blocks":[],"signed_attestations":[]}`),
		"numeric slot":    doc("5", `{"pubkey":"`+key+`","signed_blocks":[{"slot":5}],"signed_attestations":[]}`),
		"negative epoch":  doc("5", `{"pubkey":"`+key+`","signed_blocks":[],"signed_attestations":[{"source_epoch":"-1","target_epoch":"2"}]}`),
		"overflow":        doc("5", `{"pubkey":"`+key+`","signed_blocks":[{"slot":"18446744073709551616"}],"signed_attestations":[]}`),
		"bad root":        doc("5", `{"pubkey":"`+key+`","signed_blocks":[{"slot":"6","signing_root":"0x12"}],"signed_attestations":[]}`),
		"trailing data":   doc("5", good) + `{}`,
		"good then bad":   doc("5", good+`,{"pubkey":"`+key+`","signed_blocks":[{"slot":"x"}],"signed_attestations":[]}`),
		"empty gvr":       `{"metadata":{"interchange_format_version":"5","genesis_validators_root":""},"data":[]}`,
		"wrong data type": `{"metadata":{"interchange_format_version":"5","genesis_validators_root":"` + gvr + `"},"data":{}}`,
	}
	db := openTestDB(t, phase0.Root{})
	for name, in := range cases {
		if err := db.ImportInterchange(strings.NewReader(in)); !errors.Is(err, ErrBadInterchange) {
			t.Errorf("%s: %v, want ErrBadInterchange", name, err)
		}
	}
	var out bytes.Buffer
	if err := db.ExportInterchange(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "slot") {
		t.Fatalf("a failed import left records behind:\n%s", out.String())
	}
	if err := db.ImportInterchange(strings.NewReader(doc("5", good))); err != nil {
		t.Fatalf("good document: %v", err)
	}
}

// TestInterchangeRoundTrip: export, import into a fresh DB, export again; the
// documents match and the second DB refuses what the first refuses.
func TestInterchangeRoundTrip(t *testing.T) {
	src := openTestDB(t, testGVR)
	attest(t, src, att(1, 0, 1, 1), att(1, 1, 2, 0), att(2, 5, 9, 3))
	propose(t, src, blk(1, 10, 1), blk(2, 11, 0))
	// Imported records: one without root, two merged with different sources.
	if err := src.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR,
		[]impAtt{{3, 4, 6, -1}, {3, 2, 7, -1}, {3, 3, 7, 2}}, []impBlock{{3, 20, -1}}))); err != nil {
		t.Fatal(err)
	}
	var first bytes.Buffer
	if err := src.ExportInterchange(&first); err != nil {
		t.Fatal(err)
	}
	dst := openTestDB(t, testGVR)
	if err := dst.ImportInterchange(bytes.NewReader(first.Bytes())); err != nil {
		t.Fatalf("import of export: %v\n%s", err, first.String())
	}
	var second bytes.Buffer
	if err := dst.ExportInterchange(&second); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() {
		t.Fatalf("round trip changed the document:\n%s\n---\n%s", first.String(), second.String())
	}
	for _, db := range []*DB{src, dst} {
		checks := []struct {
			req  AttestationRequest
			want bool
		}{
			{att(1, 1, 2, 0), true},  // identical re-sign: roots survive the round trip
			{att(1, 1, 2, 9), false}, // double vote
			{att(2, 4, 10, 3), false},
			{att(3, 4, 6, 0), false}, // root-less
			{att(3, 3, 7, 2), false}, // merged record
			{att(3, 2, 8, 1), false}, // surrounds (3,7) of the merged record
			{att(3, 5, 10, 1), true}, // neither surrounds nor is surrounded, above the watermarks
		}
		for i, c := range checks {
			vs, err := db.CheckAndRecordAttestations([]AttestationRequest{c.req})
			if err != nil {
				t.Fatal(err)
			}
			if vs[0].Allowed != c.want {
				t.Errorf("check %d %+v: %+v, want allowed=%v", i, c.req, vs[0], c.want)
			}
		}
		if v := propose(t, db, blk(2, 11, 0))[0]; !v.Allowed {
			t.Errorf("block re-sign: %+v", v)
		}
		if v := propose(t, db, blk(3, 20, 0))[0]; v.Allowed {
			t.Errorf("root-less block: %+v", v)
		}
	}
}

// TestCorruptRecords: undecodable or slashable stored data fails Open with
// ErrCorrupt naming the file, instead of panicking or being trusted.
func TestCorruptRecords(t *testing.T) {
	good := func(db *DB) {
		attest(t, db, att(1, 1, 2, 1))
		propose(t, db, blk(1, 5, 1))
	}
	seq := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	cases := map[string]func(tx *bolt.Tx) error{
		"bad op": func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Put(seq(100), []byte{1, 2, 3}) },
		"unknown op": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLog).Put(seq(100), appendFloorOp(nil, 9, 0, 1))
		},
		"unregistered number": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLog).Put(seq(100), appendAttOp(nil, 1<<20, attRec{source: 1, target: 3}))
		},
		"short validator": func(tx *bolt.Tx) error { k := pk(1); return tx.Bucket(bucketValidators).Put(k[:], []byte{0}) },
		"bad log key": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLog).Put([]byte{1}, appendAttOp(nil, 1, attRec{source: 1, target: 3}))
		},
		// The counterexample of the neighbour check, written past the import:
		// (5,6) and (2,7) stored together must never be trusted.
		"slashable history": func(tx *bolt.Tx) error {
			v := appendAttOp(nil, 7, attRec{source: 5, target: 6})
			return tx.Bucket(bucketLog).Put(seq(100), appendAttOp(v, 7, attRec{source: 2, target: 7}))
		},
		"inverted record": func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLog).Put(seq(100), appendAttOp(nil, 7, attRec{source: 9, target: 8}))
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "slashing.db")
			db, err := Open(path, testGVR)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Register([]phase0.BLSPubKey{pk(0), pk(1), pk(2), pk(3), pk(4), pk(5), pk(6), pk(7)}); err != nil {
				t.Fatal(err)
			}
			good(db)
			if err := db.bolt.Update(corrupt); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open(path, testGVR)
			if err == nil {
				db.Close()
				t.Fatal("Open of a corrupt database succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}
