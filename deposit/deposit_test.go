package deposit

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/signing"
)

// holesky is the genesis fork version of the test vectors' network.
var holesky = phase0.Version{0x01, 0x01, 0x70, 0x00}

// The vectors are the example deposit-data file of ethstaker-deposit-cli's documentation
// (ethstaker/ethstaker-deposit-cli, deposit_data_file.html, "Example" section, commit
// 6d0b9e8e7def89184800275e9b5452257c85d980), copied byte for byte: two Holesky deposits of
// 32 ETH with BLS (0x00) withdrawal credentials, made by deposit-cli 2.7.0.
func TestVerify_EthstakerVectors(t *testing.T) {
	entries, err := ReadFile("testdata/ethstaker-docs-holesky.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	for i, e := range entries {
		if err := e.Verify(holesky); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		// Our code reproduces both roots from the content.
		pk, creds, sig := decode(t, e.Pubkey, 48), decode(t, e.WithdrawalCredentials, 32), decode(t, e.Signature, 96)
		msgRoot, dataRoot, err := roots(phase0.BLSPubKey(pk), phase0.Root(creds), phase0.Gwei(e.Amount), phase0.BLSSignature(sig))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(msgRoot[:]) != e.DepositMessageRoot || hex.EncodeToString(dataRoot[:]) != e.DepositDataRoot {
			t.Fatalf("entry %d: roots %x %x, file has %s %s", i, msgRoot, dataRoot, e.DepositMessageRoot, e.DepositDataRoot)
		}
		// New refuses the BLS credentials: dvmesh only makes 0x01/0x02 deposits.
		if _, err := New(phase0.BLSPubKey(pk), phase0.Root(creds), phase0.Gwei(e.Amount), phase0.BLSSignature(sig), holesky, "holesky"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("entry %d: New accepted 0x00 credentials: %v", i, err)
		}
	}

	// Every field matters.
	e := *entries[0]
	for name, mutate := range map[string]func(d *Data){
		"signature":            func(d *Data) { d.Signature = entries[1].Signature },
		"amount":               func(d *Data) { d.Amount-- },
		"credentials":          func(d *Data) { d.WithdrawalCredentials = entries[1].WithdrawalCredentials },
		"deposit_message_root": func(d *Data) { d.DepositMessageRoot = entries[1].DepositMessageRoot },
		"deposit_data_root":    func(d *Data) { d.DepositDataRoot = entries[1].DepositDataRoot },
		"0x prefix":            func(d *Data) { d.Pubkey = "0x" + d.Pubkey },
	} {
		d := e
		mutate(&d)
		if err := d.Verify(holesky); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s changed: Verify = %v", name, err)
		}
	}
	if err := e.Verify(phase0.Version{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "fork_version") {
		t.Errorf("wrong network accepted: %v", err)
	}
}

func decode(t *testing.T, s string, n int) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		t.Fatalf("bad hex %q", s)
	}
	return b
}

