package lock

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/signing"
)

// DefinitionVersion is the cluster definition format this code writes and reads.
const DefinitionVersion = "dvmesh/definition/v1"

// Bounds of a definition: they bound the DKG's messages and memory too.
const (
	MaxOperators  = 64
	MaxValidators = 10000
)

// ErrBadDefinition is returned for a definition that is malformed, tampered with or not signed
// by every operator.
var ErrBadDefinition = errors.New("invalid cluster definition")

// Definition is the content of cluster-definition.json: what the operators agree to create, before
// any key exists. Each operator signs its hash with its libp2p key; a DKG ceremony starts only from
// a definition every operator signed, and the resulting lock records the definition's hash.
type Definition struct {
	Version string `json:"version"`
	// UUID is random per definition, so two ceremonies with the same settings never share a hash
	// (and no signature or DKG message of one can be replayed into the other).
	UUID               string `json:"uuid"`
	Name               string `json:"name"`
	CreatedAt          string `json:"created_at"` // RFC 3339, UTC
	Network            string `json:"network"`
	GenesisForkVersion string `json:"genesis_fork_version"`
	Threshold          int    `json:"threshold"`
	NumValidators      int    `json:"num_validators"`
	// WithdrawalAddress receives the validators' withdrawals: 0x01 credentials, or 0x02 with
	// Compounding.
	WithdrawalAddress string               `json:"withdrawal_address"`
	FeeRecipient      string               `json:"fee_recipient"`
	Compounding       bool                 `json:"compounding"`
	DepositAmountGwei uint64               `json:"deposit_amount_gwei"`
	Operators         []DefinitionOperator `json:"operators"`
	// DefinitionHash is the hex sha256 of the canonical JSON (encoding/json of this struct, whose
	// field order is fixed) with DefinitionHash and every signature empty.
	DefinitionHash string `json:"definition_hash"`
}

// DefinitionOperator is one operator of a definition: its position is its share index minus one.
type DefinitionOperator struct {
	PeerID  string `json:"peer_id"`
	Address string `json:"address"` // libp2p multiaddr the operator's node listens on
	// Signature is the operator's libp2p-key signature (hex) over DefinitionSignatureMessage.
	Signature string `json:"signature,omitempty"`
}

// DefinitionOptions are the settings of a new definition.
type DefinitionOptions struct {
	Name               string
	Network            string
	GenesisForkVersion string // 0x-hex, 4 bytes
	Threshold          int
	ForceThreshold     bool // accept a threshold below ceil(2n/3) (still above n/2)
	Validators         int
	WithdrawalAddress  string
	FeeRecipient       string
	Compounding        bool
	Operators          []Operator // peer ID and address of each operator, in share-index order
}

// NewDefinition makes an unsigned definition with a fresh UUID and the current time, and
// validates it.
func NewDefinition(o DefinitionOptions) (*Definition, error) {
	if err := signing.CheckThreshold(o.Threshold, len(o.Operators), o.ForceThreshold); err != nil {
		return nil, err
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return nil, fmt.Errorf("definition uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	d := &Definition{
		Version:            DefinitionVersion,
		UUID:               fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]),
		Name:               o.Name,
		CreatedAt:          time.Now().UTC().Format(time.RFC3339),
		Network:            o.Network,
		GenesisForkVersion: strings.ToLower(o.GenesisForkVersion),
		Threshold:          o.Threshold,
		NumValidators:      o.Validators,
		WithdrawalAddress:  o.WithdrawalAddress,
		FeeRecipient:       o.FeeRecipient,
		Compounding:        o.Compounding,
		DepositAmountGwei:  uint64(deposit.ActivationAmount),
	}
	for _, op := range o.Operators {
		d.Operators = append(d.Operators, DefinitionOperator{PeerID: op.PeerID, Address: op.Address})
	}
	h, err := d.ComputeHash()
	if err != nil {
		return nil, err
	}
	d.DefinitionHash = h
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// ComputeHash returns the definition hash: over everything but the hash and the signatures.
func (d *Definition) ComputeHash() (string, error) {
	c := *d
	c.DefinitionHash = ""
	c.Operators = make([]DefinitionOperator, len(d.Operators))
	for i, op := range d.Operators {
		c.Operators[i] = DefinitionOperator{PeerID: op.PeerID, Address: op.Address}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode definition: %w", err)
	}
	h := sha256.Sum256(b)
	return "0x" + hex.EncodeToString(h[:]), nil
}

