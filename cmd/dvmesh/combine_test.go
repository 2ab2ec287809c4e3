package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

func runCombine(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newCombineCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCombineCmd(t *testing.T) {
	found := false
	for _, c := range extraCommands {
		found = found || c().Name() == "combine"
	}
	if !found {
		t.Fatal("combine is not registered")
	}
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster")
	if _, err := runCreate(t, "--out", cluster); err != nil {
		t.Fatal(err)
	}
	l, err := lock.Load(filepath.Join(cluster, node.LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 4} {
		if err := node.InitSlashingDB(filepath.Join(cluster, node.NodeDirName(i), "data"), phase0.Root{1}, l.GroupPubkeys()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runCombine(t, "--out", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Fatalf("no --cluster: %v", err)
	}
	if _, err := runCombine(t, "--cluster", cluster, "--nodes", "node1,node2", "--out", filepath.Join(dir, "x")); err == nil ||
		!strings.Contains(err.Error(), "needs 3") {
		t.Fatalf("two nodes: %v", err)
	}
	// Every node folder by default: node3 has no DB, so it is refused.
	if _, err := runCombine(t, "--cluster", cluster, "--out", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), "no slashing DB") {
		t.Fatalf("all nodes with one DB missing: %v", err)
	}
	out := filepath.Join(dir, "keys")
	text, err := runCombine(t, "--cluster", cluster, "--nodes", "node1,node2,node4", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, want := range []string{"WARNING", "WHOLE validator keys", "Never run them anywhere a validator", node.InterchangeFileName} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	pw, _ := os.ReadFile(filepath.Join(out, "keystore-0.txt"))
	sk, err := signing.ReadKeystoreFile(filepath.Join(out, "keystore-0.json"), strings.TrimSpace(string(pw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sk.GetPublicKey().Serialize(), l.GroupPubkeys()[0][:]) {
		t.Fatal("rebuilt key is not the group key")
	}
	// The output round-trips into create-cluster --split-existing-keys: same group key.
	again := filepath.Join(dir, "again")
	_ = os.Remove(filepath.Join(out, node.InterchangeFileName))
	if text, err := runCreate(t, "--split-existing-keys", out, "--out", again); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	l2, err := lock.Load(filepath.Join(again, node.LockFileName))
	if err != nil || l2.Validators[0].GroupPubkey != l.Validators[0].GroupPubkey {
		t.Fatalf("re-split: %v", err)
	}
}
