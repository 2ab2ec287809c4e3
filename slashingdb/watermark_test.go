package slashingdb

import (
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func TestRaiseWatermarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slashing.db")
	db, err := Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Register([]phase0.BLSPubKey{pk(1), pk(2)}); err != nil {
		t.Fatal(err)
	}
	// Key 1 has history below and above the epoch the wall clock will give; key 2 has none.
	for _, v := range attest(t, db, att(1, 5, 6, 1), att(1, 6, 7, 1), att(1, 9, 12, 1)) {
		if !v.Allowed {
			t.Fatalf("setup: %+v", v)
		}
	}
	if v := propose(t, db, blk(1, 200, 1), blk(1, 400, 1)); !v[0].Allowed || !v[1].Allowed {
		t.Fatalf("setup: %+v", v)
	}
	if err := db.RaiseWatermarks(10, 330); err != nil {
		t.Fatal(err)
	}
	check := func(db *DB, when string) {
		t.Helper()
		for _, c := range []struct {
			req  AttestationRequest
			want Rule
		}{
			{att(2, 9, 10, 2), RuleAtOrBelowTargetWatermark}, // at the raised epoch: refused
			{att(2, 0, 3, 2), RuleAtOrBelowTargetWatermark},
			{att(1, 9, 10, 2), RuleAtOrBelowTargetWatermark},
			{att(1, 4, 11, 2), RuleBelowSourceWatermark}, // would surround the dropped (6,7): still refused
			{att(1, 9, 12, 2), RuleDoubleVote},           // the record above the watermark stayed
		} {
			if v := attest(t, db, c.req)[0]; v.Allowed || v.Rule != c.want {
				t.Errorf("%s: %+v: %+v, want %s", when, c.req, v, c.want)
			}
		}
		if v := propose(t, db, blk(2, 330, 2))[0]; v.Rule != RuleAtOrBelowSlotWatermark {
			t.Errorf("%s: block at the raised slot: %+v", when, v)
		}
		if v := propose(t, db, blk(1, 400, 2))[0]; v.Rule != RuleDoubleBlock {
			t.Errorf("%s: block above the watermark forgotten: %+v", when, v)
		}
	}
	check(db, "after raise")
	// Honest signing after the raised point goes on.
	if v := attest(t, db, att(2, 9, 11, 3), att(1, 9, 13, 3)); !v[0].Allowed || !v[1].Allowed {
		t.Fatalf("after raise: %+v", v)
	}
	if v := propose(t, db, blk(2, 331, 3))[0]; !v.Allowed {
		t.Fatalf("after raise: %+v", v)
	}
	// Persistent: the watermarks survive a restart (unlike RaiseStartupGuard).
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, testGVR)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(db, "after reopen")
	// Never lowered.
	if err := db.RaiseWatermarks(2, 10); err != nil {
		t.Fatal(err)
	}
	if v := attest(t, db, att(2, 9, 10, 2))[0]; v.Rule != RuleAtOrBelowTargetWatermark {
		t.Fatalf("watermark lowered: %+v", v)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.RaiseWatermarks(20, 700); err == nil {
		t.Fatal("raise on a closed database")
	}
}
