package slashingdb

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// conformanceDir finds the EIP-3076 interchange tests: $DVMESH_EIP3076_TESTS, or
// shared/eip3076/tests beside the repository (the package dir is <repo>/slashingdb).
func conformanceDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("DVMESH_EIP3076_TESTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "eip3076", "tests")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("EIP-3076 conformance tests not found at %s (set DVMESH_EIP3076_TESTS): %v", dir, err)
	}
	return dir
}

type conformanceFile struct {
	Name  string `json:"name"`
	GVR   string `json:"genesis_validators_root"`
	Steps []struct {
		ShouldSucceed         bool            `json:"should_succeed"`
		ContainsSlashableData bool            `json:"contains_slashable_data"`
		Interchange           json.RawMessage `json:"interchange"`
		Blocks                []struct {
			Pubkey                string `json:"pubkey"`
			Slot                  string `json:"slot"`
			SigningRoot           string `json:"signing_root"`
			ShouldSucceedComplete bool   `json:"should_succeed_complete"`
		} `json:"blocks"`
		Attestations []struct {
			Pubkey                string `json:"pubkey"`
			SourceEpoch           string `json:"source_epoch"`
			TargetEpoch           string `json:"target_epoch"`
			SigningRoot           string `json:"signing_root"`
			ShouldSucceedComplete bool   `json:"should_succeed_complete"`
		} `json:"attestations"`
	} `json:"steps"`
}

func mustPubkey(t testing.TB, s string) phase0.BLSPubKey {
	t.Helper()
	b, err := parseHex(s, 48)
	if err != nil {
		t.Fatal(err)
	}
	var pk phase0.BLSPubKey
	copy(pk[:], b)
	return pk
}

func mustRoot(t testing.TB, s string) phase0.Root {
	t.Helper()
	r, err := parseHex32(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustUint(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := parseUint(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConformance runs every upstream EIP-3076 interchange test against the
// complete-strategy column (should_succeed_complete).
func TestConformance(t *testing.T) {
	dir := conformanceDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no EIP-3076 conformance tests in %s", dir)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var tc conformanceFile
			if err := json.Unmarshal(raw, &tc); err != nil {
				t.Fatal(err)
			}
			db := openEmptyTestDB(t, mustRoot(t, tc.GVR))
			// The checks may name keys that no interchange contains: register every
			// key first, as `dvmesh slashing init` would for a fresh key.
			var keys []phase0.BLSPubKey
			for _, step := range tc.Steps {
				for _, b := range step.Blocks {
					keys = append(keys, mustPubkey(t, b.Pubkey))
				}
				for _, a := range step.Attestations {
					keys = append(keys, mustPubkey(t, a.Pubkey))
				}
			}
			if err := db.Register(keys); err != nil {
				t.Fatal(err)
			}
			for si, step := range tc.Steps {
				err := db.ImportInterchange(bytes.NewReader(step.Interchange))
				if !step.ShouldSucceed {
					if err == nil {
						t.Fatalf("step %d: import succeeded, want failure", si)
					}
					continue
				}
				if err != nil {
					if step.ContainsSlashableData {
						t.Logf("step %d: import of slashable data refused (allowed): %v; skipping the rest", si, err)
						return
					}
					t.Fatalf("step %d: import: %v", si, err)
				}
				for bi, b := range step.Blocks {
					req := BlockRequest{Pubkey: mustPubkey(t, b.Pubkey), Slot: phase0.Slot(mustUint(t, b.Slot)), SigningRoot: mustRoot(t, b.SigningRoot)}
					vs, err := db.CheckAndRecordBlocks([]BlockRequest{req})
					if err != nil {
						t.Fatalf("step %d block %d: %v", si, bi, err)
					}
					if vs[0].Allowed != b.ShouldSucceedComplete {
						t.Errorf("step %d block %d (slot %d): allowed=%v want %v (%s: %s)", si, bi, req.Slot, vs[0].Allowed, b.ShouldSucceedComplete, vs[0].Rule, vs[0].Detail)
					}
				}
				for ai, a := range step.Attestations {
					req := AttestationRequest{
						Pubkey:      mustPubkey(t, a.Pubkey),
						SourceEpoch: phase0.Epoch(mustUint(t, a.SourceEpoch)),
						TargetEpoch: phase0.Epoch(mustUint(t, a.TargetEpoch)),
						SigningRoot: mustRoot(t, a.SigningRoot),
					}
					vs, err := db.CheckAndRecordAttestations([]AttestationRequest{req})
					if err != nil {
						t.Fatalf("step %d attestation %d: %v", si, ai, err)
					}
					if vs[0].Allowed != a.ShouldSucceedComplete {
						t.Errorf("step %d attestation %d (%d->%d): allowed=%v want %v (%s: %s)", si, ai, req.SourceEpoch, req.TargetEpoch, vs[0].Allowed, a.ShouldSucceedComplete, vs[0].Rule, vs[0].Detail)
					}
				}
			}
		})
	}
}
