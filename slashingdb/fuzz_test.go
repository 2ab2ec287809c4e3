package slashingdb

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// bruteModel is the brute-force reference: every message ever signed or imported
// per key, no merging, no index, no watermarks. A new message is slashable when
// it conflicts with any of them (pairwise). The DB may refuse more than the model
// (watermarks, minified imports, pruning), so the model also tracks which keys are
// "strict"; for the others the DB must answer exactly as the complete-history
// rules do.
type bruteModel struct {
	atts        map[byte][]refRec
	blocks      map[byte][]refBlock
	registered  map[byte]bool
	guard       map[byte]guardAt // present = guard raised in the current DB handle
	strictAtt   map[byte]bool    // an import or prune touched the key's attestations
	strictBlock map[byte]bool
}

type refRec struct {
	source, target uint64
	root           byte
	known          bool
}

type refBlock struct {
	slot  uint64
	root  byte
	known bool
}

func newBruteModel() *bruteModel {
	return &bruteModel{
		atts: map[byte][]refRec{}, blocks: map[byte][]refBlock{}, registered: map[byte]bool{},
		guard: map[byte]guardAt{}, strictAtt: map[byte]bool{}, strictBlock: map[byte]bool{},
	}
}

// checkAtt compares the DB's verdict on an attestation with the model and
// records it in the model when the DB allowed it.
func (m *bruteModel) checkAtt(t *testing.T, key byte, s, tg uint64, r byte, v Verdict) {
	t.Helper()
	switch {
	case !m.registered[key]:
		if v.Rule != RuleUnknownValidator {
			t.Fatalf("key %d unregistered: %+v", key, v)
		}
		return
	case s > tg:
		if v.Rule != RuleSourceAfterTarget {
			t.Fatalf("(%d,%d) source after target: %+v", s, tg, v)
		}
		return
	}
	identical, slashable := false, false
	for _, x := range m.atts[key] {
		if x.target == tg && x.known && x.root == r && x.source == s {
			identical = true
		} else if x.target == tg || (x.source < s && tg < x.target) || (s < x.source && x.target < tg) {
			slashable = true
		}
	}
	g, guarded := m.guard[key]
	guarded = guarded && tg <= g.epoch
	if v.Allowed && slashable && !identical {
		t.Fatalf("key %d: DB allowed (%d,%d) root %d, slashable against %v", key, s, tg, r, m.atts[key])
	}
	if v.Allowed && guarded && !identical {
		t.Fatalf("key %d: DB allowed (%d,%d) under the start-up guard %d", key, s, tg, g.epoch)
	}
	if !m.strictAtt[key] {
		want := identical || (!slashable && !guarded)
		if v.Allowed != want {
			t.Fatalf("key %d (%d,%d) root %d: DB says %+v, complete rules say allowed=%v; history %v", key, s, tg, r, v, want, m.atts[key])
		}
	}
	if !v.Allowed && v.Detail == "" {
		t.Fatalf("refusal without detail: %+v", v)
	}
	if v.Allowed {
		m.atts[key] = append(m.atts[key], refRec{source: s, target: tg, root: r, known: true})
	}
}

// checkBlock is checkAtt for blocks.
func (m *bruteModel) checkBlock(t *testing.T, key byte, slot uint64, r byte, v Verdict) {
	t.Helper()
	if !m.registered[key] {
		if v.Rule != RuleUnknownValidator {
			t.Fatalf("key %d unregistered: %+v", key, v)
		}
		return
	}
	identical, slashable := false, false
	for _, x := range m.blocks[key] {
		if x.slot == slot && x.known && x.root == r {
			identical = true
		} else if x.slot == slot {
			slashable = true
		}
	}
	g, guarded := m.guard[key]
	guarded = guarded && slot <= g.slot
	if v.Allowed && !identical && (slashable || guarded) {
		t.Fatalf("key %d: DB allowed block %d root %d: slashable %v guarded %v; history %v", key, slot, r, slashable, guarded, m.blocks[key])
	}
	if !m.strictBlock[key] {
		if want := identical || (!slashable && !guarded); v.Allowed != want {
			t.Fatalf("key %d block %d root %d: DB says %+v, complete rules say allowed=%v; history %v", key, slot, r, v, want, m.blocks[key])
		}
	}
	if v.Allowed {
		m.blocks[key] = append(m.blocks[key], refBlock{slot: slot, root: r, known: true})
	}
}

