package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvmesh/dvmesh/node"
)

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newSlashingCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestSlashingCommands(t *testing.T) {
	dir := t.TempDir()
	l, err := node.CreateCluster(node.CreateOptions{Name: "t", Nodes: 4, Threshold: 3, Validators: 2, OutDir: filepath.Join(dir, "cluster"),
		Host: "127.0.0.1", BasePort: 5000, Network: "simnet", GenesisForkVersion: "0x10000000"})
	if err != nil {
		t.Fatal(err)
	}
	lockFile := filepath.Join(dir, "cluster", node.LockFileName)
	dataDir := filepath.Join(dir, "data")
	gvr := "0x" + strings.Repeat("ab", 32)

	if _, err := runCmd(t, "init", "--data-dir", dataDir, "--lock-file", lockFile, "--genesis-validators-root", "0x12"); err == nil {
		t.Fatal("init accepted a short genesis validators root")
	}
	if out, err := runCmd(t, "init", "--data-dir", dataDir, "--lock-file", lockFile, "--genesis-validators-root", gvr); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	exported := filepath.Join(dir, "export.json")
	if out, err := runCmd(t, "export", "--data-dir", dataDir, exported); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	var doc struct {
		Metadata struct {
			GVR string `json:"genesis_validators_root"`
		} `json:"metadata"`
		Data []struct {
			Pubkey string `json:"pubkey"`
		} `json:"data"`
	}
	b, _ := os.ReadFile(exported)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("export is not JSON: %v", err)
	}
	if doc.Metadata.GVR != gvr || len(doc.Data) != len(l.Validators) {
		t.Fatalf("export: %s", b)
	}
	// Round trip into a new node's data directory.
	other := filepath.Join(dir, "other")
	if out, err := runCmd(t, "import", "--data-dir", other, exported); err != nil || !strings.Contains(out, "2 validators") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	// Another chain's interchange is refused.
	bad := filepath.Join(dir, "other-chain.json")
	os.WriteFile(bad, bytes.ReplaceAll(b, []byte(gvr[2:]), []byte(strings.Repeat("cd", 32))), 0o600)
	if _, err := runCmd(t, "import", "--data-dir", other, bad); err == nil {
		t.Fatal("imported an interchange of another chain")
	}
	// While a node runs on the data directory, export refuses clearly.
	unlock, err := node.LockDataDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := runCmd(t, "export", "--data-dir", dataDir); err == nil || !strings.Contains(err.Error(), "stop the node") {
		t.Fatalf("export while running: %v", err)
	}
}
