package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

func runCreate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newCreateClusterCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCreateClusterCmd_NetworkAndDeposits(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "c")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--network", "mainnet"}, "--withdrawal-address"},
		{[]string{"--network", "goerli"}, "known networks are devnet, hoodi, mainnet, sepolia"},
		{[]string{"--network", "mainnet", "--no-deposits", "--genesis-fork-version", "0x10000000"}, "conflicts with mainnet"},
		{[]string{"--compounding"}, "--withdrawal-address"},
		{[]string{"--network", "hoodi", "--no-deposits", "--withdrawal-address", "0x1111111111111111111111111111111111111111"}, "contradict"},
		{[]string{"--network", "hoodi", "--withdrawal-address", "0x1111111111111111111111111111111111111111", "--deposit-amount-gwei", "33000000000"}, "above 32 ETH"},
		{[]string{"--quarantine-source"}, "--split-existing-keys"},
	} {
		if _, err := runCreate(t, append(c.args, "--out", out)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: output written", c.args)
		}
	}

	text, err := runCreate(t, "--network", "mainnet", "--withdrawal-address", "0x1111111111111111111111111111111111111111",
		"--compounding", "--deposit-amount-gwei", "64000000000", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	files, _ := filepath.Glob(filepath.Join(out, deposit.FilePrefix+"*.json"))
	if len(files) != 1 || !strings.Contains(text, files[0]) || !strings.Contains(text, "0x00000000219ab540356cBB839Cbe05303d7705Fa") {
		t.Fatalf("deposit file %v not reported:\n%s", files, text)
	}
	entries, err := deposit.ReadFile(files[0])
	if err != nil || len(entries) != 1 || entries[0].Verify([4]byte{}) != nil || entries[0].Amount != 64e9 {
		t.Fatalf("deposit data: %v %+v", err, entries)
	}
	l, err := lock.Load(filepath.Join(out, node.LockFileName))
	if err != nil || l.Network != "mainnet" || l.GenesisValidatorsRoot == "" {
		t.Fatalf("lock: %+v %v", l, err)
	}

	// The default stays a devnet that needs no flags (the README's local cluster).
	out2 := filepath.Join(dir, "local")
	if text, err := runCreate(t, "--out", out2); err != nil || strings.Contains(text, "Deposit data") {
		t.Fatalf("default: %v\n%s", err, text)
	}
	if l, _ := lock.Load(filepath.Join(out2, node.LockFileName)); l == nil || l.Network != "devnet" || l.GenesisForkVersion != "0x10000000" {
		t.Fatalf("default lock: %+v", l)
	}
}

func TestCreateClusterCmd_SplitExistingKeys(t *testing.T) {
	src := t.TempDir()
	var sk bls.SecretKey
	sk.SetByCSPRNG()
	ks, err := signing.EncryptKeystore(&sk, "secret", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.WriteKeystoreFile(filepath.Join(src, "keystore-0.json"), ks); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(src, "keystore-0.txt")

	// A wrong password: a clear error and no output directory.
	_ = os.WriteFile(pw, []byte("wrong\n"), 0o600)
	out := filepath.Join(t.TempDir(), "c")
	if _, err := runCreate(t, "--split-existing-keys", src, "--out", out); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("output written despite a wrong password")
	}
	if _, err := runCreate(t, "--split-existing-keys", src, "--network", "hoodi", "--withdrawal-address",
		"0x1111111111111111111111111111111111111111", "--out", out); err == nil || !strings.Contains(err.Error(), "already deposited") {
		t.Fatalf("deposit for existing keys: %v", err)
	}

	_ = os.WriteFile(pw, []byte("secret\n"), 0o600)
	text, err := runCreate(t, "--split-existing-keys", src, "--network", "hoodi", "--quarantine-source", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	l, err := lock.Load(filepath.Join(out, node.LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Validators) != 1 || l.Validators[0].GroupPubkey != "0x"+ks.Pubkey {
		t.Fatalf("group key %v, keystore %s", l.Validators, ks.Pubkey)
	}
	for i := 1; i <= 4; i++ {
		want := "dvmesh slashing import --data-dir " + filepath.Join(out, node.NodeDirName(i), "data") + " interchange.json"
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, want := range []string{"Stop the old validator client", "doppelganger check", "on by default", "No deposit data",
		node.QuarantineDirName, "wall clock"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(src, "*")); len(left) != 0 {
		t.Fatalf("not quarantined: %v", left)
	}
	if files, _ := filepath.Glob(filepath.Join(out, deposit.FilePrefix+"*")); len(files) != 0 {
		t.Fatal("deposit data written for existing keys")
	}
}

func TestCreateClusterCmd_InteropValidators(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "c")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--network", "mainnet", "--interop-validators", "0-3"}, "public network"},
		{[]string{"--network", "hoodi", "--interop-validators", "0-3"}, "public network"},
		{[]string{"--network", "sepolia", "--interop-validators", "0-3", "--no-deposits"}, "leave --withdrawal-address and --no-deposits out"},
		{[]string{"--interop-validators", "5-2"}, "ends before it starts"},
		{[]string{"--interop-validators", "x"}, "want A-B"},
		{[]string{"--interop-validators", "0-3", "--validators", "2"}, "contradicts"},
		{[]string{"--interop-validators", "0-3", "--withdrawal-address", "0x1111111111111111111111111111111111111111"}, "genesis state"},
	} {
		if _, err := runCreate(t, append(c.args, "--out", out)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: output written", c.args)
		}
	}
	text, err := runCreate(t, "--network", "devnet", "--genesis-fork-version", "0x20000089", "--interop-validators", "1-2",
		"--keystore-kdf", signing.KDFInsecure, "--fee-recipient", "0x1111111111111111111111111111111111111111", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	l, err := lock.Load(filepath.Join(out, node.LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	// Interop validators 1 and 2, in order (the published interop public keys).
	want := []string{
		"0xb89bebc699769726a318c8e9971bd3171297c61aea4a6578a7a4f94b547dcba5bac16a89108b6b6a1fe3695d1a874a0b",
		"0xa3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
	}
	if len(l.Validators) != 2 || l.Validators[0].GroupPubkey != want[0] || l.Validators[1].GroupPubkey != want[1] {
		t.Fatalf("lock validators %+v, want %v", l.Validators, want)
	}
	if l.GenesisValidatorsRoot != "" || l.GenesisForkVersion != "0x20000089" || l.Proposals == nil {
		t.Fatalf("lock: gvr %q gfv %q proposals %v", l.GenesisValidatorsRoot, l.GenesisForkVersion, l.Proposals)
	}
	if m, _ := filepath.Glob(filepath.Join(out, deposit.FilePrefix+"*")); len(m) != 0 {
		t.Fatalf("deposit data written for interop validators: %v", m)
	}
}
