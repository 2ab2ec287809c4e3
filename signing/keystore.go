package signing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/herumi/bls-eth-go-binary/bls"
	keystorev4 "github.com/wealdtech/go-eth2-wallet-encryptor-keystorev4"
	"golang.org/x/crypto/pbkdf2"
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
	// KDFInsecure is PBKDF2-SHA256 with 16 rounds: a valid EIP-2335 keystore that any client
	// decrypts, for benchmarks and test networks with thousands of validators only. Its
	// password can be brute-forced: never use it for keys that hold value.
	KDFInsecure = "insecure-pbkdf2-16"
)

// insecureRounds is KDFInsecure's PBKDF2 iteration count.
const insecureRounds = 16

// EncryptKeystore encrypts sk under password with the EIP-2335 PBKDF2-SHA256 KDF (2^18 rounds).
func EncryptKeystore(sk *bls.SecretKey, password, description string) (*Keystore, error) {
	return EncryptKeystoreKDF(sk, password, description, KDFPBKDF2)
}

// EncryptKeystoreKDF encrypts sk under password with the given EIP-2335 KDF.
func EncryptKeystoreKDF(sk *bls.SecretKey, password, description, kdf string) (*Keystore, error) {
	var (
		crypto map[string]any
		err    error
	)
	switch kdf {
	case KDFPBKDF2, KDFScrypt:
		crypto, err = keystorev4.New(keystorev4.WithCipher(kdf)).Encrypt(sk.Serialize(), password)
	case KDFInsecure:
		crypto, err = encryptInsecure(sk.Serialize(), password)
	default:
		return nil, fmt.Errorf("%w: unknown KDF %q (want %s, %s or, for test networks only, %s)", ErrBadKeystore, kdf, KDFPBKDF2, KDFScrypt, KDFInsecure)
	}
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

// encryptInsecure writes the EIP-2335 crypto section (PBKDF2-SHA256 with insecureRounds rounds,
// AES-128-CTR, SHA-256 checksum) that keystorev4 only produces with a testing-only option.
// Decryption goes through keystorev4 like any keystore.
func encryptInsecure(secret []byte, password string) (map[string]any, error) {
	salt := make([]byte, 32)
	iv := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	// EIP-2335 normalises the password (NFKD, control characters stripped); test passwords are
	// plain ASCII, which normalisation leaves as is: refuse anything else.
	for _, r := range password {
		if r < 0x20 || r > 0x7e {
			return nil, fmt.Errorf("%w: the insecure test KDF takes printable ASCII passwords only", ErrBadKeystore)
		}
	}
	key := pbkdf2.Key([]byte(password), salt, insecureRounds, 32, sha256.New)
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, err
	}
	msg := make([]byte, len(secret))
	cipher.NewCTR(block, iv).XORKeyStream(msg, secret)
	sum := sha256.Sum256(append(append([]byte{}, key[16:32]...), msg...))
	return map[string]any{
		"kdf": map[string]any{"function": "pbkdf2", "params": map[string]any{
			"dklen": 32, "c": insecureRounds, "prf": "hmac-sha256", "salt": hex.EncodeToString(salt)}, "message": ""},
		"checksum": map[string]any{"function": "sha256", "params": map[string]any{}, "message": hex.EncodeToString(sum[:])},
		"cipher": map[string]any{"function": "aes-128-ctr", "params": map[string]any{"iv": hex.EncodeToString(iv)},
			"message": hex.EncodeToString(msg)},
	}, nil
}
