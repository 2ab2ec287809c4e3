package slashingdb

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// impAtt and impBlock describe an imported record; root < 0 means no signing_root.
type impAtt struct {
	key            byte
	source, target uint64
	root           int
}

type impBlock struct {
	key  byte
	slot uint64
	root int
}

func rootString(r int) *string {
	if r < 0 {
		return nil
	}
	rt := root(byte(r))
	s := "0x" + hex.EncodeToString(rt[:])
	return &s
}

// interchangeJSON builds a version-5 interchange for gvr, one data entry per record.
func interchangeJSON(t testing.TB, gvr phase0.Root, atts []impAtt, blocks []impBlock) []byte {
	t.Helper()
	doc := interchangeDoc{Metadata: &interchangeMeta{Version: "5", GVR: "0x" + hex.EncodeToString(gvr[:])}}
	for _, a := range atts {
		p := pk(a.key)
		doc.Data = append(doc.Data, interchangeRecords{
			Pubkey: "0x" + hex.EncodeToString(p[:]),
			SignedAttestations: []interchangeAttestation{{
				SourceEpoch: strconv.FormatUint(a.source, 10), TargetEpoch: strconv.FormatUint(a.target, 10), SigningRoot: rootString(a.root),
			}},
		})
	}
	for _, b := range blocks {
		p := pk(b.key)
		doc.Data = append(doc.Data, interchangeRecords{
			Pubkey:       "0x" + hex.EncodeToString(p[:]),
			SignedBlocks: []interchangeBlock{{Slot: strconv.FormatUint(b.slot, 10), SigningRoot: rootString(b.root)}},
		})
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type guardAt struct {
	epoch, slot uint64
}

// TestRules has one case per rule, each with its own history.
func TestRules(t *testing.T) {
	tests := []struct {
		name      string
		impAtts   []impAtt
		impBlocks []impBlock
		guard     *guardAt
		signed    []AttestationRequest // recorded first, must be allowed
		proposed  []BlockRequest       // recorded first, must be allowed
		att       *AttestationRequest
		block     *BlockRequest
		want      Rule // "" = allowed
	}{
		{name: "fresh attestation allowed", att: ptr(att(1, 0, 0, 1)), want: ""},
		{name: "identical attestation re-sign allowed", signed: []AttestationRequest{att(1, 2, 3, 7)}, att: ptr(att(1, 2, 3, 7)), want: ""},
		{name: "zero root recorded matches itself", signed: []AttestationRequest{att(1, 2, 3, 0)}, att: ptr(att(1, 2, 3, 0)), want: ""},
		{name: "double vote other root", signed: []AttestationRequest{att(1, 2, 3, 7)}, att: ptr(att(1, 2, 3, 8)), want: RuleDoubleVote},
		{name: "double vote other source", signed: []AttestationRequest{att(1, 2, 3, 7)}, att: ptr(att(1, 1, 3, 7)), want: RuleDoubleVote},
		{name: "imported root-less never matches", impAtts: []impAtt{{1, 2, 3, -1}}, att: ptr(att(1, 2, 3, 0)), want: RuleDoubleVote},
		{name: "imported zero root matches", impAtts: []impAtt{{1, 2, 3, 0}}, att: ptr(att(1, 2, 3, 0)), want: ""},
		{name: "imported root matches after merge of identical", impAtts: []impAtt{{1, 2, 3, 5}, {1, 2, 3, 5}}, att: ptr(att(1, 2, 3, 5)), want: ""},
		{name: "imported conflicting records never match", impAtts: []impAtt{{1, 2, 3, 5}, {1, 2, 3, 6}}, att: ptr(att(1, 2, 3, 5)), want: RuleDoubleVote},
		{name: "new surrounds stored", signed: []AttestationRequest{att(1, 3, 4, 1)}, att: ptr(att(1, 2, 5, 2)), want: RuleSurrounding},
		{name: "new surrounded by stored", signed: []AttestationRequest{att(1, 2, 5, 1)}, att: ptr(att(1, 3, 4, 2)), want: RuleSurrounded},
		{name: "surround with shared source is not surround", signed: []AttestationRequest{att(1, 2, 5, 1)}, att: ptr(att(1, 2, 4, 2)), want: ""},
		{name: "surround of other validator ignored", signed: []AttestationRequest{att(2, 2, 5, 1)}, att: ptr(att(1, 3, 4, 2)), want: ""},
		// An inverted record is minified to (5,5) with watermarks (5,5).
		{name: "surrounds imported inverted record", impAtts: []impAtt{{1, 5, 2, -1}}, att: ptr(att(1, 3, 4, 1)), want: RuleBelowSourceWatermark},
		{name: "source after target", att: ptr(att(1, 5, 4, 1)), want: RuleSourceAfterTarget},
		{name: "below source watermark", impAtts: []impAtt{{1, 10, 11, -1}}, att: ptr(att(1, 9, 10, 1)), want: RuleBelowSourceWatermark},
		{name: "at target watermark", impAtts: []impAtt{{1, 10, 12, -1}}, att: ptr(att(1, 10, 11, 1)), want: RuleAtOrBelowTargetWatermark},
		{name: "above watermarks allowed", impAtts: []impAtt{{1, 10, 12, -1}}, att: ptr(att(1, 10, 13, 1)), want: ""},
		{name: "signed history sets no watermark", signed: []AttestationRequest{att(1, 10, 12, 1)}, att: ptr(att(1, 3, 4, 1)), want: ""},
		{name: "attestation start-up guard", guard: &guardAt{20, 0}, att: ptr(att(1, 19, 20, 1)), want: RuleStartupGuard},
		{name: "attestation above start-up guard", guard: &guardAt{20, 0}, att: ptr(att(1, 19, 21, 1)), want: ""},
		{name: "attestation guard allows identical re-sign", signed: []AttestationRequest{att(1, 19, 20, 1)}, guard: &guardAt{20, 0}, att: ptr(att(1, 19, 20, 1)), want: ""},
		{name: "attestation guard refuses other root", signed: []AttestationRequest{att(1, 18, 19, 1)}, guard: &guardAt{20, 0}, att: ptr(att(1, 18, 20, 1)), want: RuleStartupGuard},

		{name: "fresh block allowed", block: ptr(blk(1, 0, 1)), want: ""},
		{name: "identical block re-sign allowed", proposed: []BlockRequest{blk(1, 5, 3)}, block: ptr(blk(1, 5, 3)), want: ""},
		{name: "zero-root block matches itself", proposed: []BlockRequest{blk(1, 5, 0)}, block: ptr(blk(1, 5, 0)), want: ""},
		{name: "double block", proposed: []BlockRequest{blk(1, 5, 3)}, block: ptr(blk(1, 5, 4)), want: RuleDoubleBlock},
		{name: "imported root-less block never matches", impBlocks: []impBlock{{1, 5, -1}}, block: ptr(blk(1, 5, 0)), want: RuleDoubleBlock},
		{name: "imported block root matches", impBlocks: []impBlock{{1, 5, 9}}, block: ptr(blk(1, 5, 9)), want: ""},
		{name: "below slot watermark", impBlocks: []impBlock{{1, 5, -1}}, block: ptr(blk(1, 4, 1)), want: RuleAtOrBelowSlotWatermark},
		{name: "gap above slot watermark allowed", impBlocks: []impBlock{{1, 5, -1}, {1, 9, -1}}, block: ptr(blk(1, 7, 1)), want: ""},
		{name: "older block after signing allowed", proposed: []BlockRequest{blk(1, 9, 1)}, block: ptr(blk(1, 7, 1)), want: ""},
		{name: "block start-up guard", guard: &guardAt{0, 64}, block: ptr(blk(1, 64, 1)), want: RuleStartupGuard},
		{name: "block above start-up guard", guard: &guardAt{0, 64}, block: ptr(blk(1, 65, 1)), want: ""},
		{name: "block guard allows identical re-sign", proposed: []BlockRequest{blk(1, 64, 1)}, guard: &guardAt{0, 64}, block: ptr(blk(1, 64, 1)), want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTestDB(t, testGVR)
			if tc.impAtts != nil || tc.impBlocks != nil {
				if err := db.ImportInterchange(bytes.NewReader(interchangeJSON(t, testGVR, tc.impAtts, tc.impBlocks))); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range attest(t, db, tc.signed...) {
				if !v.Allowed {
					t.Fatalf("history refused: %+v", v)
				}
			}
			for _, v := range propose(t, db, tc.proposed...) {
				if !v.Allowed {
					t.Fatalf("history refused: %+v", v)
				}
			}
			if tc.guard != nil {
				if err := db.RaiseStartupGuard([]phase0.BLSPubKey{pk(1)}, phase0.Epoch(tc.guard.epoch), phase0.Slot(tc.guard.slot)); err != nil {
					t.Fatal(err)
				}
			}
			var v Verdict
			if tc.att != nil {
				v = attest(t, db, *tc.att)[0]
			} else {
				v = propose(t, db, *tc.block)[0]
			}
			if v.Allowed != (tc.want == "") || v.Rule != tc.want {
				t.Fatalf("verdict %+v, want rule %q", v, tc.want)
			}
			if !v.Allowed && v.Detail == "" {
				t.Fatal("refusal without detail")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestBatchSemantics: requests in one call are checked against each other and a
// refusal does not block the others.
func TestBatchSemantics(t *testing.T) {
	db := openTestDB(t, testGVR)
	vs := attest(t, db,
		att(1, 1, 2, 1), // allowed
		att(1, 1, 2, 2), // double vote against the first
		att(2, 1, 2, 3), // other key: allowed
		att(1, 0, 3, 4), // surrounds the first
		att(1, 5, 4, 5), // source after target
		att(1, 1, 2, 1), // identical re-sign in the same batch
		att(1, 2, 3, 6), // allowed
	)
	want := []Rule{"", RuleDoubleVote, "", RuleSurrounding, RuleSourceAfterTarget, "", ""}
	for i, v := range vs {
		if v.Rule != want[i] || v.Allowed != (want[i] == "") {
			t.Errorf("request %d: %+v, want %q", i, v, want[i])
		}
	}
	bs := propose(t, db, blk(1, 3, 1), blk(1, 3, 2), blk(2, 3, 2), blk(1, 3, 1))
	wantB := []Rule{"", RuleDoubleBlock, "", ""}
	for i, v := range bs {
		if v.Rule != wantB[i] || v.Allowed != (wantB[i] == "") {
			t.Errorf("block %d: %+v, want %q", i, v, wantB[i])
		}
	}
	if vs, err := db.CheckAndRecordAttestations(nil); err != nil || len(vs) != 0 {
		t.Fatalf("empty batch: %v %v", vs, err)
	}
}

// TestStartupGuardNeverLowers: a lower guard does not lower the stored one.
func TestStartupGuardNeverLowers(t *testing.T) {
	db := openTestDB(t, testGVR)
	keys := []phase0.BLSPubKey{pk(1), pk(2)}
	if err := db.RaiseStartupGuard(keys, 10, 320); err != nil {
		t.Fatal(err)
	}
	if err := db.RaiseStartupGuard(keys, 5, 100); err != nil {
		t.Fatal(err)
	}
	if v := attest(t, db, att(2, 9, 10, 1))[0]; v.Rule != RuleStartupGuard {
		t.Fatalf("target 10 after lower guard: %+v", v)
	}
	if v := propose(t, db, blk(2, 320, 1))[0]; v.Rule != RuleStartupGuard {
		t.Fatalf("slot 320 after lower guard: %+v", v)
	}
	if v := attest(t, db, att(2, 10, 11, 1))[0]; !v.Allowed {
		t.Fatalf("target 11: %+v", v)
	}
	if v := attest(t, db, att(3, 0, 1, 1))[0]; !v.Allowed {
		t.Fatalf("unguarded key: %+v", v)
	}
}
