package slashingdb

import (
	"fmt"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
)

// Register marks pubkeys as known with an empty history, so that requests for
// them are checked instead of refused with RuleUnknownValidator. It is idempotent:
// keys already known (registered or imported) keep their history and watermarks.
// Register only keys that have never signed elsewhere, or whose history was
// imported; this is what `dvmesh slashing init` does. All keys are stored in one
// transaction.
func (db *DB) Register(pubkeys []phase0.BLSPubKey) error {
	if err := db.lockWrite(); err != nil {
		return fmt.Errorf("slashingdb: register: %w", err)
	}
	defer db.mu.Unlock()
	var added []*validator
	seen := map[phase0.BLSPubKey]bool{}
	for _, pk := range pubkeys {
		if db.vals[pk] != nil || seen[pk] {
			continue
		}
		seen[pk] = true
		added = append(added, &validator{pubkey: pk, num: uint32(len(db.byNum) + len(added))})
	}
	if len(added) == 0 {
		return nil
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, v := range added {
			if err := saveValidator(tx, v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("slashingdb: register: %w", err)
	}
	db.addValidators(added)
	return nil
}

// addValidators puts committed new validators into the index.
func (db *DB) addValidators(added []*validator) {
	for _, v := range added {
		db.vals[v.pubkey] = v
		db.byNum = append(db.byNum, v)
	}
}

// Unknown returns the keys of pubkeys that are neither registered nor imported,
// in the order given (each once). A node should refuse to start, or ask the
// operator to run `dvmesh slashing init` or `dvmesh slashing import`, while it is
// not empty. After Close it returns every key.
func (db *DB) Unknown(pubkeys []phase0.BLSPubKey) []phase0.BLSPubKey {
	var out []phase0.BLSPubKey
	seen := map[phase0.BLSPubKey]bool{}
	closed := db.lockRead() != nil
	if !closed {
		defer db.mu.RUnlock()
	}
	for _, pk := range pubkeys {
		if seen[pk] {
			continue
		}
		seen[pk] = true
		if closed || db.vals[pk] == nil {
			out = append(out, pk)
		}
	}
	return out
}

// RaiseStartupGuard raises the start-up guard of each key so that afterwards no
// attestation with target epoch <= epoch and no block with slot <= slot is signed
// (RuleStartupGuard), except an identical re-sign of a stored record with a known
// root. It never touches the source watermark: honest attestations carry sources
// older than the current epoch. The guard never goes down: a lower value than the
// current one is ignored.
//
// The guard is in memory only and belongs to this open handle: it is lost at
// Close, and the node raises it again from the wall clock on every start (and
// after restoring a backup), so that history lost since the backup cannot lead to
// a slashable signature. It may be raised for keys that are not registered yet.
func (db *DB) RaiseStartupGuard(pubkeys []phase0.BLSPubKey, epoch phase0.Epoch, slot phase0.Slot) error {
	if err := db.lockWrite(); err != nil {
		return fmt.Errorf("slashingdb: raise start-up guard: %w", err)
	}
	defer db.mu.Unlock()
	for _, pk := range pubkeys {
		g, ok := db.guards[pk]
		if !ok || uint64(epoch) > g.epoch {
			g.epoch = uint64(epoch)
		}
		if !ok || uint64(slot) > g.slot {
			g.slot = uint64(slot)
		}
		db.guards[pk] = g
	}
	return nil
}
