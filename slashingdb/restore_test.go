package slashingdb

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func signAtt(t *testing.T, db *DB, pk phase0.BLSPubKey, target phase0.Epoch, root byte) Verdict {
	t.Helper()
	v, err := db.CheckAndRecordAttestations([]AttestationRequest{{Pubkey: pk, SourceEpoch: target - 1, TargetEpoch: target, SigningRoot: phase0.Root{root}}})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func signBlock(t *testing.T, db *DB, pk phase0.BLSPubKey, slot phase0.Slot, root byte) Verdict {
	t.Helper()
	v, err := db.CheckAndRecordBlocks([]BlockRequest{{Pubkey: pk, Slot: slot, SigningRoot: phase0.Root{root}}})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

// TestRestoredBackup_StartupGuardRefusesReplays restores an old copy of the DB (it lacks the
// newest signings), starts as a node does (raising the start-up guard from the wall clock), and
// replays the newest messages with other roots: every one is refused by the guard. Without the
// guard the restored DB would allow them: that is the incident the guard exists for.
func TestRestoredBackup_StartupGuardRefusesReplays(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slashing.db")
	backup := filepath.Join(dir, "backup.db")
	gvr := phase0.Root{1}
	pk := phase0.BLSPubKey{9}

	db, err := Open(path, gvr)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Register([]phase0.BLSPubKey{pk}); err != nil {
		t.Fatal(err)
	}
	for e := phase0.Epoch(1); e <= 5; e++ {
		if v := signAtt(t, db, pk, e, 0xa); !v.Allowed {
			t.Fatalf("target %d: %+v", e, v)
		}
		if v := signBlock(t, db, pk, phase0.Slot(8*e), 0xa); !v.Allowed {
			t.Fatalf("slot %d: %+v", 8*e, v)
		}
	}
	db.Close()
	copyFile(t, path, backup) // the operator's backup, taken at epoch 5

	db, err = Open(path, gvr)
	if err != nil {
		t.Fatal(err)
	}
	for e := phase0.Epoch(6); e <= 10; e++ {
		signAtt(t, db, pk, e, 0xa)
		signBlock(t, db, pk, phase0.Slot(8*e), 0xa)
	}
	db.Close()

	// The control: the bare backup would sign a conflicting vote for target 8.
	control := filepath.Join(dir, "control.db")
	copyFile(t, backup, control)
	cdb, err := Open(control, gvr)
	if err != nil {
		t.Fatal(err)
	}
	if v := signAtt(t, cdb, pk, 8, 0xb); !v.Allowed {
		t.Fatalf("control: the backup without a guard refused target 8 (%+v); the test proves nothing", v)
	}
	cdb.Close()

	// The incident: the backup is restored over the live DB and the node starts at epoch 10, slot 80.
	copyFile(t, backup, path)
	db, err = Open(path, gvr)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.RaiseStartupGuard([]phase0.BLSPubKey{pk}, 10, 80); err != nil {
		t.Fatal(err)
	}
	for e := phase0.Epoch(6); e <= 10; e++ {
		if v := signAtt(t, db, pk, e, 0xb); v.Allowed || v.Rule != RuleStartupGuard {
			t.Errorf("replayed conflicting vote for target %d: %+v, want refused by the start-up guard", e, v)
		}
		if v := signBlock(t, db, pk, phase0.Slot(8*e), 0xb); v.Allowed || v.Rule != RuleStartupGuard {
			t.Errorf("replayed conflicting block at slot %d: %+v, want refused by the start-up guard", 8*e, v)
		}
	}
	// Duties after the guard go on; the guard never raised the source floor.
	v, err := db.CheckAndRecordAttestations([]AttestationRequest{{Pubkey: pk, SourceEpoch: 5, TargetEpoch: 11, SigningRoot: phase0.Root{0xc}}})
	if err != nil || !v[0].Allowed {
		t.Errorf("target 11 with source 5, below the guard epoch: %v %+v", err, v)
	}
	if v := signBlock(t, db, pk, 81, 0xc); !v.Allowed {
		t.Errorf("slot 81 after the guard: %+v", v)
	}
}
