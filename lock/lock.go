// Package lock defines the cluster lock: the file every node of a cluster shares, naming the
// operators (libp2p identities and addresses), the threshold, and for every distributed validator
// its group public key and each share's public key. A node trusts nothing that contradicts it.
package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dvmesh/dvmesh/signing"
)

// Version is the lock format this code writes and reads.
const Version = "dvmesh/lock/v1"

// ErrBadLock is returned for a lock file that is malformed, inconsistent or tampered with.
var ErrBadLock = errors.New("invalid cluster lock")

// Lock is the content of cluster-lock.json.
type Lock struct {
	Version            string `json:"version"`
	Name               string `json:"name"`
	Network            string `json:"network"`
	GenesisForkVersion string `json:"genesis_fork_version"`
	// GenesisValidatorsRoot is recorded where the network's is known in advance (public
	// networks); a node refuses a beacon node whose chain has another.
	GenesisValidatorsRoot string      `json:"genesis_validators_root,omitempty"`
	Threshold             int         `json:"threshold"`
	Operators             []Operator  `json:"operators"`
	Validators            []Validator `json:"validators"`
	// Proposals fixes what every node must sign identically for block proposals and builder
	// registrations: it comes from the lock only, because per-node settings that differ would
	// make partial signatures that never combine.
	Proposals *ProposalSettings `json:"proposals,omitempty"`
	// DefinitionHash is the hash of the cluster definition a DKG ceremony created this lock
	// from; empty for locks made by a trusted dealer (create-cluster).
	DefinitionHash string `json:"definition_hash,omitempty"`
	// Hash is the hex sha256 of the lock's canonical JSON with Hash and OperatorSignatures empty;
	// it catches corruption and hand edits.
	Hash string `json:"lock_hash"`
	// OperatorSignatures[i] is Operators[i]'s libp2p-key signature over the lock hash (see
	// OperatorSignatureMessage), hex: each operator approved this exact lock. Set by a DKG
	// ceremony; omitted (and not part of the hash) for locks made by create-cluster, so their
	// hashes are the same as before this field existed.
	OperatorSignatures []string `json:"operator_signatures,omitempty"`
}

// ProposalSettings are the cluster-wide proposal and builder settings.
type ProposalSettings struct {
	FeeRecipient string `json:"fee_recipient"` // 0x-hex execution address, 20 bytes
	// Builder enables MEV-boost: validator registrations are signed and submitted every epoch and
	// proposals ask for blocks with BuilderBoostFactor (100 = compare values as they are).
	Builder            bool   `json:"builder"`
	BuilderBoostFactor uint64 `json:"builder_boost_factor"`
	GasLimit           uint64 `json:"gas_limit"`
	// RegistrationTimestamp is the fixed timestamp of every validator registration, so that every
	// node signs the identical message.
	RegistrationTimestamp uint64 `json:"registration_timestamp"`
}

// FeeRecipientAddress decodes the fee recipient.
func (p *ProposalSettings) FeeRecipientAddress() ([20]byte, error) {
	var a [20]byte
	b, err := DecodeHex(p.FeeRecipient, 20)
	if err != nil {
		return a, fmt.Errorf("fee_recipient %q: %w", p.FeeRecipient, err)
	}
	copy(a[:], b)
	return a, nil
}

// Operator is one cluster node. Its share index is its position in Operators plus one.
type Operator struct {
	PeerID  string `json:"peer_id"`
	Address string `json:"address"` // libp2p multiaddr the node listens on, e.g. /ip4/127.0.0.1/tcp/3610
}

// Validator is one distributed validator.
type Validator struct {
	GroupPubkey string `json:"group_pubkey"`
	// PublicShares[i] is the public key of the share held by Operators[i] (share index i+1).
	PublicShares []string `json:"public_shares"`
}

// ComputeHash returns the lock hash over everything but the hash and the operator signatures
// (which sign the hash, so they cannot be part of it).
func (l *Lock) ComputeHash() (string, error) {
	c := *l
	c.Hash = ""
	c.OperatorSignatures = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode lock: %w", err)
	}
	h := sha256.Sum256(b)
	return "0x" + hex.EncodeToString(h[:]), nil
}

