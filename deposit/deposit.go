// Package deposit makes and checks validator deposits: withdrawal credentials, the deposit
// signing root, the amount rules, and the staking launchpad's deposit-data JSON file.
//
// A deposit is the one signature whose mistakes cost money for good: a deposit with a bad
// signature, a wrong fork version or a malformed withdrawal credential is accepted by the deposit
// contract and the ether is lost or locked. So New verifies every entry before it exists, and
// nothing here writes a file of unverified entries.
package deposit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// Amounts in gwei.
const (
	// MinAmount is the deposit contract's minimum: it reverts below 1 ETH.
	MinAmount phase0.Gwei = 1_000_000_000
	// ActivationAmount is what a new validator needs to activate, and the maximum effective
	// balance of a 0x01 validator.
	ActivationAmount phase0.Gwei = 32_000_000_000
	// MaxCompoundingAmount is the maximum effective balance of a 0x02 (compounding) validator
	// (EIP-7251).
	MaxCompoundingAmount phase0.Gwei = 2048_000_000_000
)

// Withdrawal credential prefixes.
const (
	ExecutionPrefix   = 0x01 // withdrawals to an execution address, 32 ETH effective balance
	CompoundingPrefix = 0x02 // same, compounding up to 2048 ETH (EIP-7251)
)

// DepositCLIVersion is written as deposit_cli_version: the version of ethstaker-deposit-cli
// whose deposit-data format these files reproduce. The launchpad reads the field as a semantic
// version, so it must be one.
const DepositCLIVersion = "2.7.0"

// ErrInvalid is returned for a deposit that must not be sent: bad signature, bad key, bad
// credentials, or an entry whose roots do not match its content.
var ErrInvalid = errors.New("invalid deposit")

// WithdrawalCredentials returns 0x01 || 11 zero bytes || addr, or with 0x02 when compounding.
func WithdrawalCredentials(addr [20]byte, compounding bool) phase0.Root {
	var c phase0.Root
	c[0] = ExecutionPrefix
	if compounding {
		c[0] = CompoundingPrefix
	}
	copy(c[12:], addr[:])
	return c
}

// ParseAddress parses a 0x-prefixed 20-byte execution address. The EIP-55 checksum is not
// checked: mixed case is accepted as given, so the operator must compare the address with care.
func ParseAddress(s string) ([20]byte, error) {
	var a [20]byte
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil || len(b) != len(a) || !strings.HasPrefix(strings.TrimSpace(s), "0x") {
		return a, fmt.Errorf("withdrawal address %q is not a 0x-prefixed 20-byte hex address", s)
	}
	copy(a[:], b)
	if a == ([20]byte{}) {
		return a, fmt.Errorf("withdrawal address %s is the zero address: withdrawals there are burnt", s)
	}
	return a, nil
}

// checkCredentials refuses anything but 0x01/0x02 credentials with 11 zero bytes: dvmesh makes
// no other kind, and a malformed credential locks the deposit for good.
func checkCredentials(creds phase0.Root) error {
	if creds[0] != ExecutionPrefix && creds[0] != CompoundingPrefix {
		return fmt.Errorf("%w: withdrawal credentials %#x: prefix %#02x, want 0x01 or 0x02", ErrInvalid, creds[:], creds[0])
	}
	if !bytes.Equal(creds[1:12], make([]byte, 11)) {
		return fmt.Errorf("%w: withdrawal credentials %#x: bytes 1..11 must be zero", ErrInvalid, creds[:])
	}
	return nil
}

// Domain returns compute_domain(DOMAIN_DEPOSIT, genesisForkVersion, zero root): deposits are
// signed without the genesis validators root so that they can be made before genesis, and they
// stay valid across forks.
func Domain(genesisForkVersion phase0.Version) (phase0.Domain, error) {
	return signing.ComputeDomain(signing.DomainDeposit, genesisForkVersion, phase0.Root{})
}

// SigningRoot is the root a deposit signs: DepositMessage{pubkey, credentials, amount} over the
// deposit domain.
func SigningRoot(pubkey phase0.BLSPubKey, creds phase0.Root, amount phase0.Gwei, genesisForkVersion phase0.Version) (phase0.Root, error) {
	domain, err := Domain(genesisForkVersion)
	if err != nil {
		return phase0.Root{}, fmt.Errorf("deposit domain: %w", err)
	}
	msg := &phase0.DepositMessage{PublicKey: pubkey, WithdrawalCredentials: bytes.Clone(creds[:]), Amount: amount}
	root, err := signing.SigningRoot(msg, domain)
	if err != nil {
		return phase0.Root{}, fmt.Errorf("deposit signing root: %w", err)
	}
	return root, nil
}

