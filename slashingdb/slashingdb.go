// Package slashingdb is an EIP-3076 slashing-protection database on bbolt.
//
// Every signing goes through CheckAndRecordAttestations or CheckAndRecordBlocks,
// which check a batch of requests and record the allowed ones in one bbolt write
// transaction (one commit, fsynced) before returning. A caller may release a
// signature only for a request whose Verdict is Allowed and only after the call
// returned without error.
//
// Only known validators can sign: a key must be registered (Register, or an
// import that contains it) before any request for it is allowed.
//
// Checks run against an in-memory index of every validator's history, rebuilt
// from the append-only log on disk at Open and updated only after a write
// transaction has committed, so the index never claims a record that is not on
// disk. The stored history of each validator is kept never slashable (see
// checkInvariant), which is what lets a check look only at the neighbouring
// targets: O(log n) per request.
//
// Concurrency: all methods are safe for concurrent use. Writers (checks,
// imports, registration, pruning) are serialised by one lock held from the
// check through the commit to the index update: each check sees every record
// committed before it, and two conflicting requests can never both be allowed.
//
// Durability: the database is never opened with NoSync or NoFreelistSync; a
// verdict is returned only after its transaction is on disk.
package slashingdb

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
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
	// ErrCorrupt: stored data does not decode or breaks an invariant; the
	// database must not be trusted.
	ErrCorrupt = errors.New("corrupt slashing database")
	// ErrUnsafeOptions: the database is configured in a way that loses writes.
	ErrUnsafeOptions = errors.New("unsafe database options")
	// ErrClosed: the database was closed.
	ErrClosed = errors.New("slashing database is closed")
)

// LockTimeout is how long Open waits for the file lock before failing with ErrLocked.
const LockTimeout = time.Second

// Rule names the reason a request was refused.
type Rule string

// Refusal reasons. A Verdict that allows a request has Rule "".
const (
	// RuleUnknownValidator: the key was never registered or imported.
	RuleUnknownValidator Rule = "unknown_validator"
	// RuleDoubleVote: an attestation with the same target epoch but another
	// source or signing root (or an unknown root) is stored.
	RuleDoubleVote Rule = "double_vote"
	// RuleSurrounding: the new attestation surrounds a stored one.
	RuleSurrounding Rule = "surrounding"
	// RuleSurrounded: the new attestation is surrounded by a stored one.
	RuleSurrounded Rule = "surrounded"
	// RuleSourceAfterTarget: source epoch > target epoch.
	RuleSourceAfterTarget Rule = "source_after_target"
	// RuleBelowSourceWatermark: source epoch < the source low watermark.
	RuleBelowSourceWatermark Rule = "below_source_watermark"
	// RuleAtOrBelowTargetWatermark: target epoch <= the target low watermark.
	RuleAtOrBelowTargetWatermark Rule = "at_or_below_target_watermark"
	// RuleDoubleBlock: a block with the same slot but another (or an unknown) signing root is stored.
	RuleDoubleBlock Rule = "double_block"
	// RuleAtOrBelowSlotWatermark: slot <= the slot low watermark.
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

func refuseUnknown(pk phase0.BLSPubKey) Verdict {
	return refuse(RuleUnknownValidator, "validator %#x is unknown to this slashing database: "+
		"run `dvmesh slashing init` if this key has never signed elsewhere, "+
		"or import its history with `dvmesh slashing import`", pk[:])
}

// DB is an open slashing-protection database bound to one genesis validators root.
type DB struct {
	bolt *bolt.DB
	gvr  phase0.Root
	path string

	// mu guards everything below. Writers hold it exclusively from the check
	// through the commit to the index update; readers share it.
	mu      sync.RWMutex
	closed  bool
	vals    map[phase0.BLSPubKey]*validator
	byNum   []*validator // index = validator number
	nextSeq uint64       // key of the next log entry
	guards  map[phase0.BLSPubKey]guard
}

// Open opens (creating if needed) the database file at path for the chain with
// genesisValidatorsRoot, and rebuilds the in-memory index from the file. The
// file is locked exclusively; if another process or another open handle holds
// it, Open fails after LockTimeout with ErrLocked naming the file. A new database
// stores the root; an existing database bound to another root is refused with
// ErrGenesisMismatch. A truncated or corrupt file fails with an error naming the
// file (ErrCorrupt when the damage is in data this package wrote).
func Open(path string, genesisValidatorsRoot phase0.Root) (db *DB, err error) {
	var bdb *bolt.DB
	defer func() {
		// bbolt panics on some kinds of page corruption; never let that escape.
		if r := recover(); r != nil {
			if bdb != nil {
				_ = bdb.Close()
			}
			db, err = nil, fmt.Errorf("slashingdb: open %s: reading the file failed (%v): %w", path, r, ErrCorrupt)
		}
	}()
	if err := checkFile(path); err != nil {
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	// Turn memory faults on a damaged mapping into panics that the recover above
	// reports, for what checkFile cannot see.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	bdb, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("slashingdb: open %s: %w (is another dvmesh process using this data directory?)", path, ErrLocked)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
			errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
			return nil, fmt.Errorf("slashingdb: open %s: %v: %w", path, err, ErrCorrupt)
		}
		return nil, fmt.Errorf("slashingdb: open %s: %w (the file may be truncated or not a slashing database)", path, err)
	}
	if bdb.NoSync || bdb.NoFreelistSync {
		_ = bdb.Close()
		return nil, fmt.Errorf("slashingdb: open %s: NoSync or NoFreelistSync is set: %w", path, ErrUnsafeOptions)
	}
	db = &DB{bolt: bdb, gvr: genesisValidatorsRoot, path: path, guards: map[phase0.BLSPubKey]guard{}}
	if err := bdb.Update(func(tx *bolt.Tx) error { return initSchema(tx, genesisValidatorsRoot) }); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	if err := bdb.View(db.load); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	return db, nil
}

// Close releases the database and its file lock. Calls after Close fail with ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("slashingdb: close %s: %w", db.path, err)
	}
	return nil
}

// GenesisValidatorsRoot returns the root the database is bound to.
func (db *DB) GenesisValidatorsRoot() phase0.Root { return db.gvr }

// lockWrite takes the writer lock; the caller must unlock it.
func (db *DB) lockWrite() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) lockRead() error {
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	return nil
}
