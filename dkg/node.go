package dkg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// DefinitionFileName is the copy of the definition a ceremony leaves in each node folder.
const DefinitionFileName = "cluster-definition.json"

// partialSuffix names the folder a ceremony writes into before it succeeds.
const partialSuffix = ".dkg-partial"

// closeGrace keeps the host up briefly after success, so that the last acknowledgements and
// abort notices in flight reach the peers.
const closeGrace = 500 * time.Millisecond

// NodeConfig is one operator's ceremony over libp2p, writing a node folder.
type NodeConfig struct {
	Definition *lock.Definition
	Key        crypto.PrivKey
	// DataDir is the node folder to write (the layout create-cluster writes: cluster-lock.json,
	// p2p-key, validator_keys/, plus the definition and the deposit data). It must not exist or
	// be empty.
	DataDir string
	// Listen is the libp2p address to listen on; empty for the operator's address in the
	// definition (set it when that address is not local, e.g. behind NAT: /ip4/0.0.0.0/tcp/3610).
	Listen                     string
	StartTimeout, RoundTimeout time.Duration
	// KDF is the keystores' EIP-2335 KDF (default signing.KDFPBKDF2).
	KDF string
	Log *slog.Logger
}

// NodeResult is what RunNode wrote.
type NodeResult struct {
	Lock        *lock.Lock
	Index       int
	DataDir     string
	DepositFile string
}

// RunNode runs the ceremony as one operator over libp2p and writes its node folder. The folder
// appears only when the ceremony succeeded: everything is written to DataDir+".dkg-partial"
// first and renamed at the end, and a failed ceremony removes it, so a rerun starts clean.
func RunNode(ctx context.Context, cfg NodeConfig) (res *NodeResult, err error) {
	def := cfg.Definition
	if def == nil || cfg.Key == nil || cfg.DataDir == "" {
		return nil, errors.New("dkg: definition, p2p key and data directory are required")
	}
	if err := def.VerifyAllSigned(); err != nil {
		return nil, fmt.Errorf("dkg: refusing to start: %w", err)
	}
	id, err := peer.IDFromPrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("dkg: p2p key: %w", err)
	}
	self, ok := def.OperatorIndex(id)
	if !ok {
		return nil, fmt.Errorf("dkg: p2p key is peer %s, which is not an operator of the definition", id)
	}
	if err := checkEmptyDir(cfg.DataDir); err != nil {
		return nil, err
	}
	kdf := cfg.KDF
	if kdf == "" {
		kdf = signing.KDFPBKDF2
	}
	if kdf != signing.KDFPBKDF2 && kdf != signing.KDFScrypt {
		// Checked before the ceremony: failing at the keystores would abort everyone's.
		return nil, fmt.Errorf("dkg: keystore KDF %q: want %s or %s", kdf, signing.KDFPBKDF2, signing.KDFScrypt)
	}
	if cfg.RoundTimeout <= 0 && kdf == signing.KDFScrypt {
		// The finish round includes the slowest operator's keystore encryption: about a second
		// per scrypt keystore here, against 50 ms with PBKDF2 (which the default allows for).
		cfg.RoundTimeout = DefaultRoundTimeout + time.Duration(def.NumValidators)*1500*time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	listen := cfg.Listen
	if listen == "" {
		listen = def.Operators[self-1].Address
	}
	listenAddr, err := ma.NewMultiaddr(listen)
	if err != nil {
		return nil, fmt.Errorf("dkg: listen address %q: %w", listen, err)
	}
	var peers []p2p.Peer
	for i, pid := range def.PeerIDs() {
		addr, err := ma.NewMultiaddr(def.Operators[i].Address)
		if err != nil {
			return nil, fmt.Errorf("dkg: operator %d address: %w", i+1, err)
		}
		peers = append(peers, p2p.Peer{ID: pid, Addr: addr})
	}

	partial := filepath.Clean(cfg.DataDir) + partialSuffix
	// A leftover is from a run that was killed before it could clean up: its shares belong to a
	// ceremony that never completed, so they are worthless.
	if err := os.RemoveAll(partial); err != nil {
		return nil, fmt.Errorf("dkg: remove leftover %s: %w", partial, err)
	}
	if err := os.MkdirAll(filepath.Join(partial, node.KeysDirName), 0o700); err != nil {
		return nil, fmt.Errorf("dkg: create %s: %w", partial, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(partial)
		}
	}()
	if err := p2p.SaveKey(filepath.Join(partial, node.P2PKeyFileName), cfg.Key); err != nil {
		return nil, err
	}
	if err := def.Save(filepath.Join(partial, DefinitionFileName)); err != nil {
		return nil, err
	}

	h, err := p2p.NewHost(cfg.Key, listenAddr, peers)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	tr, err := NewP2PTransport(h, def.PeerIDs(), MaxMessageSize(def))
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	log.Info("DKG: listening", "addr", listenAddr.String(), "peer", id.String(), "operator", self)

	r, err := Run(ctx, Config{
		Definition: def, Key: cfg.Key, Transport: tr, StartTimeout: cfg.StartTimeout, RoundTimeout: cfg.RoundTimeout, Log: log,
		BeforeApprove: func(r *Result) error {
			return writeKeystores(filepath.Join(partial, node.KeysDirName), r, kdf)
		},
	})
	if err != nil {
		return nil, err
	}
	for _, s := range r.Shares {
		*s = bls.SecretKey{} // stored in the keystores
	}
	if err := r.Lock.Save(filepath.Join(partial, node.LockFileName)); err != nil {
		return nil, err
	}
	depositFile, err := deposit.WriteFile(partial, r.Deposits)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(cfg.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dkg: replace empty %s: %w", cfg.DataDir, err)
	}
	if err := os.Rename(partial, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("dkg: move the node folder into place: %w", err)
	}
	select {
	case <-time.After(closeGrace):
	case <-ctx.Done():
	}
	return &NodeResult{Lock: r.Lock, Index: self, DataDir: cfg.DataDir,
		DepositFile: filepath.Join(cfg.DataDir, filepath.Base(depositFile))}, nil
}

// checkEmptyDir refuses a data directory that holds anything: a ceremony never overwrites keys.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dkg: data directory %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("dkg: data directory %s is not empty: refusing to overwrite key material", dir)
	}
	return nil
}

// writeKeystores encrypts this operator's shares into dir with a fresh password, on every core
// (the KDF is most of the cost: about 50 ms per PBKDF2 keystore), in node.LoadIdentity's layout.
func writeKeystores(dir string, r *Result, kdf string) error {
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return fmt.Errorf("keystore password: %w", err)
	}
	password := hex.EncodeToString(pw)
	if err := os.WriteFile(filepath.Join(dir, node.PasswordFile), []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write keystore password: %w", err)
	}
	errs := make([]error, len(r.Shares))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.NumCPU(), len(r.Shares)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				v := i
				i++
				next.Unlock()
				if v >= len(r.Shares) {
					return
				}
				desc := fmt.Sprintf("dvmesh %s share %d of validator %s", r.Lock.Name, r.Index, r.Lock.Validators[v].GroupPubkey)
				ks, err := signing.EncryptKeystoreKDF(r.Shares[v], password, desc, kdf)
				if err == nil {
					err = signing.WriteKeystoreFile(filepath.Join(dir, node.KeystoreFileName(v)), ks)
				}
				if err != nil {
					errs[v] = fmt.Errorf("keystore of validator %d: %w", v, err)
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
