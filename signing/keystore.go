package signing

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/herumi/bls-eth-go-binary/bls"
	keystorev4 "github.com/wealdtech/go-eth2-wallet-encryptor-keystorev4"
)

// ErrBadKeystore is returned for a keystore that cannot be read or decrypted.
var ErrBadKeystore = errors.New("invalid keystore")

// Keystore is an EIP-2335 (version 4) keystore.
type Keystore struct {
	Crypto      map[string]any `json:"crypto"`
	Description string         `json:"description"`
	Pubkey      string         `json:"pubkey"`
	Path        string         `json:"path"`
	UUID        string         `json:"uuid"`
	Version     int            `json:"version"`
}

// KDFs of EIP-2335 keystores.
const (
	KDFPBKDF2 = "pbkdf2" // PBKDF2-SHA256, 2^18 rounds: ~50 ms and little memory per keystore here
	KDFScrypt = "scrypt" // scrypt N=2^18: ~1 s and 256 MiB per keystore here; costlier to brute-force
)

// EncryptKeystore encrypts sk under password with the EIP-2335 PBKDF2-SHA256 KDF (2^18 rounds).
func EncryptKeystore(sk *bls.SecretKey, password, description string) (*Keystore, error) {
	return EncryptKeystoreKDF(sk, password, description, KDFPBKDF2)
}

// EncryptKeystoreKDF encrypts sk under password with the given EIP-2335 KDF.
func EncryptKeystoreKDF(sk *bls.SecretKey, password, description, kdf string) (*Keystore, error) {
	if kdf != KDFPBKDF2 && kdf != KDFScrypt {
		return nil, fmt.Errorf("%w: unknown KDF %q (want %s or %s)", ErrBadKeystore, kdf, KDFPBKDF2, KDFScrypt)
	}
	crypto, err := keystorev4.New(keystorev4.WithCipher(kdf)).Encrypt(sk.Serialize(), password)
	if err != nil {
		return nil, fmt.Errorf("encrypt keystore: %w", err)
	}
	return &Keystore{
		Crypto:      crypto,
		Description: description,
		Pubkey:      hex.EncodeToString(sk.GetPublicKey().Serialize()),
		UUID:        newUUID(),
		Version:     4,
	}, nil
}

// DecryptKeystore decrypts ks with password and checks that the key matches the keystore's pubkey.
func DecryptKeystore(ks *Keystore, password string) (*bls.SecretKey, error) {
	if ks.Version != 4 {
		return nil, fmt.Errorf("%w: version %d, want 4", ErrBadKeystore, ks.Version)
	}
	if ks.Crypto == nil {
		return nil, fmt.Errorf("%w: no crypto section", ErrBadKeystore)
	}
	raw, err := keystorev4.New().Decrypt(ks.Crypto, password)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt (wrong password?): %v", ErrBadKeystore, err)
	}
	sk, err := ParseSecretKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeystore, err)
	}
	if want := strings.TrimPrefix(ks.Pubkey, "0x"); want != "" && hex.EncodeToString(sk.GetPublicKey().Serialize()) != want {
		return nil, fmt.Errorf("%w: decrypted key does not match pubkey %s", ErrBadKeystore, ks.Pubkey)
	}
	return sk, nil
}

// ReadKeystoreFile reads and decrypts the keystore at path.
func ReadKeystoreFile(path, password string) (*bls.SecretKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keystore: %w", err)
	}
	var ks Keystore
	if err := json.Unmarshal(b, &ks); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKeystore, path, err)
	}
	sk, err := DecryptKeystore(&ks, password)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sk, nil
}

// WriteKeystoreFile writes ks to path with owner-only permissions.
func WriteKeystoreFile(path string, ks *Keystore) error {
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return fmt.Errorf("encode keystore: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write keystore: %w", err)
	}
	return nil
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