// CheckAmount applies the amount rules for a deposit that creates a validator. A new validator
// activates only with 32 ETH. Above that, a 0x01 validator's excess is swept back to the
// withdrawal address, so it is refused; a 0x02 (compounding) validator counts up to 2048 ETH, and
// more is refused. Below 32 ETH is an error unless allowPartial (the validator then waits for a
// top-up), in which case the warning says so. The returned warning may be "".
func CheckAmount(amount phase0.Gwei, compounding, allowPartial bool) (string, error) {
	eth := func(g phase0.Gwei) string { return fmt.Sprintf("%g ETH", float64(g)/1e9) }
	switch {
	case amount < MinAmount:
		return "", fmt.Errorf("deposit amount %d gwei is below the deposit contract's minimum of 1 ETH (%d gwei)", amount, MinAmount)
	case amount < ActivationAmount && !allowPartial:
		return "", fmt.Errorf("deposit amount %s is below the 32 ETH a new validator needs to activate: "+
			"deposit 32 ETH (%d gwei), or allow a partial deposit if you will top it up", eth(amount), ActivationAmount)
	case amount < ActivationAmount:
		return fmt.Sprintf("deposit amount %s is below 32 ETH: the validator will not activate until further deposits "+
			"bring it to 32 ETH", eth(amount)), nil
	case amount > ActivationAmount && !compounding:
		return "", fmt.Errorf("deposit amount %s is above 32 ETH, the maximum effective balance of a 0x01 validator: "+
			"the excess would only be swept back to the withdrawal address; deposit 32 ETH, or use compounding (0x02) "+
			"credentials for up to 2048 ETH", eth(amount))
	case amount > MaxCompoundingAmount:
		return "", fmt.Errorf("deposit amount %s is above 2048 ETH, the maximum effective balance of a compounding (0x02) "+
			"validator: the excess would not count; deposit at most %d gwei", eth(amount), MaxCompoundingAmount)
	}
	return "", nil
}

// Data is one entry of the staking launchpad's deposit-data JSON, as ethstaker-deposit-cli
// writes it: byte values as hex without 0x, amount as a JSON number of gwei.
type Data struct {
	Pubkey                string `json:"pubkey"`
	WithdrawalCredentials string `json:"withdrawal_credentials"`
	Amount                uint64 `json:"amount"`
	Signature             string `json:"signature"`
	DepositMessageRoot    string `json:"deposit_message_root"`
	DepositDataRoot       string `json:"deposit_data_root"`
	ForkVersion           string `json:"fork_version"`
	NetworkName           string `json:"network_name"`
	DepositCLIVersion     string `json:"deposit_cli_version"`
}

// New builds an entry from a full (for a cluster: combined) signature and verifies it against
// pubkey and the deposit signing root. An invalid signature is an error: a bad deposit loses
// the funds.
func New(pubkey phase0.BLSPubKey, creds phase0.Root, amount phase0.Gwei, sig phase0.BLSSignature,
	genesisForkVersion phase0.Version, networkName string,
) (*Data, error) {
	if err := checkCredentials(creds); err != nil {
		return nil, err
	}
	if amount < MinAmount {
		return nil, fmt.Errorf("%w: amount %d gwei is below the deposit contract's minimum %d", ErrInvalid, amount, MinAmount)
	}
	if networkName == "" {
		return nil, fmt.Errorf("%w: no network name", ErrInvalid)
	}
	root, err := SigningRoot(pubkey, creds, amount, genesisForkVersion)
	if err != nil {
		return nil, err
	}
	if err := signing.Verify(pubkey[:], root[:], sig[:]); err != nil {
		return nil, fmt.Errorf("%w: signature of validator %#x does not verify over its deposit (fork version %#x): %v",
			ErrInvalid, pubkey[:], genesisForkVersion[:], err)
	}
	msgRoot, dataRoot, err := roots(pubkey, creds, amount, sig)
	if err != nil {
		return nil, err
	}
	return &Data{
		Pubkey:                hex.EncodeToString(pubkey[:]),
		WithdrawalCredentials: hex.EncodeToString(creds[:]),
		Amount:                uint64(amount),
		Signature:             hex.EncodeToString(sig[:]),
		DepositMessageRoot:    hex.EncodeToString(msgRoot[:]),
		DepositDataRoot:       hex.EncodeToString(dataRoot[:]),
		ForkVersion:           hex.EncodeToString(genesisForkVersion[:]),
		NetworkName:           networkName,
		DepositCLIVersion:     DepositCLIVersion,
	}, nil
}

