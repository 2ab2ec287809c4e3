package node

import (
	"crypto/rand"
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

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// CreateOptions describe a cluster to create on one machine (a trusted dealer: the full keys
// exist in this process for a moment; for keys no machine ever holds, use a DKG).
type CreateOptions struct {
	Name             string
	Nodes, Threshold int
	// Validators is how many fresh keys to generate; with ExistingKeys it must be 0 or their count.
	Validators     int
	OutDir         string
	ForceThreshold bool   // accept a threshold below ceil(2n/3) (still above n/2)
	Host           string // IP the nodes listen on, e.g. 127.0.0.1
	BasePort       int    // node i (1-based) listens on BasePort+i-1
	// Network is a built-in network name (see package network). A public network (mainnet,
	// hoodi, sepolia) sets the genesis fork version and genesis validators root; any other name
	// (devnet, or a local name such as simnet) is a chain whose values are not known in advance,
	// and needs GenesisForkVersion.
	Network string
	// GenesisForkVersion is 0x-hex, 4 bytes: required for a devnet; for a public network it may
	// be left empty, and must match the network's if given.
	GenesisForkVersion string
	// Proposals are the cluster-wide proposal and builder settings written into the lock (every
	// node signs blocks and registrations from them); nil leaves the cluster unable to propose.
	Proposals *lock.ProposalSettings
	// KDF is the keystores' EIP-2335 KDF: signing.KDFPBKDF2 (default) or signing.KDFScrypt.
	KDF string
	// Progress, when set, is called after each keystore written with the count done and the
	// total; calls never overlap.
	Progress func(done, total int)
	// P2PAddrs, when set, gives each node's libp2p multiaddr (one per node) instead of Host and
	// BasePort: for clusters spread over machines.
	P2PAddrs []string

	// WithdrawalAddress, when set (0x execution address), makes the cluster write deposit data
	// for every fresh validator: deposit-data-<time>.json in OutDir and in every node folder.
	WithdrawalAddress string
	// Compounding makes 0x02 (compounding, up to 2048 ETH) withdrawal credentials instead of 0x01.
	Compounding bool
	// DepositAmount is each deposit's amount; 0 means 32 ETH.
	DepositAmount phase0.Gwei
	// AllowPartialDeposit accepts an amount below 32 ETH (the validator then waits for a top-up).
	AllowPartialDeposit bool

	// ExistingKeys, when set, are split instead of generating fresh keys. They are already
	// deposited, so no deposit data is written for them (WithdrawalAddress must be empty).
	ExistingKeys []*bls.SecretKey
}

// Created is what Create made.
type Created struct {
	Lock *lock.Lock
	// DepositFile is the deposit-data file in OutDir, "" when none was written.
	DepositFile string
	// Warnings are things the operator must read (e.g. a partial deposit amount).
	Warnings []string
}

// NodeDirName is the folder of the node with share index i inside a cluster directory.
func NodeDirName(i int) string { return fmt.Sprintf("node%d", i) }

// CreateCluster is Create for callers that need only the lock.
func CreateCluster(o CreateOptions) (*lock.Lock, error) {
	c, err := Create(o)
	if err != nil {
		return nil, err
	}
	return c.Lock, nil
}

// Create splits fresh (or existing) validator keys into shares and writes one folder per node
// (its keystores and password, its p2p identity and the shared cluster lock), and the deposit
// data when asked. Everything is checked before the first file is written; it refuses an
// existing output directory rather than overwrite keys, and removes the directory it made if
// writing fails half-way.
func Create(o CreateOptions) (*Created, error) {
	if err := checkCreateOptions(&o); err != nil {
		return nil, err
	}
	net, err := resolveNetwork(o.Network, o.GenesisForkVersion)
	if err != nil {
		return nil, err
	}
	l := &lock.Lock{Version: lock.Version, Name: o.Name, Network: net.name, GenesisForkVersion: net.gfvHex,
		GenesisValidatorsRoot: net.gvrHex, Threshold: o.Threshold, Proposals: o.Proposals}
	keys, err := operatorKeys(l, o)
	if err != nil {
		return nil, err
	}
	shares, err := splitKeys(l, o)
	if err != nil {
		return nil, err
	}
	// Validate before anything is written: a bad address must not leave half a cluster behind.
	if h, err := l.ComputeHash(); err == nil {
		l.Hash = h
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	res := &Created{Lock: l}
	var deposits []*deposit.Data
	if o.WithdrawalAddress != "" {
		if deposits, res.Warnings, err = makeDeposits(l, shares, net, o); err != nil {
			return nil, err
		}
	}
	if err := writeCluster(o, l, keys, shares, deposits, res); err != nil {
		return nil, err
	}
	return res, nil
}

func checkCreateOptions(o *CreateOptions) error {
	if err := signing.CheckThreshold(o.Threshold, o.Nodes, o.ForceThreshold); err != nil {
		return err
	}
	if len(o.ExistingKeys) > 0 {
		if o.Validators != 0 && o.Validators != len(o.ExistingKeys) {
			return fmt.Errorf("%d validators asked for, but %d existing keys given: leave the count out when splitting existing keys",
				o.Validators, len(o.ExistingKeys))
		}
		if o.WithdrawalAddress != "" {
			return errors.New("existing keys are already deposited: no deposit data is made for them, so leave the withdrawal address out")
		}
		o.Validators = len(o.ExistingKeys)
	}
	if o.Validators < 1 {
		return fmt.Errorf("need at least one validator, got %d", o.Validators)
	}
	if len(o.P2PAddrs) != 0 && len(o.P2PAddrs) != o.Nodes {
		return fmt.Errorf("%d p2p addresses for %d nodes", len(o.P2PAddrs), o.Nodes)
	}
	if len(o.P2PAddrs) == 0 && (o.BasePort < 1 || o.BasePort+o.Nodes-1 > 65535) {
		return fmt.Errorf("base port %d does not leave room for %d nodes", o.BasePort, o.Nodes)
	}
	if o.OutDir == "" {
		return errors.New("no output directory")
	}
	if _, err := os.Stat(o.OutDir); err == nil {
		return fmt.Errorf("output directory %s already exists: refusing to overwrite key material", o.OutDir)
	}
	return nil
}

// chain is the network a cluster is created for.
type chain struct {
	name           string
	gfv            phase0.Version
	gfvHex, gvrHex string // as recorded in the lock; gvrHex "" when not known in advance
}

// resolveNetwork takes a public network's values from the built-in table and refuses a genesis
// fork version that contradicts them; any other network needs its genesis fork version.
func resolveNetwork(name, gfvFlag string) (chain, error) {
	if name == "" {
		return chain{}, fmt.Errorf("no network given: use one of %s", strings.Join(network.Names(), ", "))
	}
	var c chain
	if gfvFlag != "" {
		b, err := lock.DecodeHex(gfvFlag, 4)
		if err != nil {
			return c, fmt.Errorf("genesis fork version %q: %w (want 0x followed by 8 hex digits)", gfvFlag, err)
		}
		c.gfv = phase0.Version(b)
	}
	cfg, err := network.ByName(name)
	switch {
	case err == nil && cfg.Public:
		if gfvFlag != "" && c.gfv != cfg.GenesisForkVersion {
			return c, fmt.Errorf("genesis fork version %#x conflicts with %s's %#x: leave it out for a public network",
				c.gfv[:], cfg.Name, cfg.GenesisForkVersion[:])
		}
		c.name, c.gfv = cfg.Name, cfg.GenesisForkVersion
		c.gvrHex = fmt.Sprintf("%#x", cfg.GenesisValidatorsRoot[:])
	case gfvFlag == "":
		return c, fmt.Errorf("network %q: its genesis fork version is not known in advance: give it (the beacon node's "+
			"/eth/v1/beacon/genesis says it)", name)
	default:
		c.name = strings.ToLower(name)
	}
	// Canonical lower-case form: nodes compare it with the beacon node's as a string.
	c.gfvHex = fmt.Sprintf("%#x", c.gfv[:])
	return c, nil
}

// operatorKeys makes each node's libp2p identity and records the operators in the lock.
func operatorKeys(l *lock.Lock, o CreateOptions) ([]crypto.PrivKey, error) {
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
	return keys, nil
}

// splitKeys splits each validator key (fresh, or the existing ones) and records the validators
// in the lock. shares[v][i] is node i's share of validator v. The group key recorded is the one
// the public shares interpolate to, and it must equal the key that was split.
func splitKeys(l *lock.Lock, o CreateOptions) ([][]*bls.SecretKey, error) {
	shares := make([][]*bls.SecretKey, o.Validators)
	for v := range shares {
		var secret bls.SecretKey
		if len(o.ExistingKeys) > 0 {
			secret = *o.ExistingKeys[v]
		} else {
			secret.SetByCSPRNG()
		}
		want := "0x" + hex.EncodeToString(secret.GetPublicKey().Serialize())
		s, err := signing.Split(&secret, o.Threshold, o.Nodes)
		if err != nil {
			return nil, fmt.Errorf("validator %d: %w", v, err)
		}
		_ = secret.SetDecString("0") // this copy of the whole key is not needed past this point
		shares[v] = s
		val := lock.Validator{GroupPubkey: hexKey(s, o.Threshold)}
		if val.GroupPubkey != want {
			return nil, fmt.Errorf("validator %d: the shares interpolate to %s, not to the key %s that was split", v, val.GroupPubkey, want)
		}
		for _, sh := range s {
			val.PublicShares = append(val.PublicShares, "0x"+hex.EncodeToString(sh.GetPublicKey().Serialize()))
		}
		l.Validators = append(l.Validators, val)
	}
	return shares, nil
}

// makeDeposits signs every validator's deposit as the cluster would: each share signs the
// deposit root as a partial, the partials are combined, and deposit.New verifies the combined
// signature against the group key before the entry exists.
func makeDeposits(l *lock.Lock, shares [][]*bls.SecretKey, c chain, o CreateOptions) ([]*deposit.Data, []string, error) {
	addr, err := deposit.ParseAddress(o.WithdrawalAddress)
	if err != nil {
		return nil, nil, err
	}
	amount := o.DepositAmount
	if amount == 0 {
		amount = deposit.ActivationAmount
	}
	warning, err := deposit.CheckAmount(amount, o.Compounding, o.AllowPartialDeposit)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	if warning != "" {
		warnings = append(warnings, warning)
	}
	creds := deposit.WithdrawalCredentials(addr, o.Compounding)
	out := make([]*deposit.Data, len(shares))
	for v, pk := range l.GroupPubkeys() {
		root, err := deposit.SigningRoot(pk, creds, amount, c.gfv)
		if err != nil {
			return nil, nil, fmt.Errorf("validator %s: %w", l.Validators[v].GroupPubkey, err)
		}
		partials := make(map[uint64][]byte, len(shares[v]))
		for i, sh := range shares[v] {
			partials[uint64(i+1)] = sh.SignByte(root[:]).Serialize()
		}
		full, err := signing.RecoverSignature(partials, l.Threshold)
		if err != nil {
			return nil, nil, fmt.Errorf("validator %s: combine deposit signature: %w", l.Validators[v].GroupPubkey, err)
		}
		if out[v], err = deposit.New(pk, creds, amount, phase0.BLSSignature(full), c.gfv, c.name); err != nil {
			return nil, nil, fmt.Errorf("validator %s: %w", l.Validators[v].GroupPubkey, err)
		}
	}
	return out, warnings, nil
}

// writeCluster writes the output directory. It creates the directory itself (never reusing an
// existing one) and removes it again if anything fails, so a failure leaves nothing behind.
func writeCluster(o CreateOptions, l *lock.Lock, keys []crypto.PrivKey, shares [][]*bls.SecretKey, deposits []*deposit.Data, res *Created) (err error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(o.OutDir)), 0o700); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	if err := os.Mkdir(o.OutDir, 0o700); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(o.OutDir)
		}
	}()
	if err := l.Save(filepath.Join(o.OutDir, LockFileName)); err != nil {
		return err
	}
	if o.KDF == "" {
		o.KDF = signing.KDFPBKDF2
	}
	var jobs []keystoreJob
	for i := 0; i < o.Nodes; i++ {
		js, err := writeNodeDir(filepath.Join(o.OutDir, NodeDirName(i+1)), l, keys[i], shares, i)
		if err != nil {
			return fmt.Errorf("node %d: %w", i+1, err)
		}
		jobs = append(jobs, js...)
	}
	if err := writeKeystores(jobs, o.KDF, o.Progress); err != nil {
		return err
	}
	if len(deposits) == 0 {
		return nil
	}
	if res.DepositFile, err = deposit.WriteFile(o.OutDir, deposits); err != nil {
		return err
	}
	for i := 0; i < o.Nodes; i++ {
		dst := filepath.Join(o.OutDir, NodeDirName(i+1), filepath.Base(res.DepositFile))
		if err := copyFile(res.DepositFile, dst); err != nil {
			return fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	return nil
}

// copyFile copies src to a new file dst and syncs it.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return f.Close()
}

// keystoreJob is one keystore to encrypt and write.
type keystoreJob struct {
	path, password, description string
	key                         *bls.SecretKey
}

// writeKeystores encrypts and writes the keystores on every core: the KDF is the cost of
// creating a cluster (about 50 ms per keystore with PBKDF2, a second with scrypt). progress is
// called by one worker at a time, so it need not be safe for concurrent use.
func writeKeystores(jobs []keystoreJob, kdf string, progress func(done, total int)) error {
	work := make(chan keystoreJob)
	errs := make(chan error, len(jobs))
	var (
		wg         sync.WaitGroup
		progressMu sync.Mutex
		done       atomic.Int64
	)
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
					progressMu.Lock()
					progress(int(d), len(jobs))
					progressMu.Unlock()
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
