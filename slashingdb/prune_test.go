package slashingdb

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// probe returns the verdicts of every attestation (s, t) with s <= t < 24 and
// every block slot < 48 for key, without recording anything (white box).
func probe(db *DB, key byte) (atts map[[2]uint64]bool, blocks map[uint64]bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	v := db.vals[pk(key)]
	atts, blocks = map[[2]uint64]bool{}, map[uint64]bool{}
	for tg := uint64(0); tg < 24; tg++ {
		for s := uint64(0); s <= tg; s++ {
			verdict, _ := db.checkAttestation(v, nil, att(key, s, tg, 1))
			atts[[2]uint64{s, tg}] = verdict.Allowed
		}
	}
	for slot := uint64(0); slot < 48; slot++ {
		var same *blockRec
		if j := findBlock(v.blocks, slot); j < len(v.blocks) && v.blocks[j].slot == slot {
			same = &v.blocks[j]
		}
		verdict, _ := db.checkBlock(v, same, blk(key, slot, 1))
		blocks[slot] = verdict.Allowed
	}
	return atts, blocks
}

// TestPrune_RefusesWhatWasRefused: after pruning, everything refused before is
// still refused, the newest attestation and block are kept, the watermarks
// went up, and a reopen (replaying the rewritten log) gives the same history.
func TestPrune_RefusesWhatWasRefused(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "slashing.db")
		db, err := Open(path, testGVR)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Register([]phase0.BLSPubKey{pk(1), pk(2)}); err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 { // an imported start
			if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR,
				[]impAtt{{1, 1, 3, -1}, {1, 2, 4, 5}}, []impBlock{{1, 4, -1}}))); err != nil {
				t.Fatal(err)
			}
		}
		for range 40 { // random signing, mostly refused; other key interleaved
			s := uint64(rng.Intn(20))
			attest(t, db, att(1, s, s+uint64(rng.Intn(4)), byte(rng.Intn(3))), att(2, s, s+1, 1))
			propose(t, db, blk(1, uint64(rng.Intn(46)), byte(rng.Intn(2))))
		}
		beforeAtts, beforeBlocks := probe(db, 1)
		v := db.vals[pk(1)]
		newestAtt, newestBlock := v.atts[len(v.atts)-1], v.blocks[len(v.blocks)-1]
		keep, cur := uint64(rng.Intn(6)), phase0.Epoch(rng.Intn(30))
		if err := db.Prune(keep, cur, 2); err != nil {
			t.Fatal(err)
		}
		afterAtts, afterBlocks := probe(db, 1)
		for k, allowed := range afterAtts {
			if allowed && !beforeAtts[k] {
				t.Fatalf("round %d: prune(%d, %d) allowed attestation %v refused before", round, keep, cur, k)
			}
		}
		for k, allowed := range afterBlocks {
			if allowed && !beforeBlocks[k] {
				t.Fatalf("round %d: prune allowed block %d refused before", round, k)
			}
		}
		v = db.vals[pk(1)]
		if v.atts[len(v.atts)-1] != newestAtt || v.blocks[len(v.blocks)-1] != newestBlock {
			t.Fatalf("round %d: newest record pruned", round)
		}
		if cut := uint64(cur) - min(keep, uint64(cur)); len(v.atts) > 1 && v.atts[0].target < cut {
			t.Fatalf("round %d: record target %d below cut %d kept", round, v.atts[0].target, cut)
		}
		var first, second bytes.Buffer
		if err := db.ExportInterchange(&first); err != nil {
			t.Fatal(err)
		}
		wm := v.wm
		db.Close()
		db = openAt(t, path)
		if err := db.ExportInterchange(&second); err != nil {
			t.Fatal(err)
		}
		if first.String() != second.String() || db.vals[pk(1)].wm != wm {
			t.Fatalf("round %d: reopen after prune changed the history:\n%s\n---\n%s", round, first.String(), second.String())
		}
	}
}
