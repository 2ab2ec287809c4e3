package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/slashingdb"
)

// writeInterchange writes an interchange with one key that attested (100, 101).
func writeInterchange(t *testing.T, gvr phase0.Root, key phase0.BLSPubKey) string {
	t.Helper()
	doc := fmt.Sprintf(`{"metadata":{"interchange_format_version":"5","genesis_validators_root":"%#x"},
"data":[{"pubkey":"%#x","signed_blocks":[{"slot":"3000"}],"signed_attestations":[{"source_epoch":"100","target_epoch":"101"}]}]}`, gvr[:], key[:])
	path := filepath.Join(t.TempDir(), "interchange.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSlashingImport_RaisesWatermarksFromWallClock: after an import nothing at or below the
// current epoch (target) or slot is signed, and the bound is in the DB, not only in memory.
func TestSlashingImport_RaisesWatermarksFromWallClock(t *testing.T) {
	key := phase0.BLSPubKey{0xb0, 1}
	mainnet, _ := network.ByName(network.Mainnet)
	slot0, epoch0, _ := mainnet.WallClock(time.Now())
	dataDir := filepath.Join(t.TempDir(), "data")
	out, err := runCmd(t, "import", "--data-dir", dataDir, writeInterchange(t, mainnet.GenesisValidatorsRoot, key))
	if err != nil || !strings.Contains(out, "Raised the watermarks from the wall clock") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	expectRaised(t, dataDir, key, epoch0, slot0)

	// A chain dvmesh does not know: raised only with its clock given.
	gvr := phase0.Root{0xee}
	other := filepath.Join(t.TempDir(), "data")
	if out, err := runCmd(t, "import", "--data-dir", other, writeInterchange(t, gvr, key)); err != nil || !strings.Contains(out, "not raised") {
		t.Fatalf("unknown chain: %v\n%s", err, out)
	}
	genesis := time.Now().Add(-1000 * time.Second)
	if out, err := runCmd(t, "import", "--data-dir", other, "--genesis-time", fmt.Sprint(genesis.Unix()), "--slot-duration", "1s",
		"--slots-per-epoch", "4", writeInterchange(t, gvr, key)); err != nil || !strings.Contains(out, "Raised") {
		t.Fatalf("unknown chain with its clock: %v\n%s", err, out)
	}
	expectRaised(t, other, key, 250, 1000)

	if _, err := runCmd(t, "import", "--data-dir", filepath.Join(t.TempDir(), "d"), "--genesis-time", "1600000000",
		writeInterchange(t, mainnet.GenesisValidatorsRoot, key)); err == nil || !strings.Contains(err.Error(), "contradicts") {
		t.Fatalf("a wrong genesis time for mainnet: %v", err)
	}
}

func expectRaised(t *testing.T, dataDir string, key phase0.BLSPubKey, epoch phase0.Epoch, slot phase0.Slot) {
	t.Helper()
	db, err := slashingdb.OpenExisting(filepath.Join(dataDir, node.SlashingDBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vs, err := db.CheckAndRecordAttestations([]slashingdb.AttestationRequest{
		{Pubkey: key, SourceEpoch: epoch, TargetEpoch: epoch},
		{Pubkey: key, SourceEpoch: epoch, TargetEpoch: epoch + 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Rule != slashingdb.RuleAtOrBelowTargetWatermark || !vs[1].Allowed {
		t.Fatalf("attestations at epoch %d / %d: %+v", epoch, epoch+5, vs)
	}
	// The interchange's block at slot 3000 stays a bound of its own.
	above := max(slot, 3000) + 100
	bs, err := db.CheckAndRecordBlocks([]slashingdb.BlockRequest{{Pubkey: key, Slot: slot}, {Pubkey: key, Slot: above}})
	if err != nil {
		t.Fatal(err)
	}
	if bs[0].Rule != slashingdb.RuleAtOrBelowSlotWatermark || !bs[1].Allowed {
		t.Fatalf("blocks at slot %d / %d: %+v", slot, above, bs)
	}
}
