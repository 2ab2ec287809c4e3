package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// CreateOptions describe a cluster to create on one machine (a trusted dealer: the full keys
// exist in this process for a moment; for keys no machine ever holds, use a DKG).
type CreateOptions struct {
	Name               string
	Nodes, Threshold   int
	Validators         int
	OutDir             string
	ForceThreshold     bool   // accept a threshold below ceil(2n/3) (still above n/2)
	Host               string // IP the nodes listen on, e.g. 127.0.0.1
	BasePort           int    // node i (1-based) listens on BasePort+i-1
	Network            string
	GenesisForkVersion string // 0x-hex, 4 bytes
	// KDF is the keystores' EIP-2335 KDF: signing.KDFPBKDF2 (default) or signing.KDFScrypt.
	KDF string
	// Progress, when set, is called after each keystore written with the count done and the total.
	Progress func(done, total int)
	// P2PAddrs, when set, gives each node's libp2p multiaddr (one per node) instead of Host and
	// BasePort: for clusters spread over machines.
	P2PAddrs []string
}

// NodeDirName is the folder of the node with share index i inside a cluster directory.
func NodeDirName(i int) string { return fmt.Sprintf("node%d", i) }

// CreateCluster splits fresh validator keys into shares and writes one folder per node (its
// keystores and password, its p2p identity and the shared cluster lock). It refuses an
// existing output directory rather than overwrite keys.
func CreateCluster(o CreateOptions) (*lock.Lock, error) {
	if err := signing.CheckThreshold(o.Threshold, o.Nodes, o.ForceThreshold); err != nil {
		return nil, err
	}
	if o.Validators < 1 {
		return nil, fmt.Errorf("need at least one validator, got %d", o.Validators)
	}
	if len(o.P2PAddrs) != 0 && len(o.P2PAddrs) != o.Nodes {
		return nil, fmt.Errorf("%d p2p addresses for %d nodes", len(o.P2PAddrs), o.Nodes)
	}
	if len(o.P2PAddrs) == 0 && (o.BasePort < 1 || o.BasePort+o.Nodes-1 > 65535) {
		return nil, fmt.Errorf("base port %d does not leave room for %d nodes", o.BasePort, o.Nodes)
	}
	if _, err := lock.DecodeHex(o.GenesisForkVersion, 4); err != nil {
		return nil, fmt.Errorf("genesis fork version %q: %w", o.GenesisForkVersion, err)
	}
	if _, err := os.Stat(o.OutDir); err == nil {
		return nil, fmt.Errorf("output directory %s already exists: refusing to overwrite key material", o.OutDir)
	}
	l := &lock.Lock{Version: lock.Version, Name: o.Name, Network: o.Network, GenesisForkVersion: o.GenesisForkVersion, Threshold: o.Threshold}
	keys := make([]crypto.PrivKey, o.Nodes)
	for i := range keys {
		k, err := p2p.GenerateKey()
		if err != nil {
			return nil, err
		}
		id, _ := peer.IDFromPrivateKey(k)
		keys[i] = k
		addr := fmt.Sprintf("/ip4/%s/tcp/%d", o.Host, o.BasePort+i)
		if len(o.P2PAddrs) != 0 {
			addr = o.P2PAddrs[i]
		}
		l.Operators = append(l.Operators, lock.Operator{PeerID: id.String(), Address: addr})
	}
	// shares[v][i] is node i's share of validator v.
	shares := make([][]*bls.SecretKey, o.Validators)
	for v := range shares {
		var secret bls.SecretKey
		secret.SetByCSPRNG()
		s, err := signing.Split(&secret, o.Threshold, o.Nodes)
		if err != nil {
			return nil, err
		}
		_ = secret.SetDecString("0") // the whole key is not needed past this point
		shares[v] = s
		val := lock.Validator{GroupPubkey: hexKey(s, o.Threshold)}
		for _, sh := range s {
			val.PublicShares = append(val.PublicShares, "0x"+hex.EncodeToString(sh.GetPublicKey().Serialize()))
		}
		l.Validators = append(l.Validators, val)
	}
	// Validate before anything is written: a bad address must not leave half a cluster behind.
	if h, err := l.ComputeHash(); err == nil {
		l.Hash = h
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	if err := l.Save(filepath.Join(o.OutDir, LockFileName)); err != nil {
		return nil, err
	}
	if o.KDF == "" {
		o.KDF = signing.KDFPBKDF2
	}
	var jobs []keystoreJob
	for i := 0; i < o.Nodes; i++ {
		js, err := writeNodeDir(filepath.Join(o.OutDir, NodeDirName(i+1)), l, keys[i], shares, i)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		jobs = append(jobs, js...)
	}
	if err := writeKeystores(jobs, o.KDF, o.Progress); err != nil {
		return nil, err
	}
	return l, nil
}

// keystoreJob is one keystore to encrypt and write.
type keystoreJob struct {
	path, password, description string
	key                         *bls.SecretKey
}

// writeKeystores encrypts and writes the keystores on every core: the KDF is the cost of
// creating a cluster (about 50 ms per keystore with PBKDF2, a second with scrypt).
func writeKeystores(jobs []keystoreJob, kdf string, progress func(done, total int)) error {
	work := make(chan keystoreJob)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	var done atomic.Int64
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				ks, err := signing.EncryptKeystoreKDF(j.key, j.password, j.description, kdf)
				if err == nil {
					err = signing.WriteKeystoreFile(j.path, ks)
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", j.path, err)
					continue
				}
				if d := done.Add(1); progress != nil {
					progress(int(d), len(jobs))
				}
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when no job failed
}

// hexKey returns the group key as the public shares interpolate it, so that the lock's group
// key is derived from the shares actually written.
func hexKey(shares []*bls.SecretKey, threshold int) string {
	pubs := map[uint64][]byte{}
	for i, s := range shares {
		pubs[uint64(i+1)] = s.GetPublicKey().Serialize()
	}
	gk, err := signing.RecoverPublicKey(pubs, threshold)
	if err != nil {
		return ""
	}
	return "0x" + hex.EncodeToString(gk)
}

// writeNodeDir writes node i's folder (lock, p2p key, password) and returns its keystores to write.
func writeNodeDir(dir string, l *lock.Lock, key crypto.PrivKey, shares [][]*bls.SecretKey, i int) ([]keystoreJob, error) {
	keysDir := filepath.Join(dir, KeysDirName)
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, fmt.Errorf("create node directory: %w", err)
	}
	if err := l.Save(filepath.Join(dir, LockFileName)); err != nil {
		return nil, err
	}
	if err := p2p.SaveKey(filepath.Join(dir, P2PKeyFileName), key); err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	password := hex.EncodeToString(pw)
	if err := os.WriteFile(filepath.Join(keysDir, PasswordFile), []byte(password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write password: %w", err)
	}
	jobs := make([]keystoreJob, len(shares))
	for v := range shares {
		jobs[v] = keystoreJob{path: filepath.Join(keysDir, KeystoreFileName(v)), password: password, key: shares[v][i],
			description: fmt.Sprintf("dvmesh %s share %d of validator %s", l.Name, i+1, l.Validators[v].GroupPubkey)}
	}
	return jobs, nil
}