// runRuleSequence interprets data as operations of 4 bytes each (b0 b1 b2 b3),
// key = b0/16%4 (keys 0-2 start registered, key 3 does not), and compares the
// DB with the brute-force model after each:
//
//	b0%16 0-5:  queue attestation (source b1%16, target b2%16, root b3%4)
//	b0%16 6-7:  queue block (slot b1%32, root b3%4)
//	b0%16 8:    submit the queued batches (attestations, then blocks)
//	b0%16 9:    add attestation (source b1%16, target b2%16, root b3%5, 4 = none) to the pending import
//	b0%16 10:   add block (slot b1%32, root b3%5) to the pending import
//	b0%16 11:   import the pending interchange (one data entry per record)
//	b0%16 12:   raise the start-up guard of the key to epoch b1%16, slot b2%32
//	b0%16 13:   prune: keep b1%8 epochs at current epoch b2%16, 2 slots per epoch
//	b0%16 14:   close and reopen the database (the guard is lost)
//	b0%16 15:   register the key
//
// Queued batches are submitted before every other operation and at the end.
func runRuleSequence(t *testing.T, data []byte) {
	const maxOps = 96
	if len(data) > 4*maxOps {
		data = data[:4*maxOps]
	}
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	m := newBruteModel()
	if err := db.Register([]phase0.BLSPubKey{pk(0), pk(1), pk(2)}); err != nil {
		t.Fatal(err)
	}
	m.registered[0], m.registered[1], m.registered[2] = true, true, true
	var (
		qAtts   []AttestationRequest
		qBlocks []BlockRequest
		iAtts   []impAtt
		iBlocks []impBlock
	)
	flush := func() {
		if len(qAtts) > 0 {
			vs, err := db.CheckAndRecordAttestations(qAtts)
			if err != nil {
				t.Fatal(err)
			}
			for i, q := range qAtts {
				m.checkAtt(t, q.Pubkey[1], uint64(q.SourceEpoch), uint64(q.TargetEpoch), q.SigningRoot[31], vs[i])
			}
			qAtts = qAtts[:0]
		}
		if len(qBlocks) > 0 {
			vs, err := db.CheckAndRecordBlocks(qBlocks)
			if err != nil {
				t.Fatal(err)
			}
			for i, q := range qBlocks {
				m.checkBlock(t, q.Pubkey[1], uint64(q.Slot), q.SigningRoot[31], vs[i])
			}
			qBlocks = qBlocks[:0]
		}
	}
	optRoot := func(b byte) int {
		if r := int(b % 5); r < 4 {
			return r
		}
		return -1
	}
	for ; len(data) >= 4; data = data[4:] {
		key := data[0] / 16 % 4
		op := data[0] % 16
		if op >= 8 {
			flush()
		}
		switch {
		case op <= 5:
			qAtts = append(qAtts, att(key, uint64(data[1]%16), uint64(data[2]%16), data[3]%4))
		case op <= 7:
			qBlocks = append(qBlocks, blk(key, uint64(data[1]%32), data[3]%4))
		case op == 9:
			iAtts = append(iAtts, impAtt{key, uint64(data[1] % 16), uint64(data[2] % 16), optRoot(data[3])})
		case op == 10:
			iBlocks = append(iBlocks, impBlock{key, uint64(data[1] % 32), optRoot(data[3])})
		case op == 11:
			if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR, iAtts, iBlocks))); err != nil {
				t.Fatalf("import %v %v: %v", iAtts, iBlocks, err)
			}
			for _, a := range iAtts {
				m.atts[a.key] = append(m.atts[a.key], refRec{source: a.source, target: a.target, root: byte(max(a.root, 0)), known: a.root >= 0})
				m.registered[a.key], m.strictAtt[a.key] = true, true
			}
			for _, b := range iBlocks {
				m.blocks[b.key] = append(m.blocks[b.key], refBlock{slot: b.slot, root: byte(max(b.root, 0)), known: b.root >= 0})
				m.registered[b.key], m.strictBlock[b.key] = true, true
			}
			iAtts, iBlocks = nil, nil
		case op == 12:
			e, s := uint64(data[1]%16), uint64(data[2]%32)
			if err := db.RaiseStartupGuard([]phase0.BLSPubKey{pk(key)}, phase0.Epoch(e), phase0.Slot(s)); err != nil {
				t.Fatal(err)
			}
			g, ok := m.guard[key]
			if !ok || e > g.epoch {
				g.epoch = e
			}
			if !ok || s > g.slot {
				g.slot = s
			}
			m.guard[key] = g
		case op == 13:
			if err := db.Prune(uint64(data[1]%8), phase0.Epoch(data[2]%16), 2); err != nil {
				t.Fatal(err)
			}
			for k := range byte(4) {
				m.strictAtt[k], m.strictBlock[k] = true, true
			}
		case op == 14:
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if db, err = Open(path, testGVR); err != nil {
				t.Fatalf("reopen: %v", err)
			}
			m.guard = map[byte]guardAt{}
		case op == 15:
			if err := db.Register([]phase0.BLSPubKey{pk(key)}); err != nil {
				t.Fatal(err)
			}
			m.registered[key] = true
		}
		assertInvariants(t, db)
	}
	flush()
	assertInvariants(t, db)
}

