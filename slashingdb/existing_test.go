package slashingdb

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func TestOpenExisting_UsesStoredRootAndLatestTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	gvr := phase0.Root{7}
	pk := phase0.BLSPubKey{1}
	db, err := Open(path, gvr)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Register([]phase0.BLSPubKey{pk}); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.LatestAttestationTarget(pk); ok {
		t.Fatal("latest target of an empty history")
	}
	for _, tgt := range []phase0.Epoch{3, 5} {
		if v, err := db.CheckAndRecordAttestations([]AttestationRequest{{Pubkey: pk, SourceEpoch: 2, TargetEpoch: tgt}}); err != nil || !v[0].Allowed {
			t.Fatalf("record target %d: %v %+v", tgt, err, v)
		}
	}
	if got, ok := db.LatestAttestationTarget(pk); !ok || got != 5 {
		t.Fatalf("latest target %d %v, want 5", got, ok)
	}
	// While it is open, OpenExisting is refused with ErrLocked.
	if _, err := OpenExisting(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("open while in use: %v, want ErrLocked", err)
	}
	db.Close()
	again, err := OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.GenesisValidatorsRoot() != gvr {
		t.Fatalf("root %x", again.GenesisValidatorsRoot())
	}
	if _, err := OpenExisting(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("missing file opened")
	}
}