// Load reads, parses and fully validates a lock file.
func Load(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster lock: %w", err)
	}
	var l Lock
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadLock, path, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &l, nil
}

// Save writes the lock with its hash set.
func (l *Lock) Save(path string) error {
	h, err := l.ComputeHash()
	if err != nil {
		return err
	}
	l.Hash = h
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lock: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write cluster lock: %w", err)
	}
	return nil
}

// Validate checks the hash, the threshold rule, every identity and key, and that every
// validator's public shares interpolate to its group key (so no share set can sign for another key).
func (l *Lock) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadLock, fmt.Sprintf(format, a...))
	}
	if l.Version != Version {
		return bad("version %q, want %q", l.Version, Version)
	}
	want, err := l.ComputeHash()
	if err != nil {
		return err
	}
	if l.Hash != want {
		return bad("lock_hash %s does not match content (%s): the file was edited or corrupted", l.Hash, want)
	}
	n := len(l.Operators)
	// The lock was created under the same rule; a forced threshold below ceil(2n/3) is accepted here.
	if err := signing.CheckThreshold(l.Threshold, n, true); err != nil {
		return bad("%v", err)
	}
	seen := map[string]bool{}
	for i, op := range l.Operators {
		if _, err := peer.Decode(op.PeerID); err != nil {
			return bad("operator %d: peer_id %q: %v", i+1, op.PeerID, err)
		}
		if seen[op.PeerID] {
			return bad("operator %d: duplicate peer_id %s", i+1, op.PeerID)
		}
		seen[op.PeerID] = true
		if _, err := ma.NewMultiaddr(op.Address); err != nil {
			return bad("operator %d: address %q: %v", i+1, op.Address, err)
		}
	}
	if len(l.Validators) == 0 {
		return bad("no validators")
	}
	if p := l.Proposals; p != nil {
		if _, err := p.FeeRecipientAddress(); err != nil {
			return bad("proposals: %v", err)
		}
		if p.Builder && p.GasLimit == 0 {
			return bad("proposals: builder enabled without a gas_limit")
		}
	}
	for i, v := range l.Validators {
		if err := v.check(l.Threshold, n); err != nil {
			return bad("validator %d (%s): %v", i, v.GroupPubkey, err)
		}
	}
	// A DKG lock is only complete with every operator's approval; stripping the signatures
	// would otherwise turn it into an unapproved lock that still names the ceremony.
	if l.DefinitionHash != "" || len(l.OperatorSignatures) != 0 {
		if err := l.VerifyOperatorSignatures(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// OperatorSignatureMessage is what an operator signs with its libp2p key to approve the lock
// with the given hash. The domain prefix keeps a lock approval from being usable as any other
// signature of the same key (a definition signature, a libp2p record).
func OperatorSignatureMessage(lockHash string) []byte {
	return append([]byte("dvmesh/lock-approval/v1:"), lockHash...)
}

// VerifyOperatorSignatures checks that every operator signed the lock's hash with the libp2p
// key of its peer ID. The caller checks the hash itself (Validate does).
func (l *Lock) VerifyOperatorSignatures() error {
	if len(l.OperatorSignatures) != len(l.Operators) {
		return fmt.Errorf("%d operator signatures for %d operators", len(l.OperatorSignatures), len(l.Operators))
	}
	for i, op := range l.Operators {
		if err := VerifyPeerSignature(op.PeerID, OperatorSignatureMessage(l.Hash), l.OperatorSignatures[i]); err != nil {
			return fmt.Errorf("operator %d (%s) signature over the lock hash: %w", i+1, op.PeerID, err)
		}
	}
	return nil
}

// maxPeerSignatureLen bounds a libp2p signature (Ed25519: 64 bytes; other key types are larger).
const maxPeerSignatureLen = 1024

// VerifyPeerSignature checks a hex signature of msg by the libp2p key the peer ID embeds
// (Ed25519 IDs, the kind dvmesh makes, contain their public key).
func VerifyPeerSignature(peerID string, msg []byte, sigHex string) error {
	id, err := peer.Decode(peerID)
	if err != nil {
		return fmt.Errorf("peer id %q: %w", peerID, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("peer id %s does not embed its public key: %w", peerID, err)
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(sigHex, "0x"))
	if err != nil {
		return fmt.Errorf("signature: bad hex: %w", err)
	}
	if len(sig) == 0 || len(sig) > maxPeerSignatureLen {
		return fmt.Errorf("signature: %d bytes", len(sig))
	}
	ok, err := pub.Verify(msg, sig)
	if err != nil {
		return fmt.Errorf("verify signature: %w", err)
	}
	if !ok {
		return errors.New("signature does not verify")
	}
	return nil
}

// SignAsPeer signs msg with a libp2p key and returns the hex signature VerifyPeerSignature reads.
func SignAsPeer(key crypto.PrivKey, msg []byte) (string, error) {
	sig, err := key.Sign(msg)
	if err != nil {
		return "", fmt.Errorf("sign with p2p key: %w", err)
	}
	return "0x" + hex.EncodeToString(sig), nil
}

func (v *Validator) check(threshold, n int) error {
	group, err := DecodeHex(v.GroupPubkey, signing.PublicKeyLength)
	if err != nil {
		return fmt.Errorf("group_pubkey: %w", err)
	}
	if _, err := signing.ParsePublicKey(group); err != nil {
		return fmt.Errorf("group_pubkey: %w", err)
	}
	if len(v.PublicShares) != n {
		return fmt.Errorf("%d public shares for %d operators", len(v.PublicShares), n)
	}
	shares := make(map[uint64][]byte, n)
	for i, s := range v.PublicShares {
		b, err := DecodeHex(s, signing.PublicKeyLength)
		if err != nil {
			return fmt.Errorf("public share %d: %w", i+1, err)
		}
		if _, err := signing.ParsePublicKey(b); err != nil {
			return fmt.Errorf("public share %d: %w", i+1, err)
		}
		shares[uint64(i+1)] = b
	}
	// Every window of threshold consecutive shares must interpolate to the group key; together
	// the windows cover every share, so a single wrong share is caught.
	for start := 1; start+threshold-1 <= n; start++ {
		sub := make(map[uint64][]byte, threshold)
		for idx := start; idx < start+threshold; idx++ {
			sub[uint64(idx)] = shares[uint64(idx)]
		}
		got, err := signing.RecoverPublicKey(sub, threshold)
		if err != nil {
			return err
		}
		if hex.EncodeToString(got) != hex.EncodeToString(group) {
			return fmt.Errorf("public shares %d..%d do not interpolate to the group key", start, start+threshold-1)
		}
	}
	return nil
}

// ShareIndex returns the share index (1..n) of the operator with the given peer ID.
func (l *Lock) ShareIndex(id peer.ID) (uint64, bool) {
	for i, op := range l.Operators {
		if op.PeerID == id.String() {
			return uint64(i + 1), true
		}
	}
	return 0, false
}

// GroupPubkeys returns the validators' group public keys in lock order. The lock must have
// passed Validate (Load does it), which checked every key.
func (l *Lock) GroupPubkeys() []phase0.BLSPubKey {
	out := make([]phase0.BLSPubKey, len(l.Validators))
	for i, v := range l.Validators {
		b, _ := DecodeHex(v.GroupPubkey, len(out[i])) // validated on load
		copy(out[i][:], b)
	}
	return out
}

// PeerIDs returns the operators' peer IDs in share-index order.
func (l *Lock) PeerIDs() []peer.ID {
	ids := make([]peer.ID, len(l.Operators))
	for i, op := range l.Operators {
		ids[i], _ = peer.Decode(op.PeerID) // validated on load
	}
	return ids
}

// DecodeHex decodes 0x-prefixed (or bare) hex of exactly n bytes.
func DecodeHex(s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		return nil, fmt.Errorf("bad hex: %w", err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}
