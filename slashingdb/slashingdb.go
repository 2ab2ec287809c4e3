// Package slashingdb is an EIP-3076 slashing-protection database on bbolt,
// keeping the complete signing history of every validator key.
//
// Every signing goes through CheckAndRecordAttestations or CheckAndRecordBlocks,
// which check a batch of requests and record the allowed ones in one bbolt write
// transaction (one commit, fsynced) before returning. A caller may release a
// signature only for a request whose Verdict is Allowed and only after the call
// returned without error.
//
// Concurrency: all methods are safe for concurrent use. bbolt admits one write
// transaction at a time, so concurrent callers, including callers for the same
// validator, are serialised: each check sees every record committed before it,
// and two conflicting requests can never both be allowed.
//
// Durability: the database is never opened with NoSync; a verdict is returned
// only after its transaction is on disk.
package slashingdb

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors returned by this package, wrapped with context; test them with errors.Is.
var (
	// ErrGenesisMismatch: the database or an interchange belongs to another chain.
	ErrGenesisMismatch = errors.New("genesis validators root mismatch")
	// ErrBadInterchange: an interchange document is malformed or unsupported.
	ErrBadInterchange = errors.New("invalid interchange")
	// ErrLocked: another process (or another handle) holds the database file.
	ErrLocked = errors.New("database file is locked by another user")
	// ErrCorrupt: stored data does not decode; the database must not be trusted.
	ErrCorrupt = errors.New("corrupt slashing database")
	// ErrUnsafeOptions: the database is configured in a way that loses writes.
	ErrUnsafeOptions = errors.New("unsafe database options")
)

// LockTimeout is how long Open waits for the file lock before failing with ErrLocked.
const LockTimeout = time.Second

// Rule names the reason a request was refused.
type Rule string

// Refusal reasons. A Verdict that allows a request has Rule "".
const (
	// RuleDoubleVote: an attestation with the same target epoch but another
	// source or signing root (or an unknown root) is stored.
	RuleDoubleVote Rule = "double_vote"
	// RuleSurrounding: the new attestation surrounds a stored one.
	RuleSurrounding Rule = "surrounding"
	// RuleSurrounded: the new attestation is surrounded by a stored one.
	RuleSurrounded Rule = "surrounded"
	// RuleSourceAfterTarget: source epoch > target epoch.
	RuleSourceAfterTarget Rule = "source_after_target"
	// RuleBelowSourceWatermark: source epoch < the lowest imported source epoch.
	RuleBelowSourceWatermark Rule = "below_source_watermark"
	// RuleAtOrBelowTargetWatermark: target epoch <= the lowest imported target epoch.
	RuleAtOrBelowTargetWatermark Rule = "at_or_below_target_watermark"
	// RuleDoubleBlock: a block with the same slot but another (or an unknown) signing root is stored.
	RuleDoubleBlock Rule = "double_block"
	// RuleAtOrBelowSlotWatermark: slot <= the lowest imported block slot.
	RuleAtOrBelowSlotWatermark Rule = "at_or_below_slot_watermark"
	// RuleStartupGuard: target epoch or slot at or below the start-up guard
	// raised by RaiseStartupGuard.
	RuleStartupGuard Rule = "startup_guard"
)

// AttestationRequest asks to sign an attestation for Pubkey.
type AttestationRequest struct {
	Pubkey      phase0.BLSPubKey
	SourceEpoch phase0.Epoch
	TargetEpoch phase0.Epoch
	SigningRoot phase0.Root
}

// BlockRequest asks to sign a block proposal for Pubkey.
type BlockRequest struct {
	Pubkey      phase0.BLSPubKey
	Slot        phase0.Slot
	SigningRoot phase0.Root
}

// Verdict is the answer to one request. Rule is "" when Allowed; Detail is a
// human-readable explanation of a refusal.
type Verdict struct {
	Allowed bool
	Rule    Rule
	Detail  string
}

func allow() Verdict { return Verdict{Allowed: true} }

func refuse(rule Rule, format string, args ...any) Verdict {
	return Verdict{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// DB is an open slashing-protection database bound to one genesis validators root.
type DB struct {
	bolt *bolt.DB
	gvr  phase0.Root
	path string
}

// Open opens (creating if needed) the database file at path for the chain with
// genesisValidatorsRoot. The file is locked exclusively; if another process or
// another open handle holds it, Open fails after LockTimeout with ErrLocked
// naming the file. A new database stores the root; an existing database bound to
// another root is refused with ErrGenesisMismatch.
func Open(path string, genesisValidatorsRoot phase0.Root) (*DB, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("slashingdb: open %s: %w (is another dvmesh process using this data directory?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	if bdb.NoSync {
		_ = bdb.Close()
		return nil, fmt.Errorf("slashingdb: open %s: NoSync is set: %w", path, ErrUnsafeOptions)
	}
	db := &DB{bolt: bdb, gvr: genesisValidatorsRoot, path: path}
	if err := bdb.Update(func(tx *bolt.Tx) error { return initSchema(tx, genesisValidatorsRoot) }); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	return db, nil
}

// Close releases the database and its file lock. Calls after Close fail.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("slashingdb: close %s: %w", db.path, err)
	}
	return nil
}

// GenesisValidatorsRoot returns the root the database is bound to.
func (db *DB) GenesisValidatorsRoot() phase0.Root { return db.gvr }

func checkGVR(stored []byte, want phase0.Root) error {
	if !bytes.Equal(stored, want[:]) {
		return fmt.Errorf("database has %#x, caller has %#x: %w", stored, want[:], ErrGenesisMismatch)
	}
	return nil
}
