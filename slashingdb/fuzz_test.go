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

// refModel is a plain in-memory model of the complete-strategy rules: a list of
// records per key, no merging, no indexes.
type refModel struct {
	recs  map[byte][]refRec
	guard map[byte]uint64 // present = guard set
}

type refRec struct {
	source, target uint64
	root           byte
	known, import_ bool
}

func newRefModel() *refModel {
	return &refModel{recs: map[byte][]refRec{}, guard: map[byte]uint64{}}
}

// check returns the expected rule ("" = allowed) and records an allowed request.
func (m *refModel) check(key byte, s, t uint64, r byte) Rule {
	if s > t {
		return RuleSourceAfterTarget
	}
	recs := m.recs[key]
	same, identical := false, true
	for _, x := range recs {
		if x.target == t {
			same = true
			identical = identical && x.known && x.root == r && x.source == s
		}
	}
	if same {
		if identical {
			return ""
		}
		return RuleDoubleVote
	}
	for _, x := range recs {
		if x.source < s && t < x.target {
			return RuleSurrounded
		}
	}
	for _, x := range recs {
		if s < x.source && x.target < t {
			return RuleSurrounding
		}
	}
	if g, ok := m.guard[key]; ok && t <= g {
		return RuleStartupGuard
	}
	imported := false
	var minS, minT uint64
	for _, x := range recs {
		if x.import_ {
			if !imported || x.source < minS {
				minS = x.source
			}
			if !imported || x.target < minT {
				minT = x.target
			}
			imported = true
		}
	}
	if imported && s < minS {
		return RuleBelowSourceWatermark
	}
	if imported && t <= minT {
		return RuleAtOrBelowTargetWatermark
	}
	m.recs[key] = append(recs, refRec{source: s, target: t, root: r, known: true})
	return ""
}

// runRuleSequence interprets data as operations of 4 bytes each and compares the
// DB's verdicts with the reference model's:
//
//	b0%8 in 0..4: queue attestation (key b0/8%3, source b1%16, target b2%16, root b3%4)
//	b0%8 == 5:    submit the queued batch
//	b0%8 == 6:    import one attestation (root b3%5, 4 = no root)
//	b0%8 == 7:    raise the start-up guard of the key to epoch b1%16
//
// The queue is submitted before an import or guard and at the end.
func runRuleSequence(t *testing.T, data []byte) {
	const maxOps = 64
	if len(data) > 4*maxOps {
		data = data[:4*maxOps]
	}
	db := openTestDB(t, testGVR)
	model := newRefModel()
	var queue []AttestationRequest
	flush := func() {
		if len(queue) == 0 {
			return
		}
		vs, err := db.CheckAndRecordAttestations(queue)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range queue {
			want := model.check(q.Pubkey[1], uint64(q.SourceEpoch), uint64(q.TargetEpoch), q.SigningRoot[31])
			if vs[i].Rule != want || vs[i].Allowed != (want == "") {
				t.Fatalf("request %+v: DB says %+v, model says %q", q, vs[i], want)
			}
		}
		queue = queue[:0]
	}
	for ; len(data) >= 4; data = data[4:] {
		key := data[0] / 8 % 3
		s, tg := uint64(data[1]%16), uint64(data[2]%16)
		switch op := data[0] % 8; {
		case op <= 4:
			queue = append(queue, att(key, s, tg, data[3]%4))
		case op == 5:
			flush()
		case op == 6:
			flush()
			r := int(data[3] % 5)
			if r == 4 {
				r = -1
			}
			if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR, []impAtt{{key, s, tg, r}}, nil))); err != nil {
				t.Fatal(err)
			}
			model.recs[key] = append(model.recs[key], refRec{source: s, target: tg, root: byte(max(r, 0)), known: r >= 0, import_: true})
		case op == 7:
			flush()
			if err := db.RaiseStartupGuard([]phase0.BLSPubKey{pk(key)}, phase0.Epoch(s), 0); err != nil {
				t.Fatal(err)
			}
			if g, ok := model.guard[key]; !ok || s > g {
				model.guard[key] = s
			}
		}
	}
	flush()
}

// FuzzAttestationRules compares the DB with the reference model over random
// operation sequences. Without -fuzz only the seed corpus runs.
func FuzzAttestationRules(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 0, 1, 2, 1, 0, 0, 3, 0, 0, 2, 3, 1, 5, 0, 0, 0})
	f.Add([]byte{6, 5, 2, 4, 0, 3, 4, 0, 0, 6, 8, 1, 0, 9, 8, 1})
	f.Add([]byte{6, 2, 3, 0, 6, 2, 3, 0, 0, 2, 3, 0, 6, 2, 3, 4, 0, 2, 3, 0})
	f.Add([]byte{7, 5, 0, 0, 0, 4, 5, 0, 0, 5, 6, 0, 7, 9, 0, 0, 0, 8, 9, 1, 0, 9, 10, 1})
	f.Add([]byte{6, 10, 11, 4, 0, 9, 10, 0, 0, 10, 11, 0, 0, 10, 12, 0, 8, 1, 2, 3, 16, 1, 2, 3})
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
