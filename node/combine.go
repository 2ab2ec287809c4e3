package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
)

// CombineOptions say which node folders of a cluster to rebuild the validator keys from.
type CombineOptions struct {
	ClusterDir string
	// Nodes are node folder names inside ClusterDir (node1, node3, ...); empty means every
	// node folder found there.
	Nodes  []string
	OutDir string // must not exist
	KDF    string // of the written keystores; default PBKDF2
}

// Combined is what Combine wrote.
type Combined struct {
	Lock         *lock.Lock
	Nodes        []string // the node folders used
	Keystores    []string // keystore-<i>.json per lock validator, each with keystore-<i>.txt beside it
	Interchange  string   // the merged EIP-3076 history
	Validators   int
	Attestations int // records in the merged history
	Blocks       int
}

// InterchangeFileName is the merged slashing-protection history Combine writes beside the keys.
const InterchangeFileName = "slashing-protection.json"

// Combine rebuilds every validator key of a cluster from the key shares of at least threshold
// node folders, checks each rebuilt key against the lock's group key, and writes the keys as
// EIP-2335 keystores (each with a fresh password in keystore-<i>.txt) together with the union of
// the chosen nodes' slashing-protection histories as one EIP-3076 interchange.
//
// Every chosen node must be stopped (its data directory is locked while Combine reads it) and
// must have its slashing DB: a key without the history of what the cluster signed must not exist.
// Nothing is written unless everything checks out, and a failure removes OutDir again.
func Combine(o CombineOptions) (*Combined, error) {
	if o.OutDir == "" {
		return nil, errors.New("combine: no output directory")
	}
	if _, err := os.Stat(o.OutDir); err == nil {
		return nil, fmt.Errorf("combine: output directory %s already exists: refusing to overwrite key material", o.OutDir)
	}
	dirs, err := combineNodeDirs(o)
	if err != nil {
		return nil, err
	}
	ids, err := loadCombineNodes(dirs)
	if err != nil {
		return nil, err
	}
	l := ids[0].Lock
	if len(ids) < l.Threshold {
		return nil, fmt.Errorf("combine: found the key shares of %d node(s) (%s), the cluster's threshold needs %d: "+
			"gather %d more node folders", len(ids), strings.Join(baseNames(dirs), ", "), l.Threshold, l.Threshold-len(ids))
	}
	unlock, err := lockStoppedNodes(dirs)
	defer unlock()
	if err != nil {
		return nil, err
	}
	keys, err := recoverKeys(ids)
	if err != nil {
		return nil, err
	}
	merged, err := mergeHistories(dirs)
	if err != nil {
		return nil, err
	}
	res := &Combined{Lock: l, Nodes: baseNames(dirs), Validators: len(keys),
		Attestations: merged.attestations(), Blocks: merged.blocks()}
	if err := writeCombined(o, keys, merged, res); err != nil {
		return nil, err
	}
	return res, nil
}

