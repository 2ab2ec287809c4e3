package node

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/signing"
)

func createOpts(t *testing.T) CreateOptions {
	return CreateOptions{Name: "t", Nodes: 4, Threshold: 3, Validators: 1, OutDir: filepath.Join(t.TempDir(), "cluster"),
		Host: "127.0.0.1", BasePort: 4000}
}

func TestCreate_Network(t *testing.T) {
	o := createOpts(t)
	o.Network = "Mainnet"
	l, err := CreateCluster(o)
	if err != nil {
		t.Fatal(err)
	}
	if l.Network != "mainnet" || l.GenesisForkVersion != "0x00000000" ||
		l.GenesisValidatorsRoot != "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95" {
		t.Fatalf("lock: network %s, fork version %s, root %s", l.Network, l.GenesisForkVersion, l.GenesisValidatorsRoot)
	}
	// What is on disk is what was returned, and it loads.
	disk, err := lock.Load(filepath.Join(o.OutDir, NodeDirName(2), LockFileName))
	if err != nil || disk.GenesisValidatorsRoot != l.GenesisValidatorsRoot || disk.Network != "mainnet" {
		t.Fatalf("lock on disk: %+v %v", disk, err)
	}

	// A matching fork version is accepted, a conflicting one refused before anything is written.
	o = createOpts(t)
	o.Network, o.GenesisForkVersion = "hoodi", "0x10000910"
	if l, err := CreateCluster(o); err != nil || l.GenesisValidatorsRoot == "" {
		t.Fatalf("hoodi with its own fork version: %v", err)
	}
	for _, c := range []struct{ network, gfv, want string }{
		{"mainnet", "0x10000000", "conflicts with mainnet"},
		{"devnet", "", "not known in advance"},
		{"", "0x10000000", "no network"},
		{"devnet", "0x1000", "genesis fork version"},
	} {
		o := createOpts(t)
		o.Network, o.GenesisForkVersion = c.network, c.gfv
		if _, err := CreateCluster(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("network %q fork version %q: err = %v, want %q", c.network, c.gfv, err, c.want)
		}
		if _, err := os.Stat(o.OutDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("network %q: output directory left behind", c.network)
		}
	}

	// A devnet records its (canonical) fork version and no root.
	o = createOpts(t)
	o.Network, o.GenesisForkVersion = "devnet", "0x1000000A"
	if l, err := CreateCluster(o); err != nil || l.GenesisForkVersion != "0x1000000a" || l.GenesisValidatorsRoot != "" || l.Network != "devnet" {
		t.Fatalf("devnet: %+v %v", l, err)
	}
}