// assertInvariants checks every validator's stored history (white box).
func assertInvariants(t *testing.T, db *DB) {
	t.Helper()
	db.mu.RLock()
	defer db.mu.RUnlock()
	for _, v := range db.byNum {
		if err := v.checkInvariant(); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzAttestationRules runs random histories of signing, imports (including
// slashable ones), start-up guards, pruning and restarts through the DB and the
// brute-force model (see runRuleSequence), for attestations and blocks. Without
// -fuzz only the seed corpus (the f.Add seeds and testdata/fuzz/FuzzAttestationRules)
// runs.
func FuzzAttestationRules(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 0, 1, 2, 1, 0, 0, 3, 0, 0, 2, 3, 1, 8, 0, 0, 0})
	// The neighbour-check counterexample: import (5,6) and (2,7), then sign (3,8).
	f.Add([]byte{9, 5, 6, 4, 9, 2, 7, 4, 11, 0, 0, 0, 0, 3, 8, 1})
	// Double vote and surround inside one import, then signing around it.
	f.Add([]byte{9, 2, 3, 0, 9, 2, 3, 1, 9, 1, 5, 4, 11, 0, 0, 0, 0, 2, 3, 0, 0, 6, 7, 0})
	// Guard, reopen (guard lost), sign below the old guard.
	f.Add([]byte{12, 5, 10, 0, 0, 4, 5, 0, 6, 10, 0, 1, 14, 0, 0, 0, 0, 4, 5, 0, 6, 10, 0, 1})
	// Signed history, prune, then everything refused before must stay refused.
	f.Add([]byte{0, 1, 2, 0, 0, 2, 3, 0, 0, 3, 9, 0, 6, 3, 0, 1, 6, 9, 0, 1, 13, 1, 6, 0, 0, 1, 2, 1, 0, 1, 10, 1, 6, 3, 0, 2, 14, 0, 0, 0, 0, 2, 4, 0})
	// Unknown key 3: refused, then registered, then imported blocks with conflicting roots.
	f.Add([]byte{48, 1, 2, 0, 63, 0, 0, 0, 48, 1, 2, 0, 58, 5, 0, 1, 58, 5, 0, 2, 59, 0, 0, 0, 54, 6, 0, 1})
	rng := rand.New(rand.NewSource(3076))
	for range 24 {
		b := make([]byte, 4*(8+rng.Intn(24)))
		rng.Read(b)
		for i := 0; i < len(b); i += 4 { // keep epochs close together so rules interact
			b[i+1] %= 8
			b[i+2] %= 10
		}
		f.Add(b)
	}
	f.Fuzz(runRuleSequence)
}

// FuzzImportInterchange: ImportInterchange never panics; an accepted document
// exports, and the export imports into a fresh DB and exports identically.
func FuzzImportInterchange(f *testing.F) {
	f.Add([]byte(`{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x0000000000000000000000000000000000000000000000000000000000000000"},"data":[]}`))
	f.Add([]byte(`{"metadata":null,"data":null}`))
	f.Add([]byte(`[]`))
	if files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "eip3076", "tests", "*.json")); len(files) > 0 {
		for _, file := range files {
			raw, err := os.ReadFile(file)
			if err != nil {
				continue
			}
			var tc conformanceFile
			if json.Unmarshal(raw, &tc) != nil {
				continue
			}
			for _, s := range tc.Steps {
				f.Add([]byte(s.Interchange))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := decodeInterchange(bytes.NewReader(data)); err != nil {
			return // cheap rejection; keeps the fuzzer fast on garbage
		}
		db := openTestDB(t, phase0.Root{})
		if err := db.ImportInterchange(bytes.NewReader(data)); err != nil {
			return
		}
		var first, second bytes.Buffer
		if err := db.ExportInterchange(&first); err != nil {
			t.Fatalf("export after a good import: %v", err)
		}
		db2 := openTestDB(t, phase0.Root{})
		if err := db2.ImportInterchange(bytes.NewReader(first.Bytes())); err != nil {
			t.Fatalf("import of own export: %v\n%s", err, first.String())
		}
		if err := db2.ExportInterchange(&second); err != nil {
			t.Fatal(err)
		}
		if first.String() != second.String() {
			t.Fatalf("export not stable:\n%s\n---\n%s", first.String(), second.String())
		}
	})
}