// combineNodeDirs lists the chosen node folders.
func combineNodeDirs(o CombineOptions) ([]string, error) {
	if len(o.Nodes) == 0 {
		found, err := filepath.Glob(filepath.Join(o.ClusterDir, "node*", LockFileName))
		if err != nil {
			return nil, fmt.Errorf("combine: %w", err)
		}
		var dirs []string
		for _, f := range found {
			dirs = append(dirs, filepath.Dir(f))
		}
		if len(dirs) == 0 {
			return nil, fmt.Errorf("combine: no node folders (node*/%s) in %s", LockFileName, o.ClusterDir)
		}
		return dirs, nil
	}
	var dirs []string
	for _, n := range o.Nodes {
		n = strings.TrimSpace(n)
		if n == "" || strings.ContainsAny(n, `/\`) || n == "." || n == ".." {
			return nil, fmt.Errorf("combine: node %q: give node folder names inside the cluster directory, such as node1", n)
		}
		d := filepath.Join(o.ClusterDir, n)
		if slices.Contains(dirs, d) {
			return nil, fmt.Errorf("combine: node %s given twice: each share counts once", n)
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// loadCombineNodes loads each node's identity (lock, p2p key, key shares, all checked against
// the lock). All must belong to the same cluster and hold different shares.
func loadCombineNodes(dirs []string) ([]*Identity, error) {
	var ids []*Identity
	for _, d := range dirs {
		id, err := LoadIdentity(filepath.Join(d, LockFileName), filepath.Join(d, P2PKeyFileName), filepath.Join(d, KeysDirName))
		if err != nil {
			return nil, fmt.Errorf("combine: node folder %s: %w", d, err)
		}
		if len(ids) > 0 {
			if id.Lock.Hash != ids[0].Lock.Hash {
				return nil, fmt.Errorf("combine: %s belongs to another cluster (lock %s) than %s (lock %s)", d, id.Lock.Hash, dirs[0], ids[0].Lock.Hash)
			}
			for i, prev := range ids {
				if prev.ShareIndex == id.ShareIndex {
					return nil, fmt.Errorf("combine: %s and %s hold the same share %d", dirs[i], d, id.ShareIndex)
				}
			}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// lockStoppedNodes checks that every node has its slashing DB and locks its data directory, so
// that a running node is refused and none can start while its history is read. The returned
// unlock releases every lock taken, also on error.
func lockStoppedNodes(dirs []string) (func(), error) {
	var unlocks []func()
	unlock := func() {
		for _, u := range unlocks {
			u()
		}
	}
	for _, d := range dirs {
		dataDir := filepath.Join(d, "data")
		if _, err := os.Stat(filepath.Join(dataDir, SlashingDBFile)); err != nil {
			return unlock, fmt.Errorf("combine: node folder %s has no slashing DB (%v): without the history of what the "+
				"cluster signed, a combined key could sign a slashable message; choose nodes whose data directory is intact", d, err)
		}
		u, err := LockDataDir(dataDir)
		if err != nil {
			return unlock, fmt.Errorf("combine: %w: stop that node first", err)
		}
		unlocks = append(unlocks, u)
	}
	return unlock, nil
}

// recoverKeys rebuilds each validator's key from the loaded shares and checks it against the
// lock's group key.
func recoverKeys(ids []*Identity) ([]*bls.SecretKey, error) {
	l := ids[0].Lock
	keys := make([]*bls.SecretKey, len(l.Validators))
	for v, gk := range l.GroupPubkeys() {
		shares := map[uint64]*bls.SecretKey{}
		for _, id := range ids {
			shares[id.ShareIndex] = id.Shares[gk]
		}
		sk, err := signing.RecoverSecretKey(shares, l.Threshold)
		if err != nil {
			return nil, fmt.Errorf("combine: validator %s: %w", l.Validators[v].GroupPubkey, err)
		}
		if !bytes.Equal(sk.GetPublicKey().Serialize(), gk[:]) {
			return nil, fmt.Errorf("combine: validator %s: the shares rebuild another key (%#x): a keystore does not match the lock",
				l.Validators[v].GroupPubkey, sk.GetPublicKey().Serialize())
		}
		keys[v] = sk
	}
	return keys, nil
}

// interchangeDoc is an EIP-3076 interchange, as much of it as merging needs.
type interchangeDoc struct {
	Metadata struct {
		Version string `json:"interchange_format_version"`
		GVR     string `json:"genesis_validators_root"`
	} `json:"metadata"`
	Data []interchangeEntry `json:"data"`
}

type interchangeEntry struct {
	Pubkey             string            `json:"pubkey"`
	SignedBlocks       []json.RawMessage `json:"signed_blocks"`
	SignedAttestations []json.RawMessage `json:"signed_attestations"`
}

func (d *interchangeDoc) attestations() (n int) {
	for _, e := range d.Data {
		n += len(e.SignedAttestations)
	}
	return n
}

func (d *interchangeDoc) blocks() (n int) {
	for _, e := range d.Data {
		n += len(e.SignedBlocks)
	}
	return n
}

// mergeHistories exports every chosen node's slashing DB and returns the union: per key every
// block and attestation any node recorded (each once). The DBs must be of the same chain.
func mergeHistories(dirs []string) (*interchangeDoc, error) {
	var merged *interchangeDoc
	byKey := map[string]int{}
	seen := map[string]bool{}
	for _, d := range dirs {
		doc, err := exportDB(filepath.Join(d, "data", SlashingDBFile))
		if err != nil {
			return nil, fmt.Errorf("combine: node folder %s: %w", d, err)
		}
		if merged == nil {
			merged = &interchangeDoc{Metadata: doc.Metadata}
		} else if doc.Metadata.GVR != merged.Metadata.GVR {
			return nil, fmt.Errorf("combine: the slashing DB of %s is for the chain with genesis validators root %s, that of %s for %s: "+
				"they cannot be merged", d, doc.Metadata.GVR, dirs[0], merged.Metadata.GVR)
		}
		for _, e := range doc.Data {
			i, ok := byKey[e.Pubkey]
			if !ok {
				i = len(merged.Data)
				byKey[e.Pubkey] = i
				merged.Data = append(merged.Data, interchangeEntry{Pubkey: e.Pubkey,
					SignedBlocks: []json.RawMessage{}, SignedAttestations: []json.RawMessage{}})
			}
			m := &merged.Data[i]
			for _, r := range e.SignedBlocks {
				if k := e.Pubkey + "b" + string(r); !seen[k] {
					seen[k] = true
					m.SignedBlocks = append(m.SignedBlocks, r)
				}
			}
			for _, r := range e.SignedAttestations {
				if k := e.Pubkey + "a" + string(r); !seen[k] {
					seen[k] = true
					m.SignedAttestations = append(m.SignedAttestations, r)
				}
			}
		}
	}
	return merged, nil
}

// exportDB exports one slashing DB through slashingdb's own EIP-3076 export.
func exportDB(path string) (*interchangeDoc, error) {
	db, err := slashingdb.OpenExisting(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var buf bytes.Buffer
	if err := db.ExportInterchange(&buf); err != nil {
		return nil, err
	}
	var doc interchangeDoc
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("read back export of %s: %w", path, err)
	}
	// Raw records are compared byte for byte: compact them so formatting cannot hide a duplicate.
	for i := range doc.Data {
		for _, rs := range [][]json.RawMessage{doc.Data[i].SignedBlocks, doc.Data[i].SignedAttestations} {
			for j, r := range rs {
				var c bytes.Buffer
				if err := json.Compact(&c, r); err != nil {
					return nil, fmt.Errorf("export of %s: %w", path, err)
				}
				rs[j] = c.Bytes()
			}
		}
	}
	return &doc, nil
}

// writeCombined writes the keystores, their passwords and the merged history into a new OutDir,
// removing it again on any failure.
func writeCombined(o CombineOptions, keys []*bls.SecretKey, merged *interchangeDoc, res *Combined) (err error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(o.OutDir)), 0o700); err != nil {
		return fmt.Errorf("combine: create output directory: %w", err)
	}
	if err := os.Mkdir(o.OutDir, 0o700); err != nil {
		return fmt.Errorf("combine: create output directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(o.OutDir)
		}
	}()
	b, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return fmt.Errorf("combine: encode interchange: %w", err)
	}
	res.Interchange = filepath.Join(o.OutDir, InterchangeFileName)
	if err := os.WriteFile(res.Interchange, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("combine: %w", err)
	}
	if o.KDF == "" {
		o.KDF = signing.KDFPBKDF2
	}
	jobs := make([]keystoreJob, len(keys))
	for v, sk := range keys {
		pw := make([]byte, 16)
		if _, err := rand.Read(pw); err != nil {
			return fmt.Errorf("combine: password: %w", err)
		}
		password := hex.EncodeToString(pw)
		path := filepath.Join(o.OutDir, KeystoreFileName(v))
		if err := os.WriteFile(strings.TrimSuffix(path, ".json")+".txt", []byte(password+"\n"), 0o600); err != nil {
			return fmt.Errorf("combine: write password: %w", err)
		}
		jobs[v] = keystoreJob{path: path, password: password, key: sk,
			description: fmt.Sprintf("dvmesh combine: whole key of validator %s of cluster %s", res.Lock.Validators[v].GroupPubkey, res.Lock.Name)}
		res.Keystores = append(res.Keystores, path)
	}
	return writeKeystores(jobs, o.KDF, nil)
}

func baseNames(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Base(d)
	}
	return out
}
