package slashingdb

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// TestImport_NeighbourCounterexample: with (5,6) and (2,7) stored as they are, a
// check that looks only at the neighbouring targets would allow (3,8), which
// surrounds (5,6). The import minifies the slashable pair, so (3,8) is refused.
func TestImport_NeighbourCounterexample(t *testing.T) {
	db := openTestDB(t, testGVR)
	if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR, []impAtt{{1, 5, 6, -1}, {1, 2, 7, -1}}, nil))); err != nil {
		t.Fatal(err)
	}
	if v := attest(t, db, att(1, 3, 8, 1))[0]; v.Allowed {
		t.Fatalf("(3,8) surrounds the imported (5,6): %+v", v)
	}
	if got := db.vals[pk(1)].atts; len(got) != 1 || got[0].source != 5 || got[0].target != 7 || got[0].known {
		t.Fatalf("minified history %+v, want one root-less record (5,7)", got)
	}
	if v := attest(t, db, att(1, 5, 8, 1))[0]; !v.Allowed {
		t.Fatalf("(5,8) conflicts with nothing: %+v", v)
	}
}

// TestImport_NeverLowers: an import below what the DB holds cannot lower the
// watermarks or re-open a refused request, and a clean import keeps the complete
// history (no minification).
func TestImport_NeverLowers(t *testing.T) {
	db := openTestDB(t, testGVR)
	imp := func(atts []impAtt, blocks []impBlock) {
		t.Helper()
		if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR, atts, blocks))); err != nil {
			t.Fatal(err)
		}
	}
	imp([]impAtt{{1, 5, 6, -1}, {1, 2, 7, -1}}, []impBlock{{1, 30, 1}, {1, 30, 2}}) // slashable: minified
	imp([]impAtt{{1, 1, 2, -1}}, []impBlock{{1, 3, -1}})                            // below the watermarks
	for _, c := range []AttestationRequest{att(1, 3, 4, 1), att(1, 4, 8, 1), att(1, 1, 3, 1)} {
		if v := attest(t, db, c)[0]; v.Allowed {
			t.Errorf("%+v allowed after a lower import: %+v", c, v)
		}
	}
	if v := propose(t, db, blk(1, 29, 1))[0]; v.Allowed {
		t.Errorf("slot 29 allowed after a lower import: %+v", v)
	}
	if w := db.vals[pk(1)].wm; w.source < 5 || w.target < 7 || w.slot < 30 {
		t.Fatalf("watermarks lowered: %+v", w)
	}

	// Clean import: the complete history stays, (2,3) fits between (1,2) and (3,4).
	imp([]impAtt{{2, 1, 2, 1}, {2, 3, 4, 1}, {2, 3, 6, -1}}, nil)
	if n := len(db.vals[pk(2)].atts); n != 3 {
		t.Fatalf("clean import stored %d records, want 3", n)
	}
	if v := attest(t, db, att(2, 2, 3, 1))[0]; !v.Allowed {
		t.Fatalf("(2,3) after a clean import of (1,2),(3,4),(3,6): %+v", v)
	}
	if v := attest(t, db, att(2, 2, 5, 1))[0]; v.Rule != RuleSurrounding {
		t.Fatalf("(2,5) surrounds (3,4): %+v", v)
	}
}

