package simbeacon

import (
	"net/http"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Liveness. A validator is live in an epoch when
//   - the simulator accepted a valid attestation of it with data in that epoch (on time or late,
//     from any submitter; refused submissions do not count), or
//   - MarkLive marked it live in that epoch, or
//   - it has a foreign signer (SetForeignSigner) and the epoch has started.

// MarkLive pretends that another machine attested for the validators in epoch: from now on they
// are reported live in that epoch. epoch may lie in the future; it is answered once it has begun.
func (s *Sim) MarkLive(epoch phase0.Epoch, indices ...phase0.ValidatorIndex) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(epoch, indices...)
	s.log.Info("marked live", "epoch", uint64(epoch), "validators", len(indices))
}

// SetForeignSigner switches a doppelganger of validator on or off. While on, the validator is
// reported live in every epoch that has started. Switching it off keeps it live in the epochs during
// which it was on (from the epoch it was switched on through the current one), as the attestations
// of a real doppelganger stay on record; other epochs go back to what was submitted and marked.
func (s *Sim) SetForeignSigner(index phase0.ValidatorIndex, on bool) {
	c := s.clock()
	cur := s.epoch(c.slot)
	s.mu.Lock()
	defer s.mu.Unlock()
	since, was := s.foreign[index]
	switch {
	case on && !was:
		s.foreign[index] = cur
	case !on && was:
		delete(s.foreign, index)
		for e := since; c.started && e <= cur; e++ {
			s.markLocked(e, index)
		}
	}
	s.log.Info("foreign signer", "validator", uint64(index), "on", on)
}

// markLocked marks the validators live in epoch. s.mu must be held.
func (s *Sim) markLocked(epoch phase0.Epoch, indices ...phase0.ValidatorIndex) {
	m, ok := s.marked[epoch]
	if !ok {
		m = make(map[phase0.ValidatorIndex]struct{}, len(indices))
		s.marked[epoch] = m
	}
	for _, i := range indices {
		m[i] = struct{}{}
	}
}

// liveLocked reports whether validator is live in epoch, which must not be beyond the current
// epoch of c. s.mu must be held.
func (s *Sim) liveLocked(c clock, epoch phase0.Epoch, index phase0.ValidatorIndex) bool {
	if _, ok := s.marked[epoch][index]; ok {
		return true
	}
	if _, ok := s.foreign[index]; ok && c.started {
		return true
	}
	if uint64(index) >= s.n {
		return false
	}
	// Valid attestations are only accepted at the validator's one duty slot of the epoch (under
	// the shuffling that was current then; a later Reorg may have moved the duty).
	for slot := s.startSlot(epoch); slot < s.startSlot(epoch+1); slot++ {
		if valid, _ := s.records[slot].onTimeOf(index); valid {
			return true
		}
	}
	return false
}

// handleValidatorLiveness serves POST /eth/v1/validator/liveness/{epoch} with a body of decimal
// index strings. Epochs beyond the current one are refused with 400; the current, previous and
// any older epoch are answered from what the simulator has recorded. Every requested index is
// answered, in request order; unknown validators are not live unless marked.
func (s *Sim) handleValidatorLiveness(w http.ResponseWriter, r *http.Request) {
	n, err := parseUint("epoch", r.PathValue("epoch"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	epoch := phase0.Epoch(n)
	c := s.clock()
	if cur := s.epoch(c.slot); epoch > cur {
		writeError(w, http.StatusBadRequest, "epoch %d is in the future (current epoch %d)", epoch, cur)
		return
	}
	indices, ok := readIndices(w, r)
	if !ok {
		return
	}
	out := make([]*apiv1.ValidatorLiveness, len(indices))
	s.mu.Lock()
	for i, idx := range indices {
		out[i] = &apiv1.ValidatorLiveness{Index: idx, IsLive: s.liveLocked(c, epoch, idx)}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope{Data: out})
}
