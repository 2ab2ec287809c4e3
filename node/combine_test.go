package node

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
)

var combineGVR = phase0.Root{0x77}

// initNodeDB registers the cluster's validators in node i's slashing DB and records one
// attestation per validator with the given target, as if the node had signed it.
func initNodeDB(t *testing.T, dir string, i int, gvr phase0.Root, target phase0.Epoch) {
	t.Helper()
	id, err := loadNode(dir, i)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, NodeDirName(i), "data")
	if err := InitSlashingDB(dataDir, gvr, id.Pubkeys()); err != nil {
		t.Fatal(err)
	}
	db, err := slashingdb.Open(filepath.Join(dataDir, SlashingDBFile), gvr)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reqs []slashingdb.AttestationRequest
	for _, pk := range id.Pubkeys() {
		reqs = append(reqs, slashingdb.AttestationRequest{Pubkey: pk, SourceEpoch: target - 1, TargetEpoch: target, SigningRoot: phase0.Root{byte(target)}})
	}
	vs, err := db.CheckAndRecordAttestations(reqs)
	if err != nil || !vs[0].Allowed {
		t.Fatalf("record: %v %+v", err, vs)
	}
}

func TestCombine_RebuildsKeysAndHistory(t *testing.T) {
	dir, l := createTestCluster(t, 2)
	for i, target := range map[int]phase0.Epoch{1: 10, 3: 11, 4: 11} {
		initNodeDB(t, dir, i, combineGVR, target)
	}
	out := filepath.Join(t.TempDir(), "combined")
	res, err := Combine(CombineOptions{ClusterDir: dir, Nodes: []string{"node1", "node3", "node4"}, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Validators != 2 || len(res.Keystores) != 2 {
		t.Fatalf("result: %+v", res)
	}
	// Each rebuilt key signs for its group key.
	msg := []byte("a message of exactly 32 bytes...")
	for v, path := range res.Keystores {
		pw, err := os.ReadFile(strings.TrimSuffix(path, ".json") + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		sk, err := signing.ReadKeystoreFile(path, strings.TrimSpace(string(pw)))
		if err != nil {
			t.Fatal(err)
		}
		gk := l.GroupPubkeys()[v]
		if err := signing.Verify(gk[:], msg, sk.SignByte(msg).Serialize()); err != nil {
			t.Fatalf("validator %d: rebuilt key does not sign for the group key: %v", v, err)
		}
	}
	// The history is the union: target 10 from node 1 and target 11 from nodes 3 and 4 (once).
	b, err := os.ReadFile(res.Interchange)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Metadata struct {
			GVR string `json:"genesis_validators_root"`
		} `json:"metadata"`
		Data []struct {
			Pubkey string `json:"pubkey"`
			Atts   []struct {
				Target string `json:"target_epoch"`
			} `json:"signed_attestations"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Data) != 2 || doc.Metadata.GVR != "0x77"+strings.Repeat("00", 31) || res.Attestations != 4 {
		t.Fatalf("interchange: %s", b)
	}
	for _, d := range doc.Data {
		if len(d.Atts) != 2 || d.Atts[0].Target == d.Atts[1].Target {
			t.Fatalf("key %s: %+v", d.Pubkey, d.Atts)
		}
	}
	// It imports into a fresh slashing DB: a validator client taking the key refuses what the cluster signed.
	dbPath := filepath.Join(t.TempDir(), "slashing.db")
	if _, err := slashingdb.ImportFile(dbPath, bytes.NewReader(b)); err != nil {
		t.Fatalf("merged interchange does not import: %v", err)
	}
	db, err := slashingdb.Open(dbPath, combineGVR)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vs, _ := db.CheckAndRecordAttestations([]slashingdb.AttestationRequest{{Pubkey: l.GroupPubkeys()[0], SourceEpoch: 10, TargetEpoch: 11, SigningRoot: phase0.Root{9}}})
	if vs[0].Allowed {
		t.Fatal("the combined history lets the key sign a double vote")
	}
	if _, err := Combine(CombineOptions{ClusterDir: dir, Nodes: []string{"node1", "node3", "node4"}, OutDir: out}); err == nil {
		t.Fatal("overwrote an existing output directory")
	}
}

func TestCombine_Refusals(t *testing.T) {
	dir, _ := createTestCluster(t, 1)
	initNodeDB(t, dir, 1, combineGVR, 5)
	initNodeDB(t, dir, 2, combineGVR, 5)
	initNodeDB(t, dir, 4, phase0.Root{0x99}, 5) // another chain
	for _, c := range []struct {
		nodes []string
		want  string
	}{
		{[]string{"node1", "node2"}, "found the key shares of 2 node(s) (node1, node2), the cluster's threshold needs 3"},
		{[]string{"node1", "node2", "node3"}, "node3 has no slashing DB"},
		{[]string{"node1", "node2", "node4"}, "cannot be merged"},
		{[]string{"node1", "node1", "node2"}, "given twice"},
		{[]string{"node1", "../x", "node2"}, "node folder names"},
		{[]string{"node1", "node2", "node9"}, "node9"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Combine(CombineOptions{ClusterDir: dir, Nodes: c.nodes, OutDir: out}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.nodes, err, c.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%v: output written", c.nodes)
		}
	}
	// A running node (its data directory locked) is refused.
	initNodeDB(t, dir, 3, combineGVR, 5)
	unlock, err := LockDataDir(filepath.Join(dir, NodeDirName(3), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := Combine(CombineOptions{ClusterDir: dir, Nodes: []string{"node1", "node2", "node3"}, OutDir: filepath.Join(t.TempDir(), "o")}); err == nil ||
		!strings.Contains(err.Error(), "stop that node") {
		t.Fatalf("running node: %v", err)
	}
}
