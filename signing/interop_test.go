package signing

import (
	"encoding/hex"
	"testing"
)

// The interop public keys as the clients' own tests and genesis tools give them (e.g. Prysm's
// runtime/interop tests, Lighthouse's eth2_interop_keypairs; the eth2.0-pm interop keygen
// vectors). Validators 0..2 are the published vectors; the devnet harness (test/devnet) also
// compares every key it uses with the live chain's validator registry.
func TestInteropSecretKey_KnownPublicKeys(t *testing.T) {
	for i, want := range []string{
		"a99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
		"b89bebc699769726a318c8e9971bd3171297c61aea4a6578a7a4f94b547dcba5bac16a89108b6b6a1fe3695d1a874a0b",
		"a3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
	} {
		sk, err := InteropSecretKey(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(sk.GetPublicKey().Serialize()); got != want {
			t.Errorf("interop validator %d: pubkey %s, want %s", i, got, want)
		}
	}
	// Validator 0's secret key as published with the interop vectors.
	sk, _ := InteropSecretKey(0)
	if got, want := hex.EncodeToString(sk.Serialize()), "25295f0d1d592a90b333e26e85149708208e9f8e8bc18f6c77bd62f8ad7a6866"; got != want {
		t.Errorf("interop validator 0: secret key %s, want %s", got, want)
	}
}
