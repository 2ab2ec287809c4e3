package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/p2p"
)

func TestGenesisForkVersion(t *testing.T) {
	for _, c := range []struct {
		network, override, want string
		ok                      bool
	}{
		{"mainnet", "", "0x00000000", true},
		{"hoodi", "", "0x10000910", true},
		{"Hoodi", "0x10000910", "0x10000910", true},
		{"sepolia", "", "0x90000069", true},
		{"devnet", "0x12345678", "0x12345678", true},
		{"devnet", "", "", false},
		{"devnet", "0x1234", "", false},
		{"hoodi", "0x00000000", "", false},
		{"nonet", "0x00000000", "", false},
	} {
		got, err := genesisForkVersion(c.network, c.override)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("genesisForkVersion(%q, %q) = %q, %v; want %q, ok=%v", c.network, c.override, got, err, c.want, c.ok)
		}
	}
}

func TestCommandsRegistered(t *testing.T) {
	names := map[string]bool{}
	for _, c := range extraCommands {
		names[c().Name()] = true
	}
	for _, want := range []string{"create-definition", "sign-definition", "create-p2p-key", "dkg"} {
		if !names[want] {
			t.Errorf("command %s is not registered", want)
		}
	}
}

func execute(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// The operators' workflow from the command line: keys, definition, signatures (in turn and by
// merging copies), and the ceremony refusing to start until every operator signed.
func TestDefinitionWorkflow(t *testing.T) {
	dir := t.TempDir()
	var keyPaths, operators []string
	for i := 1; i <= 4; i++ {
		kp := filepath.Join(dir, "key"+string(rune('0'+i)))
		if _, err := execute(t, newCreateP2PKeyCmd(), "--out", kp); err != nil {
			t.Fatal(err)
		}
		out, err := execute(t, newCreateP2PKeyCmd(), "--out", kp)
		if err != nil || !strings.Contains(out, "exists (kept)") {
			t.Fatalf("second create-p2p-key: %q, %v", out, err)
		}
		k, err := p2p.LoadKey(kp)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		keyPaths = append(keyPaths, kp)
		if i%2 == 0 {
			operators = append(operators, id.String()+"@/ip4/127.0.0.1/tcp/361"+string(rune('0'+i)))
		} else {
			operators = append(operators, "/ip4/127.0.0.1/tcp/361"+string(rune('0'+i))+"/p2p/"+id.String())
		}
	}
	defPath := filepath.Join(dir, "def.json")
	args := []string{"--name", "test", "--nodes", "4", "--threshold", "3", "--validators", "2", "--network", "hoodi",
		"--withdrawal-address", "0x" + strings.Repeat("ab", 20), "--fee-recipient", "0x" + strings.Repeat("cd", 20), "--compounding", "--out", defPath}
	for _, op := range operators {
		args = append(args, "--operator", op)
	}
	if out, err := execute(t, newCreateDefinitionCmd(), args[:len(args)-2]...); err == nil {
		t.Fatalf("3 operators for 4 nodes accepted: %s", out)
	}
	if out, err := execute(t, newCreateDefinitionCmd(), append(append([]string(nil), args...), "--threshold", "2")...); err == nil {
		t.Fatalf("threshold 2 of 4 accepted: %s", out)
	}
	if _, err := execute(t, newCreateDefinitionCmd(), args...); err != nil {
		t.Fatal(err)
	}
	if _, err := execute(t, newCreateDefinitionCmd(), args...); err == nil {
		t.Fatal("overwrote a definition")
	}
	d, err := lock.LoadDefinition(defPath)
	if err != nil {
		t.Fatal(err)
	}
	if d.GenesisForkVersion != "0x10000910" || !d.Compounding || d.Operators[1].Address != "/ip4/127.0.0.1/tcp/3612" {
		t.Fatalf("definition: %+v", d)
	}

	// The ceremony refuses a definition not every operator signed, and names who is missing.
	dkgArgs := []string{"--definition", defPath, "--p2p-key", keyPaths[0], "--data-dir", filepath.Join(dir, "node1")}
	if _, err := execute(t, newDKGCmd(), dkgArgs...); !errors.Is(err, lock.ErrBadDefinition) || !strings.Contains(err.Error(), "operator 1") {
		t.Fatalf("dkg on an unsigned definition: err = %v", err)
	}

	// Operators 1 and 2 sign in turn; 3 and 4 sign copies that are merged.
	for _, kp := range keyPaths[:2] {
		if _, err := execute(t, newSignDefinitionCmd(), "--definition", defPath, "--p2p-key", kp); err != nil {
			t.Fatal(err)
		}
	}
	var copies []string
	for i, kp := range keyPaths[2:] {
		cp := filepath.Join(dir, "copy"+string(rune('0'+i)))
		b, _ := os.ReadFile(defPath)
		if err := os.WriteFile(cp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := execute(t, newSignDefinitionCmd(), "--definition", cp, "--p2p-key", kp); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, cp)
	}
	if _, err := execute(t, newDKGCmd(), dkgArgs...); err == nil || !strings.Contains(err.Error(), "operator 3") || !strings.Contains(err.Error(), "operator 4") {
		t.Fatalf("dkg with operators 3 and 4 unsigned: err = %v", err)
	}
	out, err := execute(t, newSignDefinitionCmd(), "--definition", defPath, "--merge", strings.Join(copies, ","))
	if err != nil || !strings.Contains(out, "Every operator signed") {
		t.Fatalf("merge: %q, %v", out, err)
	}
	d, err = lock.LoadDefinition(defPath)
	if err != nil || d.VerifyAllSigned() != nil {
		t.Fatalf("merged definition: %v", err)
	}

	// A stranger's key cannot sign.
	stranger := filepath.Join(dir, "stranger")
	if _, err := execute(t, newCreateP2PKeyCmd(), "--out", stranger); err != nil {
		t.Fatal(err)
	}
	if _, err := execute(t, newSignDefinitionCmd(), "--definition", defPath, "--p2p-key", stranger); err == nil || !strings.Contains(err.Error(), "not an operator") {
		t.Fatalf("stranger signs: err = %v", err)
	}

	// An edited definition is refused, by signing and by the ceremony.
	b, _ := os.ReadFile(defPath)
	edited := strings.Replace(string(b), `"num_validators": 2`, `"num_validators": 3`, 1)
	if edited == string(b) {
		t.Fatal("test did not edit the definition")
	}
	if err := os.WriteFile(defPath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := execute(t, newSignDefinitionCmd(), "--definition", defPath, "--p2p-key", keyPaths[0]); !errors.Is(err, lock.ErrBadDefinition) {
		t.Fatalf("signing an edited definition: err = %v", err)
	}
	if _, err := execute(t, newDKGCmd(), dkgArgs...); !errors.Is(err, lock.ErrBadDefinition) {
		t.Fatalf("dkg on an edited definition: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused ceremony wrote its node folder: %v", err)
	}
}