func TestCreate_Deposits(t *testing.T) {
	o := createOpts(t)
	o.Validators = 2
	o.Network = "hoodi"
	o.WithdrawalAddress = "0x00000000219ab540356cBB839Cbe05303d7705Fa"
	o.Compounding = true
	o.DepositAmount = 64e9
	res, err := Create(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.DepositFile == "" || filepath.Dir(res.DepositFile) != o.OutDir || len(res.Warnings) != 0 {
		t.Fatalf("result: %+v", res)
	}
	want, _ := os.ReadFile(res.DepositFile)
	entries, err := deposit.ReadFile(res.DepositFile)
	if err != nil || len(entries) != 2 {
		t.Fatalf("deposit file: %v", err)
	}
	gfv := phase0.Version{0x10, 0x00, 0x09, 0x10}
	for i, e := range entries {
		if err := e.Verify(gfv); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if "0x"+e.Pubkey != res.Lock.Validators[i].GroupPubkey {
			t.Fatalf("entry %d is for %s, lock validator %d is %s", i, e.Pubkey, i, res.Lock.Validators[i].GroupPubkey)
		}
		if e.WithdrawalCredentials != "02000000000000000000000000000000219ab540356cbb839cbe05303d7705fa" || e.Amount != 64e9 || e.NetworkName != "hoodi" {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	for i := 1; i <= o.Nodes; i++ {
		got, err := os.ReadFile(filepath.Join(o.OutDir, NodeDirName(i), filepath.Base(res.DepositFile)))
		if err != nil || string(got) != string(want) {
			t.Fatalf("node %d: deposit copy: %v", i, err)
		}
	}

	// Amount rules, checked before anything is written.
	for _, c := range []struct {
		amount              phase0.Gwei
		compounding, allow  bool
		wantErr, wantWarned bool
	}{
		{33e9, false, false, true, false},
		{16e9, false, false, true, false},
		{16e9, false, true, false, true},
		{2049e9, true, false, true, false},
	} {
		o := createOpts(t)
		o.Network, o.GenesisForkVersion = "devnet", "0x10000000"
		o.WithdrawalAddress, o.Compounding, o.AllowPartialDeposit, o.DepositAmount = "0x1111111111111111111111111111111111111111", c.compounding, c.allow, c.amount
		res, err := Create(o)
		if (err != nil) != c.wantErr || (err == nil && (len(res.Warnings) > 0) != c.wantWarned) {
			t.Errorf("amount %d compounding %v partial %v: %+v, %v", c.amount, c.compounding, c.allow, res, err)
		}
		if _, statErr := os.Stat(o.OutDir); c.wantErr && !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("amount %d: output directory left behind", c.amount)
		}
	}
	o = createOpts(t)
	o.Network, o.GenesisForkVersion, o.WithdrawalAddress = "devnet", "0x10000000", "0x1234"
	if _, err := Create(o); err == nil {
		t.Fatal("accepted a bad withdrawal address")
	}
}

// TestCreate_FailureLeavesNothing makes writing fail after the directory was created (an
// unknown KDF fails at the first keystore): nothing may stay behind.
func TestCreate_FailureLeavesNothing(t *testing.T) {
	o := createOpts(t)
	o.Network, o.GenesisForkVersion, o.KDF = "devnet", "0x10000000", "bogus"
	if _, err := Create(o); err == nil {
		t.Fatal("unknown KDF accepted")
	}
	if _, err := os.Stat(o.OutDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("half-written cluster left behind: %v", err)
	}
}

// writeSourceKeystore writes keystore-<name>.json for a fresh key, and keystore-<name>.txt with
// its password unless password is "".
func writeSourceKeystore(t *testing.T, dir, name, password string) *bls.SecretKey {
	t.Helper()
	var sk bls.SecretKey
	sk.SetByCSPRNG()
	ks, err := signing.EncryptKeystore(&sk, "pw-"+name, "source")
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.WriteKeystoreFile(filepath.Join(dir, "keystore-"+name+".json"), ks); err != nil {
		t.Fatal(err)
	}
	if password != "" {
		if err := os.WriteFile(filepath.Join(dir, "keystore-"+name+".txt"), []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &sk
}

func TestCreate_SplitExistingKeys(t *testing.T) {
	src := t.TempDir()
	a := writeSourceKeystore(t, src, "a", "pw-a")
	b := writeSourceKeystore(t, src, "b", "pw-b")
	keys, err := LoadExistingKeys(src, "")
	if err != nil {
		t.Fatal(err)
	}
	o := createOpts(t)
	o.Network, o.GenesisForkVersion, o.Validators = "devnet", "0x10000000", 0
	for _, k := range keys {
		o.ExistingKeys = append(o.ExistingKeys, k.Key)
	}
	res, err := Create(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.DepositFile != "" {
		t.Fatal("deposit data written for existing keys")
	}
	// The group keys are the source keystores' keys, in file-name order.
	for i, sk := range []*bls.SecretKey{a, b} {
		if want := "0x" + hex.EncodeToString(sk.GetPublicKey().Serialize()); res.Lock.Validators[i].GroupPubkey != want || keys[i].Pubkey != want {
			t.Fatalf("validator %d: lock %s, keystore %s", i, res.Lock.Validators[i].GroupPubkey, want)
		}
	}
	// The nodes' shares sign for the original key.
	msg := []byte("thirty-two bytes of message.....")
	partials := map[uint64][]byte{}
	for i := 1; i <= 3; i++ {
		id, err := loadNode(o.OutDir, i)
		if err != nil {
			t.Fatal(err)
		}
		partials[uint64(i)] = id.Shares[phase0.BLSPubKey(a.GetPublicKey().Serialize())].SignByte(msg).Serialize()
	}
	full, err := signing.RecoverSignature(partials, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.Verify(a.GetPublicKey().Serialize(), msg, full); err != nil {
		t.Fatalf("shares do not sign for the original key: %v", err)
	}

	qdir, err := QuarantineSource(keys, o.OutDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(src, "keystore-*")); len(left) != 0 {
		t.Fatalf("left in the source folder: %v", left)
	}
	if moved, _ := filepath.Glob(filepath.Join(qdir, "keystore-*")); len(moved) != 4 {
		t.Fatalf("quarantined: %v", moved)
	}

	// Existing keys and deposit data exclude each other; so do a key count that does not match.
	o2 := o
	o2.OutDir = filepath.Join(t.TempDir(), "c2")
	o2.WithdrawalAddress = "0x1111111111111111111111111111111111111111"
	if _, err := Create(o2); err == nil || !strings.Contains(err.Error(), "already deposited") {
		t.Fatalf("deposit for existing keys: %v", err)
	}
	o2.WithdrawalAddress, o2.Validators = "", 5
	if _, err := Create(o2); err == nil {
		t.Fatal("accepted 5 validators for 2 existing keys")
	}
}

func TestLoadExistingKeys_Refusals(t *testing.T) {
	// Wrong password: an error naming the keystore; nothing is loaded.
	src := t.TempDir()
	writeSourceKeystore(t, src, "a", "pw-a")
	writeSourceKeystore(t, src, "b", "wrong")
	if _, err := LoadExistingKeys(src, ""); err == nil || !strings.Contains(err.Error(), "keystore-b.json") ||
		!errors.Is(err, signing.ErrBadKeystore) {
		t.Fatalf("wrong password: %v", err)
	}

	// One password file for all.
	shared := t.TempDir()
	for _, n := range []string{"x", "y"} {
		var k bls.SecretKey
		k.SetByCSPRNG()
		ks, _ := signing.EncryptKeystore(&k, "same", "")
		_ = signing.WriteKeystoreFile(filepath.Join(shared, "keystore-"+n+".json"), ks)
	}
	pwFile := filepath.Join(t.TempDir(), "pw.txt")
	_ = os.WriteFile(pwFile, []byte("same\n"), 0o600)
	if keys, err := LoadExistingKeys(shared, pwFile); err != nil || len(keys) != 2 {
		t.Fatalf("shared password: %v", err)
	}
	if _, err := LoadExistingKeys(shared, ""); err == nil || !strings.Contains(err.Error(), "keystore-x.txt") {
		t.Fatalf("missing password files: %v", err)
	}

	// A running validator client's lock file.
	locked := t.TempDir()
	writeSourceKeystore(t, locked, "a", "pw-a")
	_ = os.WriteFile(filepath.Join(locked, "keystore-a.json.lock"), nil, 0o600)
	if _, err := LoadExistingKeys(locked, ""); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("lock file: %v", err)
	}

	// The same key twice.
	dup := t.TempDir()
	writeSourceKeystore(t, dup, "a", "pw-a")
	b, _ := os.ReadFile(filepath.Join(dup, "keystore-a.json"))
	_ = os.WriteFile(filepath.Join(dup, "keystore-b.json"), b, 0o600)
	_ = os.WriteFile(filepath.Join(dup, "keystore-b.txt"), []byte("pw-a"), 0o600)
	if _, err := LoadExistingKeys(dup, ""); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("duplicate: %v", err)
	}

	if _, err := LoadExistingKeys(t.TempDir(), ""); err == nil {
		t.Fatal("empty folder accepted")
	}
}
