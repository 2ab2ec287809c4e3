package node

import (
	"errors"
	"fmt"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// ErrInvalidDecided tags a decided value that failed this node's own checks. Raft tolerates
// crashes, not lies: any node that wins an election can decide, so every node checks the value
// against its own clock and beacon node before its slashing DB sees it.
var ErrInvalidDecided = errors.New("decided value refused")

// validateAttestationData checks decided attestation data for the duty at slot: the slot is the
// duty's and the current one, the target is the slot's epoch (a far-future target recorded in
// every DB would lock the validator out for good), and the source is not after the target nor
// after the justified epoch this node's own beacon node reports.
func validateAttestationData(d *phase0.AttestationData, slot, current phase0.Slot, slotEpoch, justified phase0.Epoch) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDecided, fmt.Sprintf(format, a...))
	}
	switch {
	case d == nil || d.Source == nil || d.Target == nil:
		return bad("incomplete attestation data")
	case d.Slot != slot:
		return bad("slot %d, duty is for slot %d", d.Slot, slot)
	case current != slot:
		return bad("duty slot %d is not the current slot %d", slot, current)
	case d.Index != 0:
		return bad("committee index %d, want 0 since Electra", d.Index)
	case d.Target.Epoch != slotEpoch:
		return bad("target epoch %d, slot %d is in epoch %d", d.Target.Epoch, slot, slotEpoch)
	case d.Source.Epoch > d.Target.Epoch:
		return bad("source epoch %d after target epoch %d", d.Source.Epoch, d.Target.Epoch)
	case d.Source.Epoch > justified:
		return bad("source epoch %d after the justified epoch %d of our beacon node", d.Source.Epoch, justified)
	}
	return nil
}