// HashBytes returns the definition hash as 32 bytes. The definition must have passed Validate.
func (d *Definition) HashBytes() ([32]byte, error) {
	var out [32]byte
	b, err := DecodeHex(d.DefinitionHash, 32)
	if err != nil {
		return out, fmt.Errorf("%w: definition_hash: %v", ErrBadDefinition, err)
	}
	copy(out[:], b)
	return out, nil
}

// DefinitionSignatureMessage is what an operator signs to approve the definition with the given
// hash. Its domain prefix differs from the lock approval's, so neither can stand for the other.
func DefinitionSignatureMessage(definitionHash string) []byte {
	return append([]byte("dvmesh/definition-approval/v1:"), definitionHash...)
}

// Sign adds the signature of the operator whose libp2p key this is, after checking the
// definition (an operator must never sign a definition that does not validate).
func (d *Definition) Sign(key crypto.PrivKey) error {
	if err := d.Validate(); err != nil {
		return err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fmt.Errorf("p2p key: %w", err)
	}
	idx, ok := d.OperatorIndex(id)
	if !ok {
		return fmt.Errorf("%w: p2p key is peer %s, which is not an operator of the definition", ErrBadDefinition, id)
	}
	sig, err := SignAsPeer(key, DefinitionSignatureMessage(d.DefinitionHash))
	if err != nil {
		return err
	}
	d.Operators[idx-1].Signature = sig
	return nil
}

// OperatorIndex returns the share index (1..n) of the operator with the given peer ID.
func (d *Definition) OperatorIndex(id peer.ID) (int, bool) {
	for i, op := range d.Operators {
		if op.PeerID == id.String() {
			return i + 1, true
		}
	}
	return 0, false
}

// PeerIDs returns the operators' peer IDs in share-index order. The definition must have passed
// Validate.
func (d *Definition) PeerIDs() []peer.ID {
	ids := make([]peer.ID, len(d.Operators))
	for i, op := range d.Operators {
		ids[i], _ = peer.Decode(op.PeerID) // validated
	}
	return ids
}

// Validate checks the format, the hash and every signature present; it does not require every
// operator to have signed (VerifyAllSigned does).
func (d *Definition) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadDefinition, fmt.Sprintf(format, a...))
	}
	if d.Version != DefinitionVersion {
		return bad("version %q, want %q", d.Version, DefinitionVersion)
	}
	if len(d.UUID) != 36 {
		return bad("uuid %q", d.UUID)
	}
	if _, err := time.Parse(time.RFC3339, d.CreatedAt); err != nil {
		return bad("created_at %q: %v", d.CreatedAt, err)
	}
	if _, err := DecodeHex(d.GenesisForkVersion, 4); err != nil {
		return bad("genesis_fork_version %q: %v", d.GenesisForkVersion, err)
	}
	n := len(d.Operators)
	if n > MaxOperators {
		return bad("%d operators, at most %d", n, MaxOperators)
	}
	// The creator chose the threshold under the same rule (forcing it if below ceil(2n/3)), and
	// every operator signs the definition with the threshold in it.
	if err := signing.CheckThreshold(d.Threshold, n, true); err != nil {
		return bad("%v", err)
	}
	if d.NumValidators < 1 || d.NumValidators > MaxValidators {
		return bad("num_validators %d: want 1..%d", d.NumValidators, MaxValidators)
	}
	if _, err := ParseAddress(d.WithdrawalAddress); err != nil {
		return bad("withdrawal_address: %v", err)
	}
	if _, err := ParseAddress(d.FeeRecipient); err != nil {
		return bad("fee_recipient: %v", err)
	}
	// A ceremony's deposits create validators: the full activation amount, never a partial one.
	if _, err := deposit.CheckAmount(phase0.Gwei(d.DepositAmountGwei), d.Compounding, false); err != nil {
		return bad("deposit_amount_gwei: %v", err)
	}
	seen := map[string]bool{}
	for i, op := range d.Operators {
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
	want, err := d.ComputeHash()
	if err != nil {
		return err
	}
	if d.DefinitionHash != want {
		return bad("definition_hash %s does not match content (%s): the file was edited after it was created", d.DefinitionHash, want)
	}
	for i, op := range d.Operators {
		if op.Signature == "" {
			continue
		}
		if err := VerifyPeerSignature(op.PeerID, DefinitionSignatureMessage(d.DefinitionHash), op.Signature); err != nil {
			return bad("operator %d (%s): signature: %v", i+1, op.PeerID, err)
		}
	}
	return nil
}

