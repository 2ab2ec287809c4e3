package node

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// Files of a node directory as create-cluster writes them.
const (
	LockFileName    = "cluster-lock.json"
	P2PKeyFileName  = "p2p-key"
	KeysDirName     = "validator_keys"
	PasswordFile    = "password.txt"
	SlashingDBFile  = "slashing.db" // in the data directory
	keystorePattern = "keystore-%d.json"
)

// KeystoreFileName returns the keystore file name of the share of lock validator i.
func KeystoreFileName(i int) string { return fmt.Sprintf(keystorePattern, i) }

// Identity is everything secret and cluster-wide a node loads at start, checked against the lock.
type Identity struct {
	Lock       *lock.Lock
	P2PKey     crypto.PrivKey
	PeerID     peer.ID
	ShareIndex uint64
	// Shares maps each validator's group public key to this node's secret share of it.
	Shares map[phase0.BLSPubKey]*bls.SecretKey
	// PublicShares maps each validator's group key to every share index's public key.
	PublicShares map[phase0.BLSPubKey]map[uint64]*bls.PublicKey
	GroupKeys    map[phase0.BLSPubKey]*bls.PublicKey
}

// LoadIdentity loads the lock, the p2p key and the key shares, and refuses any mismatch: a p2p
// key not named in the lock, a share that is not this operator's share of the lock's validator,
// or a lock whose public shares do not interpolate to the group keys (checked by lock.Load).
func LoadIdentity(lockPath, p2pKeyPath, keysDir string) (*Identity, error) {
	l, err := lock.Load(lockPath)
	if err != nil {
		return nil, err
	}
	key, err := p2p.LoadKey(p2pKeyPath)
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p key: %w", err)
	}
	idx, ok := l.ShareIndex(id)
	if !ok {
		return nil, fmt.Errorf("p2p key %s is peer %s, which is not an operator of the cluster lock %s", p2pKeyPath, id, lockPath)
	}
	pwBytes, err := os.ReadFile(filepath.Join(keysDir, PasswordFile))
	if err != nil {
		return nil, fmt.Errorf("keystore password: %w", err)
	}
	password := strings.TrimRight(string(pwBytes), "\r\n")
	ident := &Identity{
		Lock: l, P2PKey: key, PeerID: id, ShareIndex: idx,
		Shares:       map[phase0.BLSPubKey]*bls.SecretKey{},
		PublicShares: map[phase0.BLSPubKey]map[uint64]*bls.PublicKey{},
		GroupKeys:    map[phase0.BLSPubKey]*bls.PublicKey{},
	}
	// Decrypting is the slow part of starting (about 50 ms per PBKDF2 keystore): use every core.
	keys, err := decryptAll(keysDir, len(l.Validators), password)
	if err != nil {
		return nil, err
	}
	for i, v := range l.Validators {
		group, pubShares, err := parseValidator(v)
		if err != nil {
			return nil, fmt.Errorf("lock validator %d: %w", i, err)
		}
		sk := keys[i]
		if !bytes.Equal(sk.GetPublicKey().Serialize(), pubShares[idx].Serialize()) {
			return nil, fmt.Errorf("key share %s is not share %d of validator %s named in the lock",
				filepath.Join(keysDir, KeystoreFileName(i)), idx, v.GroupPubkey)
		}
		var gk phase0.BLSPubKey
		copy(gk[:], group.Serialize())
		ident.Shares[gk] = sk
		ident.PublicShares[gk] = pubShares
		ident.GroupKeys[gk] = group
	}
	return ident, nil
}

func parseValidator(v lock.Validator) (*bls.PublicKey, map[uint64]*bls.PublicKey, error) {
	gb, err := hex.DecodeString(strings.TrimPrefix(v.GroupPubkey, "0x"))
	if err != nil {
		return nil, nil, fmt.Errorf("group key: %w", err)
	}
	group, err := signing.ParsePublicKey(gb)
	if err != nil {
		return nil, nil, err
	}
	shares := make(map[uint64]*bls.PublicKey, len(v.PublicShares))
	for i, s := range v.PublicShares {
		b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
		if err != nil {
			return nil, nil, fmt.Errorf("public share %d: %w", i+1, err)
		}
		pk, err := signing.ParsePublicKey(b)
		if err != nil {
			return nil, nil, fmt.Errorf("public share %d: %w", i+1, err)
		}
		shares[uint64(i+1)] = pk
	}
	return group, shares, nil
}

// Pubkeys returns the validators' group keys in lock order.
func (id *Identity) Pubkeys() []phase0.BLSPubKey { return id.Lock.GroupPubkeys() }

// decryptAll decrypts keystore-0..n-1 in keysDir on every core.
func decryptAll(keysDir string, n int, password string) ([]*bls.SecretKey, error) {
	keys := make([]*bls.SecretKey, n)
	errs := make([]error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.NumCPU(), n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				sk, err := signing.ReadKeystoreFile(filepath.Join(keysDir, KeystoreFileName(i)), password)
				if err != nil {
					err = fmt.Errorf("key share of validator %d: %w", i, err)
				}
				keys[i], errs[i] = sk, err
			}
		}()
	}
	wg.Wait()
	return keys, errors.Join(errs...)
}
