package signing

import (
	"errors"
	"testing"
)

// TestKeystore_InsecureKDFDecryptsWithKeystorev4: the hand-written test-network keystore is a
// standard EIP-2335 keystore: keystorev4's decryptor (what every node uses) reads it, and a wrong
// password still fails its checksum.
func TestKeystore_InsecureKDFDecryptsWithKeystorev4(t *testing.T) {
	sk := newSecret(t)
	ks, err := EncryptKeystoreKDF(sk, "test password 1", "bench", KDFInsecure)
	if err != nil {
		t.Fatal(err)
	}
	if c := ks.Crypto["kdf"].(map[string]any)["params"].(map[string]any)["c"]; c != insecureRounds {
		t.Fatalf("rounds %v", c)
	}
	got, err := DecryptKeystore(ks, "test password 1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsEqual(sk) {
		t.Fatal("decrypted key differs")
	}
	if _, err := DecryptKeystore(ks, "test password 2"); !errors.Is(err, ErrBadKeystore) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := EncryptKeystoreKDF(sk, "pässword", "", KDFInsecure); err == nil {
		t.Fatal("non-ASCII password accepted by the insecure KDF (it skips EIP-2335 normalisation)")
	}
	if _, err := EncryptKeystoreKDF(sk, "x", "", "md5"); !errors.Is(err, ErrBadKeystore) {
		t.Fatal("unknown KDF accepted")
	}
}