// roots returns hash_tree_root(DepositMessage) and hash_tree_root(DepositData): the launchpad
// checks the first, the deposit contract the second.
func roots(pubkey phase0.BLSPubKey, creds phase0.Root, amount phase0.Gwei, sig phase0.BLSSignature) (phase0.Root, phase0.Root, error) {
	msg := &phase0.DepositMessage{PublicKey: pubkey, WithdrawalCredentials: bytes.Clone(creds[:]), Amount: amount}
	msgRoot, err := msg.HashTreeRoot()
	if err != nil {
		return phase0.Root{}, phase0.Root{}, fmt.Errorf("deposit message root: %w", err)
	}
	data := &phase0.DepositData{PublicKey: pubkey, WithdrawalCredentials: bytes.Clone(creds[:]), Amount: amount, Signature: sig}
	dataRoot, err := data.HashTreeRoot()
	if err != nil {
		return phase0.Root{}, phase0.Root{}, fmt.Errorf("deposit data root: %w", err)
	}
	return msgRoot, dataRoot, nil
}

// Verify checks an entry as the launchpad would: its fork version is the expected one, the
// signature verifies over the deposit message, and both roots match the content. Use it on a
// file read back, or on one from another tool.
func (d *Data) Verify(genesisForkVersion phase0.Version) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, short(d.Pubkey), fmt.Sprintf(format, a...))
	}
	var (
		pk    phase0.BLSPubKey
		creds phase0.Root
		sig   phase0.BLSSignature
		fv    phase0.Version
		mr    phase0.Root
		dr    phase0.Root
	)
	for _, f := range []struct {
		name string
		in   string
		out  []byte
	}{
		{"pubkey", d.Pubkey, pk[:]}, {"withdrawal_credentials", d.WithdrawalCredentials, creds[:]},
		{"signature", d.Signature, sig[:]}, {"fork_version", d.ForkVersion, fv[:]},
		{"deposit_message_root", d.DepositMessageRoot, mr[:]}, {"deposit_data_root", d.DepositDataRoot, dr[:]},
	} {
		b, err := hex.DecodeString(f.in)
		if err != nil || len(b) != len(f.out) {
			return bad("%s is not %d bytes of hex without 0x", f.name, len(f.out))
		}
		copy(f.out, b)
	}
	if fv != genesisForkVersion {
		return bad("fork_version %#x, this network's is %#x", fv[:], genesisForkVersion[:])
	}
	root, err := SigningRoot(pk, creds, phase0.Gwei(d.Amount), fv)
	if err != nil {
		return err
	}
	if err := signing.Verify(pk[:], root[:], sig[:]); err != nil {
		return bad("signature: %v", err)
	}
	msgRoot, dataRoot, err := roots(pk, creds, phase0.Gwei(d.Amount), sig)
	if err != nil {
		return err
	}
	if msgRoot != mr {
		return bad("deposit_message_root %s, content gives %x", d.DepositMessageRoot, msgRoot[:])
	}
	if dataRoot != dr {
		return bad("deposit_data_root %s, content gives %x", d.DepositDataRoot, dataRoot[:])
	}
	return nil
}

func short(pubkey string) string {
	if len(pubkey) > 12 {
		return pubkey[:12] + "…"
	}
	return pubkey
}

// FilePrefix starts every deposit-data file name.
const FilePrefix = "deposit-data-"

// WriteFile writes entries as deposit-data-<unix time>.json into dir and returns its path. The
// file appears complete or not at all (temporary file, fsync, then a link to the final name,
// which fails rather than replace an existing file), and the directory is synced after.
// All entries must be for the same network, as the launchpad requires.
func WriteFile(dir string, entries []*Data) (string, error) {
	if len(entries) == 0 {
		return "", errors.New("deposit data: no entries to write")
	}
	for i, e := range entries {
		if e == nil {
			return "", fmt.Errorf("deposit data: entry %d is nil", i)
		}
		if e.ForkVersion != entries[0].ForkVersion || e.NetworkName != entries[0].NetworkName {
			return "", fmt.Errorf("deposit data: entry %d is for %s (%s), entry 0 for %s (%s): one file holds one network",
				i, e.NetworkName, e.ForkVersion, entries[0].NetworkName, entries[0].ForkVersion)
		}
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return "", fmt.Errorf("deposit data: encode: %w", err)
	}
	b = append(b, '\n')
	path := filepath.Join(dir, fmt.Sprintf("%s%d.json", FilePrefix, time.Now().Unix()))
	if err := writeAtomic(path, b, 0o644); err != nil {
		return "", fmt.Errorf("deposit data: %w", err)
	}
	return path, nil
}

// writeAtomic writes b to path through a synced temporary file in the same directory. It never
// replaces an existing file.
func writeAtomic(path string, b []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		_ = os.Remove(tmp.Name()) // after the link, or on failure
	}()
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to replace a deposit file (wait a second and retry)", path)
		}
		return fmt.Errorf("move into place: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads a deposit-data JSON file (a list of entries). It does not verify them: call
// Verify on each.
func ReadFile(path string) ([]*Data, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("deposit data: %w", err)
	}
	var out []*Data
	// Unknown fields are allowed: older deposit-cli versions wrote eth2_network_name.
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("deposit data %s: %w", path, err)
	}
	return out, nil
}
