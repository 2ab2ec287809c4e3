package slashingdb

import (
	"errors"
	"fmt"
	"os"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// OpenExisting opens a database that already exists, bound to the genesis validators root it
// was created with (for tools such as export that do not know the chain).
func OpenExisting(path string) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	if err := checkFile(path); err != nil {
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	ro, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: LockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("slashingdb: open %s: %w (is a dvmesh node running on this data directory?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	var gvr phase0.Root
	err = ro.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("no meta bucket: %w", ErrCorrupt)
		}
		v := meta.Get(keyGVR)
		if len(v) != len(gvr) {
			return fmt.Errorf("no genesis validators root: %w", ErrCorrupt)
		}
		copy(gvr[:], v)
		return nil
	})
	if cerr := ro.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("slashingdb: open %s: %w", path, err)
	}
	return Open(path, gvr)
}

// LatestAttestationTarget returns the highest target epoch of pk's stored attestations.
func (db *DB) LatestAttestationTarget(pk phase0.BLSPubKey) (phase0.Epoch, bool) {
	if err := db.lockRead(); err != nil {
		return 0, false
	}
	defer db.mu.RUnlock()
	v, ok := db.vals[pk]
	if !ok || len(v.atts) == 0 {
		return 0, false
	}
	return phase0.Epoch(v.atts[len(v.atts)-1].target), true
}
