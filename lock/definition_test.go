package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/signing"
)

func testKeys(t *testing.T, n int) []crypto.PrivKey {
	t.Helper()
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	return keys
}

func testDefinition(t *testing.T, keys []crypto.PrivKey) *Definition {
	t.Helper()
	o := DefinitionOptions{Name: "t", Network: "hoodi", GenesisForkVersion: "0x10000910", Threshold: 3, Validators: 2,
		WithdrawalAddress: "0x" + strings.Repeat("ab", 20), FeeRecipient: "0x" + strings.Repeat("cd", 20)}
	for _, k := range keys {
		id, _ := peer.IDFromPrivateKey(k)
		o.Operators = append(o.Operators, Operator{PeerID: id.String(), Address: "/ip4/127.0.0.1/tcp/4000"})
	}
	d, err := NewDefinition(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func signAll(t *testing.T, d *Definition, keys []crypto.PrivKey) {
	t.Helper()
	for _, k := range keys {
		if err := d.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefinition_SignSaveLoad(t *testing.T) {
	keys := testKeys(t, 4)
	d := testDefinition(t, keys)
	if err := d.VerifyAllSigned(); err == nil || !strings.Contains(err.Error(), "operator 1") {
		t.Fatalf("unsigned definition: err = %v, want it to name operator 1", err)
	}
	signAll(t, d, keys[:3])
	if err := d.VerifyAllSigned(); err == nil || !strings.Contains(err.Error(), "operator 4") || strings.Contains(err.Error(), "operator 3") {
		t.Fatalf("definition missing operator 4's signature: err = %v", err)
	}
	signAll(t, d, keys[3:])
	path := filepath.Join(t.TempDir(), "def.json")
	if err := d.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDefinition(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.VerifyAllSigned(); err != nil {
		t.Fatal(err)
	}
	if got.DefinitionHash != d.DefinitionHash || got.UUID == "" || got.CreatedAt == "" {
		t.Fatalf("round trip: %+v", got)
	}
}

// Two definitions with identical settings differ in UUID and so in hash: signatures of one
// ceremony can never be replayed into another.
func TestDefinition_FreshHashPerDefinition(t *testing.T) {
	keys := testKeys(t, 4)
	a, b := testDefinition(t, keys), testDefinition(t, keys)
	if a.DefinitionHash == b.DefinitionHash || a.UUID == b.UUID {
		t.Fatalf("two definitions share hash %s / uuid %s", a.DefinitionHash, a.UUID)
	}
	signAll(t, a, keys)
	b.Operators[0].Signature = a.Operators[0].Signature
	if err := b.Validate(); !errors.Is(err, ErrBadDefinition) || !strings.Contains(err.Error(), "operator 1") {
		t.Fatalf("signature replayed from another definition: err = %v", err)
	}
}

// Every field is covered by the hash and so by every signature: a changed field, even with the
// hash recomputed, breaks all of them.
func TestDefinition_ChangedFieldBreaksEverySignature(t *testing.T) {
	keys := testKeys(t, 4)
	changes := map[string]func(d *Definition){
		"name":                 func(d *Definition) { d.Name = "other" },
		"threshold":            func(d *Definition) { d.Threshold = 4 },
		"validators":           func(d *Definition) { d.NumValidators = 3 },
		"withdrawal address":   func(d *Definition) { d.WithdrawalAddress = "0x" + strings.Repeat("ee", 20) },
		"fee recipient":        func(d *Definition) { d.FeeRecipient = "0x" + strings.Repeat("ee", 20) },
		"compounding":          func(d *Definition) { d.Compounding = true },
		"genesis fork version": func(d *Definition) { d.GenesisForkVersion = "0x00000000" },
		"operator address":     func(d *Definition) { d.Operators[2].Address = "/ip4/10.0.0.1/tcp/1" },
		"operator order":       func(d *Definition) { d.Operators[0], d.Operators[1] = d.Operators[1], d.Operators[0] },
		"uuid":                 func(d *Definition) { d.UUID = strings.Repeat("0", 36) },
		"timestamp":            func(d *Definition) { d.CreatedAt = "2020-01-01T00:00:00Z" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			d := testDefinition(t, keys)
			signAll(t, d, keys)
			change(d)
			if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "definition_hash") {
				t.Fatalf("changed %s without recomputing the hash: err = %v", name, err)
			}
			d.DefinitionHash, _ = d.ComputeHash()
			for i := range d.Operators {
				err := VerifyPeerSignature(d.Operators[i].PeerID, DefinitionSignatureMessage(d.DefinitionHash), d.Operators[i].Signature)
				if err == nil {
					t.Errorf("changed %s: operator %d's signature still verifies", name, i+1)
				}
			}
			if err := d.VerifyAllSigned(); !errors.Is(err, ErrBadDefinition) {
				t.Fatalf("changed %s, hash recomputed: err = %v", name, err)
			}
		})
	}
}

func TestDefinition_WrongKeyRefused(t *testing.T) {
	keys := testKeys(t, 4)
	d := testDefinition(t, keys)
	stranger := testKeys(t, 1)[0]
	if err := d.Sign(stranger); !errors.Is(err, ErrBadDefinition) || !strings.Contains(err.Error(), "not an operator") {
		t.Fatalf("stranger signs: err = %v", err)
	}
	signAll(t, d, keys)
	// Operator 2's slot carries a signature by another key (a valid signature of the right message).
	sig, err := SignAsPeer(stranger, DefinitionSignatureMessage(d.DefinitionHash))
	if err != nil {
		t.Fatal(err)
	}
	d.Operators[1].Signature = sig
	if err := d.VerifyAllSigned(); !errors.Is(err, ErrBadDefinition) || !strings.Contains(err.Error(), "operator 2") {
		t.Fatalf("signature by a wrong key: err = %v", err)
	}
	// A lock approval by the right key is not a definition signature.
	d.Operators[1].Signature, _ = SignAsPeer(keys[1], OperatorSignatureMessage(d.DefinitionHash))
	if err := d.VerifyAllSigned(); !errors.Is(err, ErrBadDefinition) {
		t.Fatalf("lock-approval signature accepted as a definition signature: err = %v", err)
	}
	d.Operators[1].Signature = "0xzz"
	if err := d.Validate(); !errors.Is(err, ErrBadDefinition) {
		t.Fatalf("garbage signature: err = %v", err)
	}
}

func TestDefinition_MergeSignatures(t *testing.T) {
	keys := testKeys(t, 4)
	d := testDefinition(t, keys)
	copies := make([]*Definition, 4)
	for i := range copies {
		c := *d
		c.Operators = append([]DefinitionOperator(nil), d.Operators...)
		if err := c.Sign(keys[i]); err != nil {
			t.Fatal(err)
		}
		copies[i] = &c
	}
	for _, c := range copies[1:] {
		if err := copies[0].MergeSignatures(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := copies[0].VerifyAllSigned(); err != nil {
		t.Fatal(err)
	}
	other := testDefinition(t, keys)
	if err := other.MergeSignatures(copies[0]); err == nil {
		t.Fatal("merged signatures of another definition")
	}
}

func TestDefinition_Refuses(t *testing.T) {
	keys := testKeys(t, 4)
	cases := map[string]func(o *DefinitionOptions){
		"threshold at n/2":           func(o *DefinitionOptions) { o.Threshold = 2 },
		"zero validators":            func(o *DefinitionOptions) { o.Validators = 0 },
		"zero withdrawal address":    func(o *DefinitionOptions) { o.WithdrawalAddress = "0x" + strings.Repeat("00", 20) },
		"short fee recipient":        func(o *DefinitionOptions) { o.FeeRecipient = "0x1234" },
		"address without 0x":         func(o *DefinitionOptions) { o.WithdrawalAddress = strings.Repeat("ab", 20) },
		"bad fork version":           func(o *DefinitionOptions) { o.GenesisForkVersion = "0x1234" },
		"duplicate operator":         func(o *DefinitionOptions) { o.Operators[1] = o.Operators[0] },
		"bad operator address":       func(o *DefinitionOptions) { o.Operators[0].Address = "127.0.0.1:80" },
		"too many validators":        func(o *DefinitionOptions) { o.Validators = MaxValidators + 1 },
		"below 2n/3 without forcing": func(o *DefinitionOptions) { o.Operators = append(o.Operators, o.Operators[0]); o.Threshold = 3 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			o := DefinitionOptions{Name: "t", Network: "hoodi", GenesisForkVersion: "0x10000910", Threshold: 3, Validators: 2,
				WithdrawalAddress: "0x" + strings.Repeat("ab", 20), FeeRecipient: "0x" + strings.Repeat("cd", 20)}
			for _, k := range keys {
				id, _ := peer.IDFromPrivateKey(k)
				o.Operators = append(o.Operators, Operator{PeerID: id.String(), Address: "/ip4/127.0.0.1/tcp/4000"})
			}
			mutate(&o)
			if _, err := NewDefinition(o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// 3 of 5 is below ceil(2*5/3)=4: accepted only when forced.
	o := DefinitionOptions{Name: "t", Network: "hoodi", GenesisForkVersion: "0x10000910", Threshold: 3, Validators: 1,
		WithdrawalAddress: "0x" + strings.Repeat("ab", 20), FeeRecipient: "0x" + strings.Repeat("cd", 20)}
	for _, k := range testKeys(t, 5) {
		id, _ := peer.IDFromPrivateKey(k)
		o.Operators = append(o.Operators, Operator{PeerID: id.String(), Address: "/ip4/127.0.0.1/tcp/4000"})
	}
	if _, err := NewDefinition(o); !errors.Is(err, signing.ErrThreshold) {
		t.Fatalf("3 of 5 unforced: err = %v", err)
	}
	o.ForceThreshold = true
	if _, err := NewDefinition(o); err != nil {
		t.Fatalf("3 of 5 forced: %v", err)
	}
}

func TestParseOperator(t *testing.T) {
	id, _ := peer.IDFromPrivateKey(testKeys(t, 1)[0])
	for in, ok := range map[string]bool{
		id.String() + "@/ip4/1.2.3.4/tcp/3610":           true,
		"/ip4/1.2.3.4/tcp/3610/p2p/" + id.String():       true,
		"/dns4/node.example/tcp/3610/p2p/" + id.String(): true,
		"nope@/ip4/1.2.3.4/tcp/3610":                     false,
		id.String() + "@1.2.3.4:3610":                    false,
		"/ip4/1.2.3.4/tcp/3610":                          false,
		id.String():                                      false,
	} {
		op, err := ParseOperator(in)
		if (err == nil) != ok {
			t.Errorf("ParseOperator(%q) = %+v, %v; want ok=%v", in, op, err, ok)
			continue
		}
		if ok && (op.PeerID != id.String() || strings.Contains(op.Address, "/p2p/")) {
			t.Errorf("ParseOperator(%q) = %+v", in, op)
		}
	}
}

// testSignedLock is a lock as a DKG writes it: definition hash and every operator's approval.
func testSignedLock(t *testing.T) (*Lock, []crypto.PrivKey) {
	t.Helper()
	keys := testKeys(t, 4)
	l := &Lock{Version: Version, Name: "t", Network: "simnet", GenesisForkVersion: "0x10000000", Threshold: 3,
		DefinitionHash: "0x" + strings.Repeat("11", 32)}
	for _, k := range keys {
		id, _ := peer.IDFromPrivateKey(k)
		l.Operators = append(l.Operators, Operator{PeerID: id.String(), Address: "/ip4/127.0.0.1/tcp/1"})
	}
	var secret bls.SecretKey
	secret.SetByCSPRNG()
	shares, err := signing.Split(&secret, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	v := Validator{GroupPubkey: "0x" + hex.EncodeToString(secret.GetPublicKey().Serialize())}
	for _, s := range shares {
		v.PublicShares = append(v.PublicShares, "0x"+hex.EncodeToString(s.GetPublicKey().Serialize()))
	}
	l.Validators = []Validator{v}
	l.Hash, _ = l.ComputeHash()
	for _, k := range keys {
		sig, err := SignAsPeer(k, OperatorSignatureMessage(l.Hash))
		if err != nil {
			t.Fatal(err)
		}
		l.OperatorSignatures = append(l.OperatorSignatures, sig)
	}
	return l, keys
}

func TestLock_OperatorSignatures(t *testing.T) {
	l, keys := testSignedLock(t)
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lock.json")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("signed lock does not load: %v", err)
	}
	// The signatures are not part of the hash they sign.
	h, _ := l.ComputeHash()
	c := *l
	c.OperatorSignatures = nil
	if h2, _ := c.ComputeHash(); h != h2 {
		t.Fatal("hash depends on the operator signatures")
	}

	refuse := map[string]func(l *Lock){
		"signature missing":    func(l *Lock) { l.OperatorSignatures = l.OperatorSignatures[:3] },
		"signatures stripped":  func(l *Lock) { l.OperatorSignatures = nil },
		"signatures swapped":   func(l *Lock) { s := l.OperatorSignatures; s[0], s[1] = s[1], s[0] },
		"signature garbage":    func(l *Lock) { l.OperatorSignatures[2] = "0x1234" },
		"content changed":      func(l *Lock) { l.Name = "other"; l.Hash, _ = l.ComputeHash() },
		"definition changed":   func(l *Lock) { l.DefinitionHash = "0x" + strings.Repeat("22", 32); l.Hash, _ = l.ComputeHash() },
		"hash does not match":  func(l *Lock) { l.Threshold = 4 },
		"signature by another": func(l *Lock) { l.OperatorSignatures[3], _ = SignAsPeer(keys[0], OperatorSignatureMessage(l.Hash)) },
	}
	for name, mutate := range refuse {
		t.Run(name, func(t *testing.T) {
			c, _ := testSignedLock(t)
			mutate(c)
			if err := c.Validate(); !errors.Is(err, ErrBadLock) {
				t.Fatalf("err = %v, want ErrBadLock", err)
			}
		})
	}
}

// oldLock is the lock format before definition_hash and operator_signatures existed.
type oldLock struct {
	Version               string      `json:"version"`
	Name                  string      `json:"name"`
	Network               string      `json:"network"`
	GenesisForkVersion    string      `json:"genesis_fork_version"`
	GenesisValidatorsRoot string      `json:"genesis_validators_root,omitempty"`
	Threshold             int         `json:"threshold"`
	Operators             []Operator  `json:"operators"`
	Validators            []Validator `json:"validators"`
	Hash                  string      `json:"lock_hash"`
}

// Locks written before the DKG fields existed keep their hash and still load.
func TestLock_OldLocksKeepTheirHash(t *testing.T) {
	l := testLock(t)
	old := oldLock{Version: l.Version, Name: l.Name, Network: l.Network, GenesisForkVersion: l.GenesisForkVersion,
		Threshold: l.Threshold, Operators: l.Operators, Validators: l.Validators}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var c Lock
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	h, err := c.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b) // how the old code hashed: the old struct's JSON with an empty hash
	if want := "0x" + hex.EncodeToString(sum[:]); h != want {
		t.Fatalf("old lock's hash changed: %s, was %s", h, want)
	}
	old.Hash = h
	b, _ = json.Marshal(old)
	path := filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("old lock: %v", err)
	}
}
