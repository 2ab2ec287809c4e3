package lock

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/signing"
)

func testLock(t *testing.T) *Lock {
	t.Helper()
	l := &Lock{Version: Version, Name: "t", Network: "simnet", GenesisForkVersion: "0x10000000", Threshold: 3}
	for i := 0; i < 4; i++ {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
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
	return l
}

func TestLock_SaveLoadRoundTrip(t *testing.T) {
	l := testLock(t)
	path := filepath.Join(t.TempDir(), "lock.json")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != l.Hash || len(got.Validators) != 1 {
		t.Fatalf("round trip: %+v", got)
	}
	if pks := got.GroupPubkeys(); len(pks) != 1 || fmt.Sprintf("%#x", pks[0]) != l.Validators[0].GroupPubkey {
		t.Fatalf("group keys %x, want %s", pks, l.Validators[0].GroupPubkey)
	}
}

func TestLock_ValidateRefuses(t *testing.T) {
	cases := map[string]func(l *Lock){
		"share that does not interpolate": func(l *Lock) {
			var sk bls.SecretKey
			sk.SetByCSPRNG()
			l.Validators[0].PublicShares[3] = "0x" + hex.EncodeToString(sk.GetPublicKey().Serialize())
		},
		"missing share":      func(l *Lock) { l.Validators[0].PublicShares = l.Validators[0].PublicShares[:3] },
		"threshold at n/2":   func(l *Lock) { l.Threshold = 2 },
		"duplicate operator": func(l *Lock) { l.Operators[1] = l.Operators[0] },
		"bad peer id":        func(l *Lock) { l.Operators[0].PeerID = "nope" },
		"bad address":        func(l *Lock) { l.Operators[0].Address = "127.0.0.1:80" },
		"bad group key":      func(l *Lock) { l.Validators[0].GroupPubkey = "0x1234" },
		"infinity group key": func(l *Lock) { l.Validators[0].GroupPubkey = "0xc0" + strings.Repeat("00", 47) },
		"no validators":      func(l *Lock) { l.Validators = nil },
		"wrong version":      func(l *Lock) { l.Version = "v0" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			l := testLock(t)
			mutate(l)
			l.Hash, _ = l.ComputeHash()
			if err := l.Validate(); !errors.Is(err, ErrBadLock) {
				t.Fatalf("err = %v, want ErrBadLock", err)
			}
		})
	}
	t.Run("hash mismatch", func(t *testing.T) {
		l := testLock(t)
		l.Hash, _ = l.ComputeHash()
		l.Name = "changed"
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), "lock_hash") {
			t.Fatalf("err = %v", err)
		}
	})
}