// VerifyAllSigned validates the definition and requires every operator's signature: a ceremony
// must never start from settings an operator did not approve.
func (d *Definition) VerifyAllSigned() error {
	if err := d.Validate(); err != nil {
		return err
	}
	var missing []string
	for i, op := range d.Operators {
		if op.Signature == "" {
			missing = append(missing, fmt.Sprintf("operator %d (%s)", i+1, op.PeerID))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: not signed by %s (each operator runs: dvmesh sign-definition)", ErrBadDefinition, strings.Join(missing, ", "))
	}
	return nil
}

// ParseAddress decodes a 0x-prefixed 20-byte execution-layer address other than zero (funds
// sent to the zero address are lost), as the deposit package reads withdrawal addresses.
func ParseAddress(s string) ([20]byte, error) {
	a, err := deposit.ParseAddress(s)
	if err != nil {
		return a, err
	}
	if s != strings.TrimSpace(s) {
		return a, fmt.Errorf("address %q: surrounding spaces", s)
	}
	return a, nil
}

// ParseOperator reads an operator given as "<peer-id>@<multiaddr>" or as a multiaddr ending in
// "/p2p/<peer-id>" (the usual libp2p form).
func ParseOperator(s string) (Operator, error) {
	if id, addr, ok := strings.Cut(s, "@"); ok {
		pid, err := peer.Decode(id)
		if err != nil {
			return Operator{}, fmt.Errorf("operator %q: peer id: %w", s, err)
		}
		if _, err := ma.NewMultiaddr(addr); err != nil {
			return Operator{}, fmt.Errorf("operator %q: address: %w", s, err)
		}
		return Operator{PeerID: pid.String(), Address: addr}, nil
	}
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return Operator{}, fmt.Errorf("operator %q: want <peer-id>@<multiaddr> or <multiaddr>/p2p/<peer-id>: %w", s, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil || len(info.Addrs) != 1 {
		return Operator{}, fmt.Errorf("operator %q: want <peer-id>@<multiaddr> or <multiaddr>/p2p/<peer-id>", s)
	}
	return Operator{PeerID: info.ID.String(), Address: info.Addrs[0].String()}, nil
}

// LoadDefinition reads and validates a definition file (signatures are checked where present).
func LoadDefinition(path string) (*Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster definition: %w", err)
	}
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadDefinition, path, err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// MergeSignatures copies into d the signatures of other, a copy of the same definition that
// other operators signed: operators may sign copies in parallel and merge them afterwards.
func (d *Definition) MergeSignatures(other *Definition) error {
	if err := other.Validate(); err != nil {
		return err
	}
	if other.DefinitionHash != d.DefinitionHash || len(other.Operators) != len(d.Operators) {
		return fmt.Errorf("%w: cannot merge signatures of definition %s into %s: different definitions",
			ErrBadDefinition, other.DefinitionHash, d.DefinitionHash)
	}
	for i, op := range other.Operators {
		if op.Signature != "" && d.Operators[i].Signature == "" {
			d.Operators[i].Signature = op.Signature
		}
	}
	return d.Validate()
}

// Save writes the definition (its hash must be set: NewDefinition does it). It writes a
// temporary file and renames it, so that a crash never leaves half a definition behind.
func (d *Definition) Save(path string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encode definition: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write cluster definition: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write cluster definition: %w", err)
	}
	return nil
}