// TestRegister_UnknownValidator: unknown keys are refused with a Detail telling
// the operator what to do; Register and Import make keys known, persistently.
func TestRegister_UnknownValidator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	v := attest(t, db, att(1, 1, 2, 1))[0]
	if v.Rule != RuleUnknownValidator || !strings.Contains(v.Detail, "dvmesh slashing init") || !strings.Contains(v.Detail, "dvmesh slashing import") {
		t.Fatalf("unknown key: %+v", v)
	}
	if v := propose(t, db, blk(1, 5, 1))[0]; v.Rule != RuleUnknownValidator {
		t.Fatalf("unknown key block: %+v", v)
	}
	keys := []phase0.BLSPubKey{pk(1), pk(2), pk(3), pk(1)}
	if got := db.Unknown(keys); len(got) != 3 {
		t.Fatalf("Unknown: %x", got)
	}
	if err := db.Register(keys[:1]); err != nil {
		t.Fatal(err)
	}
	attest(t, db, att(1, 1, 2, 1))
	if err := db.Register(keys); err != nil { // idempotent: keeps pk(1)'s history
		t.Fatal(err)
	}
	if v := attest(t, db, att(1, 1, 2, 2))[0]; v.Rule != RuleDoubleVote {
		t.Fatalf("history lost by a second Register: %+v", v)
	}
	// An import registers its keys, even one without records.
	doc := `{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x` + strings.Repeat("00", 32) + `"},"data":[` +
		`{"pubkey":"0x` + strings.Repeat("cd", 48) + `","signed_blocks":[],"signed_attestations":[]}]}`
	db2 := openEmptyTestDB(t, phase0.Root{})
	if err := db2.ImportInterchange(strings.NewReader(doc)); err != nil {
		t.Fatal(err)
	}
	if got := db2.Unknown([]phase0.BLSPubKey{phase0.BLSPubKey(bytes.Repeat([]byte{0xcd}, 48))}); len(got) != 0 {
		t.Fatalf("imported key unknown: %x", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, testGVR); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Unknown(keys); len(got) != 0 {
		t.Fatalf("registration lost at reopen: %x", got)
	}
	if v := attest(t, db, att(1, 1, 2, 2))[0]; v.Rule != RuleDoubleVote {
		t.Fatalf("history lost at reopen: %+v", v)
	}
	if _, err := db.CheckAndRecordAttestations(nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.CheckAndRecordAttestations([]AttestationRequest{att(1, 2, 3, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestOpen_TruncatedFile: a truncated database file fails Open with an error
// naming the file, or (cut only in the preallocated tail) opens with all its
// data; never a panic or silently lost data. (A file truncated
// to zero bytes is a new database: every key is then unknown and refused.)
func TestOpen_TruncatedFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.db")
	db, err := Open(src, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]phase0.BLSPubKey, 300)
	for i := range keys {
		keys[i] = phase0.BLSPubKey{0xe0, byte(i >> 8), byte(i)}
	}
	if err := db.Register(keys); err != nil {
		t.Fatal(err)
	}
	for e := uint64(1); e <= 20; e++ {
		reqs := make([]AttestationRequest, len(keys))
		for i, k := range keys {
			reqs[i] = AttestationRequest{Pubkey: k, SourceEpoch: phase0.Epoch(e - 1), TargetEpoch: phase0.Epoch(e), SigningRoot: phase0.Root{byte(e)}}
		}
		if _, err := db.CheckAndRecordAttestations(reqs); err != nil {
			t.Fatal(err)
		}
	}
	var want bytes.Buffer
	if err := db.ExportInterchange(&want); err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{100, 4096, 3 * 4096, len(raw) - 4096, len(raw) - 1}
	for s := 4096 + 17; s < len(raw); s += len(raw) / 48 {
		sizes = append(sizes, s)
	}
	for _, size := range sizes {
		path := filepath.Join(t.TempDir(), "slashing.db")
		if err := os.WriteFile(path, raw[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(path, testGVR)
		if err == nil { // only the preallocated, unused tail was cut: nothing may be lost
			var got bytes.Buffer
			if err := db.ExportInterchange(&got); err != nil || got.String() != want.String() {
				t.Errorf("size %d of %d: Open succeeded but the data changed (%v)", size, len(raw), err)
			}
			db.Close()
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("size %d: error does not name the file: %v", size, err)
		}
	}
	empty := filepath.Join(t.TempDir(), "slashing.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, empty)
	if got := db.Unknown(keys); len(got) != len(keys) {
		t.Fatalf("zero-length file: %d of %d keys unknown", len(got), len(keys))
	}
}

func openAt(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestImportFile: ImportFile creates a database bound to the interchange's root,
// and refuses an existing file bound to another root.
func TestImportFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	n, err := ImportFile(path, bytes.NewReader(interchangeJSON(t, testGVR, []impAtt{{1, 2, 3, -1}, {2, 2, 3, 1}}, nil)))
	if err != nil || n != 2 {
		t.Fatalf("ImportFile: %d, %v", n, err)
	}
	db := openAt(t, path)
	if v := attest(t, db, att(2, 2, 3, 1))[0]; !v.Allowed {
		t.Fatalf("imported record: %+v", v)
	}
	db.Close()
	if _, err := ImportFile(path, bytes.NewReader(interchangeJSON(t, phase0.Root{9}, nil, nil))); !errors.Is(err, ErrGenesisMismatch) {
		t.Fatalf("other root: %v", err)
	}
}
