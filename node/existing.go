package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/signing"
)

// ExistingKey is a validator key read from an EIP-2335 keystore, to be split into a cluster.
type ExistingKey struct {
	Keystore     string // path of keystore-*.json
	PasswordFile string // path of the password file that decrypted it
	Pubkey       string // 0x-hex
	Key          *bls.SecretKey
}

// QuarantineDirName is the folder inside a new cluster directory that --quarantine-source moves
// the source keystores into.
const QuarantineDirName = "quarantined-source-keystores"

// LoadExistingKeys reads and decrypts every keystore-*.json in dir (sorted by name). Each
// keystore's password is in the file of the same name ending .txt (keystore-X.json,
// keystore-X.txt), unless passwordFile is given, which then holds the password of them all
// (as ethstaker-deposit-cli uses one password per run). Any keystore that does not decrypt is an
// error naming it, and so is a key found twice.
//
// It refuses keystores with a validator client's lock file beside them (keystore-X.json.lock
// or keystore-X.lock, which some validator clients keep while they run): the old validator
// client must be stopped before its keys are split. Clients without such files cannot be
// detected here.
func LoadExistingKeys(dir, passwordFile string) ([]ExistingKey, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "keystore-*.json"))
	if err != nil {
		return nil, fmt.Errorf("existing keys: %w", err)
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("existing keys: no keystore-*.json in %s", dir)
	}
	var shared string
	if passwordFile != "" {
		if shared, err = readPassword(passwordFile); err != nil {
			return nil, err
		}
	}
	keys := make([]ExistingKey, len(paths))
	for i, p := range paths {
		for _, lf := range []string{p + ".lock", strings.TrimSuffix(p, ".json") + ".lock"} {
			if _, err := os.Stat(lf); err == nil {
				return nil, fmt.Errorf("existing keys: %s exists: a validator client is still running with %s (or crashed): "+
					"stop it first, then remove the lock file", lf, filepath.Base(p))
			}
		}
		keys[i] = ExistingKey{Keystore: p, PasswordFile: passwordFile}
		if passwordFile == "" {
			keys[i].PasswordFile = strings.TrimSuffix(p, ".json") + ".txt"
		}
	}
	if err := decryptExisting(keys, shared); err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, k := range keys {
		if prev, ok := seen[k.Pubkey]; ok {
			return nil, fmt.Errorf("existing keys: %s and %s hold the same key %s", prev, k.Keystore, k.Pubkey)
		}
		seen[k.Pubkey] = k.Keystore
	}
	return keys, nil
}

// decryptExisting decrypts the keystores on every core (scrypt keystores take about a second each).
func decryptExisting(keys []ExistingKey, shared string) error {
	errs := make([]error, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.NumCPU(), len(keys)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(keys); i = int(next.Add(1) - 1) {
				errs[i] = decryptOne(&keys[i], shared)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func decryptOne(k *ExistingKey, password string) error {
	if password == "" {
		var err error
		if password, err = readPassword(k.PasswordFile); err != nil {
			return fmt.Errorf("existing keys: %s: %w (put its password in %s, or give one password file for all keystores)",
				k.Keystore, err, filepath.Base(k.PasswordFile))
		}
	}
	b, err := os.ReadFile(k.Keystore)
	if err != nil {
		return fmt.Errorf("existing keys: %w", err)
	}
	var ks signing.Keystore
	if err := json.Unmarshal(b, &ks); err != nil {
		return fmt.Errorf("existing keys: %s: not an EIP-2335 keystore: %v", k.Keystore, err)
	}
	sk, err := signing.DecryptKeystore(&ks, password)
	if err != nil {
		return fmt.Errorf("existing keys: %s: %w (password from %s)", k.Keystore, err, k.PasswordFile)
	}
	if ks.Pubkey == "" {
		return fmt.Errorf("existing keys: %s has no pubkey field: refusing a keystore whose key cannot be checked", k.Keystore)
	}
	k.Key = sk
	k.Pubkey = "0x" + hex.EncodeToString(sk.GetPublicKey().Serialize())
	return nil
}

func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return pw, nil
}

// QuarantineSource moves the source keystores (and their own password files, not a shared one)
// into clusterDir/quarantined-source-keystores, so that no validator client started from the old
// folder can load them again. It returns the quarantine directory. A file that cannot be moved is
// an error naming it; files already moved stay moved.
func QuarantineSource(keys []ExistingKey, clusterDir, sharedPasswordFile string) (string, error) {
	qdir := filepath.Join(clusterDir, QuarantineDirName)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	for _, k := range keys {
		files := []string{k.Keystore}
		if k.PasswordFile != sharedPasswordFile {
			files = append(files, k.PasswordFile)
		}
		for _, f := range files {
			if err := moveFile(f, filepath.Join(qdir, filepath.Base(f))); err != nil {
				return qdir, fmt.Errorf("quarantine %s: %w", f, err)
			}
		}
	}
	return qdir, nil
}

// moveFile renames src to dst, copying (with fsync) and removing when they are on different
// file systems. It never replaces dst.
func moveFile(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s already exists", dst)
	}
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}
