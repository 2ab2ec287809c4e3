package signing

import (
	"errors"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
)

func newSecret(t testing.TB) *bls.SecretKey {
	t.Helper()
	var sk bls.SecretKey
	sk.SetByCSPRNG()
	return &sk
}

func TestSplit_AnyThresholdSubsetRecovers(t *testing.T) {
	secret := newSecret(t)
	group := secret.GetPublicKey().Serialize()
	shares, err := Split(secret, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("0123456789abcdef0123456789abcdef")
	partials := map[uint64][]byte{}
	pubShares := map[uint64][]byte{}
	for i, sh := range shares {
		partials[uint64(i+1)] = sh.SignByte(msg).Serialize()
		pubShares[uint64(i+1)] = sh.GetPublicKey().Serialize()
	}
	// Every 3-subset recovers a signature valid under the group key; every 2-subset does not.
	for a := uint64(1); a <= 4; a++ {
		for b := a + 1; b <= 4; b++ {
			for c := b + 1; c <= 4; c++ {
				sub := map[uint64][]byte{a: partials[a], b: partials[b], c: partials[c]}
				sig, err := RecoverSignature(sub, 3)
				if err != nil {
					t.Fatal(err)
				}
				if err := Verify(group, msg, sig); err != nil {
					t.Fatalf("subset %d,%d,%d: %v", a, b, c, err)
				}
				pub := map[uint64][]byte{a: pubShares[a], b: pubShares[b], c: pubShares[c]}
				gk, err := RecoverPublicKey(pub, 3)
				if err != nil {
					t.Fatal(err)
				}
				if string(gk) != string(group) {
					t.Fatalf("public shares %d,%d,%d do not interpolate to the group key", a, b, c)
				}
			}
			two := map[uint64][]byte{a: partials[a], b: partials[b]}
			if _, err := RecoverSignature(two, 3); !errors.Is(err, ErrThreshold) {
				t.Fatalf("2 partials with threshold 3: err = %v, want ErrThreshold", err)
			}
			// Even interpolating the two as if the threshold were 2 gives no valid signature.
			sig, err := RecoverSignature(two, 2)
			if err != nil {
				t.Fatal(err)
			}
			if Verify(group, msg, sig) == nil {
				t.Fatalf("2 of a 3-of-4 sharing produced a valid group signature")
			}
		}
	}
}

func TestShareID_ZeroRefused(t *testing.T) {
	if _, err := shareID(0); !errors.Is(err, ErrBadShareID) {
		t.Fatalf("shareID(0) err = %v, want ErrBadShareID", err)
	}
	secret := newSecret(t)
	shares, _ := Split(secret, 2, 3)
	partials := map[uint64][]byte{0: shares[0].SignByte([]byte("m")).Serialize(), 1: shares[1].SignByte([]byte("m")).Serialize()}
	if _, err := RecoverSignature(partials, 2); !errors.Is(err, ErrBadShareID) {
		t.Fatalf("recover with index 0: err = %v, want ErrBadShareID", err)
	}
}

func TestRecoverSignature_MalformedPartial(t *testing.T) {
	partials := map[uint64][]byte{1: make([]byte, 96), 2: {1, 2, 3}, 3: make([]byte, 96)}
	if _, err := RecoverSignature(partials, 3); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
}

func TestCheckThreshold(t *testing.T) {
	cases := []struct {
		t, n  int
		force bool
		ok    bool
	}{
		{3, 4, false, true},
		{2, 4, false, false}, // n/2: disjoint quorums
		{2, 4, true, false},  // force cannot override n/2
		{4, 7, false, false}, // below ceil(14/3)=5
		{4, 7, true, true},
		{5, 7, false, true},
		{1, 1, false, true},
		{0, 4, false, false},
		{5, 4, false, false},
	}
	for _, c := range cases {
		err := CheckThreshold(c.t, c.n, c.force)
		if (err == nil) != c.ok {
			t.Errorf("CheckThreshold(%d,%d,%v) = %v, want ok=%v", c.t, c.n, c.force, err, c.ok)
		}
	}
}

func TestKeystore_RoundTripAndWrongPassword(t *testing.T) {
	sk := newSecret(t)
	ks, err := EncryptKeystore(sk, "correct horse", "test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecryptKeystore(ks, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsEqual(sk) {
		t.Fatal("decrypted key differs")
	}
	if _, err := DecryptKeystore(ks, "wrong"); !errors.Is(err, ErrBadKeystore) {
		t.Fatalf("wrong password: err = %v, want ErrBadKeystore", err)
	}
}

func BenchmarkRecoverSignature3of4(b *testing.B) {
	secret := newSecret(b)
	shares, _ := Split(secret, 3, 4)
	msg := []byte("0123456789abcdef0123456789abcdef")
	partials := map[uint64][]byte{}
	for i := 0; i < 3; i++ {
		partials[uint64(i+1)] = shares[i].SignByte(msg).Serialize()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := RecoverSignature(partials, 3); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRecoverSecretKey(t *testing.T) {
	var secret bls.SecretKey
	secret.SetByCSPRNG()
	shares, err := Split(&secret, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RecoverSecretKey(map[uint64]*bls.SecretKey{2: shares[1], 3: shares[2], 4: shares[3]}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsEqual(&secret) {
		t.Fatal("shares 2, 3, 4 do not give the secret back")
	}
	if _, err := RecoverSecretKey(map[uint64]*bls.SecretKey{1: shares[0], 2: shares[1]}, 3); !errors.Is(err, ErrThreshold) {
		t.Fatalf("two shares of a 3-of-4: %v", err)
	}
	// A share under the wrong index gives another key, not an error: callers must check.
	wrong, err := RecoverSecretKey(map[uint64]*bls.SecretKey{1: shares[0], 2: shares[2], 3: shares[1]}, 3)
	if err != nil || wrong.IsEqual(&secret) {
		t.Fatalf("swapped shares: %v", err)
	}
	if _, err := RecoverSecretKey(map[uint64]*bls.SecretKey{1: shares[0], 2: shares[1], 3: nil}, 3); err == nil {
		t.Fatal("nil share accepted")
	}
}