func TestWithdrawalCredentials(t *testing.T) {
	addr, err := ParseAddress("0x00000000219ab540356cBB839Cbe05303d7705Fa")
	if err != nil {
		t.Fatal(err)
	}
	if got := WithdrawalCredentials(addr, false); hex.EncodeToString(got[:]) != "01000000000000000000000000000000219ab540356cbb839cbe05303d7705fa" {
		t.Errorf("0x01: %x", got)
	}
	if got := WithdrawalCredentials(addr, true); hex.EncodeToString(got[:]) != "02000000000000000000000000000000219ab540356cbb839cbe05303d7705fa" {
		t.Errorf("0x02: %x", got)
	}
	for _, bad := range []string{"", "0x12", "00000000219ab540356cBB839Cbe05303d7705Fa", "0x00000000219ab540356cBB839Cbe05303d7705Fz",
		"0x0000000000000000000000000000000000000000"} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func TestCheckAmount(t *testing.T) {
	const eth = phase0.Gwei(1e9)
	for _, c := range []struct {
		amount        phase0.Gwei
		compounding   bool
		allowPartial  bool
		wantErr, warn bool
	}{
		{32 * eth, false, false, false, false},
		{32 * eth, true, false, false, false},
		{32*eth + 1, false, false, true, false}, // 0x01: the excess is swept back
		{33 * eth, false, true, true, false},    // allowPartial does not allow too much
		{2048 * eth, true, false, false, false},
		{100 * eth, true, false, false, false},
		{2048*eth + 1, true, false, true, false},
		{31 * eth, false, false, true, false},
		{31 * eth, true, false, true, false},
		{31 * eth, false, true, false, true},
		{1 * eth, true, true, false, true},
		{eth - 1, false, true, true, false}, // below the contract's minimum
		{0, true, true, true, false},
	} {
		warn, err := CheckAmount(c.amount, c.compounding, c.allowPartial)
		if (err != nil) != c.wantErr || (warn != "") != c.warn {
			t.Errorf("CheckAmount(%d, compounding=%v, partial=%v) = %q, %v", c.amount, c.compounding, c.allowPartial, warn, err)
		}
	}
}

// TestNew_Threshold signs a deposit with 3 of 4 shares of a key, combines the partials and has
// New verify the result against the group key; a wrong partial makes New refuse.
func TestNew_Threshold(t *testing.T) {
	var secret bls.SecretKey
	secret.SetByCSPRNG()
	shares, err := signing.Split(&secret, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	pubkey := phase0.BLSPubKey(secret.GetPublicKey().Serialize())
	addr, _ := ParseAddress("0x1111111111111111111111111111111111111111")
	creds := WithdrawalCredentials(addr, true)
	gfv := phase0.Version{0x10, 0x00, 0x09, 0x10}
	root, err := SigningRoot(pubkey, creds, ActivationAmount, gfv)
	if err != nil {
		t.Fatal(err)
	}
	partials := map[uint64][]byte{}
	for _, idx := range []uint64{1, 3, 4} {
		partials[idx] = shares[idx-1].SignByte(root[:]).Serialize()
	}
	full, err := signing.RecoverSignature(partials, 3)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(pubkey, creds, ActivationAmount, phase0.BLSSignature(full), gfv, "hoodi")
	if err != nil {
		t.Fatalf("New refused a correct threshold signature: %v", err)
	}
	if err := d.Verify(gfv); err != nil {
		t.Fatalf("entry from New does not verify: %v", err)
	}
	if d.Amount != 32e9 || d.ForkVersion != "10000910" || d.NetworkName != "hoodi" || d.WithdrawalCredentials[:2] != "02" ||
		d.DepositCLIVersion == "" || strings.HasPrefix(d.Pubkey, "0x") {
		t.Fatalf("entry: %+v", d)
	}

	// Share 2's partial presented as share 3's: the interpolation is wrong.
	wrong := map[uint64][]byte{1: partials[1], 3: shares[1].SignByte(root[:]).Serialize(), 4: partials[4]}
	bad, err := signing.RecoverSignature(wrong, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(pubkey, creds, ActivationAmount, phase0.BLSSignature(bad), gfv, "hoodi"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New accepted a signature from a wrong partial: %v", err)
	}
	// A correct signature for another amount or network is refused too.
	if _, err := New(pubkey, creds, 2*ActivationAmount, phase0.BLSSignature(full), gfv, "hoodi"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New accepted the signature for another amount: %v", err)
	}
	if _, err := New(pubkey, creds, ActivationAmount, phase0.BLSSignature(full), phase0.Version{}, "mainnet"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New accepted the signature for another network: %v", err)
	}
	// Malformed inputs are errors, not panics.
	if _, err := New(phase0.BLSPubKey{}, creds, ActivationAmount, phase0.BLSSignature(full), gfv, "hoodi"); err == nil {
		t.Fatal("New accepted a zero public key")
	}
	if _, err := New(pubkey, creds, ActivationAmount, phase0.BLSSignature{}, gfv, "hoodi"); err == nil {
		t.Fatal("New accepted a zero signature")
	}
	var badCreds phase0.Root = creds
	badCreds[5] = 1
	if _, err := New(pubkey, badCreds, ActivationAmount, phase0.BLSSignature(full), gfv, "hoodi"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New accepted malformed credentials: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	entries, err := ReadFile("testdata/ethstaker-docs-holesky.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := WriteFile(dir, entries)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(path), FilePrefix) || filepath.Ext(path) != ".json" || filepath.Dir(path) != dir {
		t.Fatalf("path %s", path)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat: %v %v", st, err)
	}
	back, err := ReadFile(path)
	if err != nil || len(back) != 2 {
		t.Fatalf("read back: %v", err)
	}
	for i := range back {
		if *back[i] != *entries[i] {
			t.Fatalf("entry %d changed: %+v", i, back[i])
		}
	}
	// The launchpad needs the amount as a number and hex without 0x.
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), `"amount": 32000000000`) || strings.Contains(string(raw), `"0x`) {
		t.Fatalf("format:\n%s", raw)
	}
	// No temporary file is left behind.
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("%d files in the directory", len(files))
	}
	// Never replaces a file.
	if err := writeAtomic(path, []byte("x"), 0o644); err == nil {
		t.Fatal("replaced an existing deposit file")
	}
	if b, _ := os.ReadFile(path); string(b) != string(raw) {
		t.Fatal("existing file changed")
	}

	mixed := []*Data{entries[0], {ForkVersion: "00000000", NetworkName: "mainnet"}}
	if _, err := WriteFile(t.TempDir(), mixed); err == nil {
		t.Fatal("wrote two networks into one file")
	}
	if _, err := WriteFile(t.TempDir(), nil); err == nil {
		t.Fatal("wrote an empty file")
	}
	if _, err := WriteFile(filepath.Join(dir, "missing"), entries); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}
