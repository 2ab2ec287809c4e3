package simbeacon

import (
	"net/http"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// readIndices reads a body of decimal validator index strings, writing the 400 response and
// returning false if it is not one.
func readIndices(w http.ResponseWriter, r *http.Request) ([]phase0.ValidatorIndex, bool) {
	var ids []string
	present, err := decodeBody(r, w, &ids)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v: want a JSON array of validator index strings", err)
		return nil, false
	}
	if !present || ids == nil { // ids is nil for a JSON null
		writeError(w, http.StatusBadRequest, "body missing: want a JSON array of validator index strings")
		return nil, false
	}
	out := make([]phase0.ValidatorIndex, len(ids))
	for i, id := range ids {
		n, err := parseUint("validator index", id)
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return nil, false
		}
		out[i] = phase0.ValidatorIndex(n)
	}
	return out, true
}

// dutyEpoch parses the {epoch} path value and refuses epochs beyond the current one plus one.
func (s *Sim) dutyEpoch(w http.ResponseWriter, r *http.Request) (phase0.Epoch, bool) {
	n, err := parseUint("epoch", r.PathValue("epoch"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return 0, false
	}
	epoch := phase0.Epoch(n)
	if cur := s.epoch(s.clock().slot); epoch > cur+1 {
		writeError(w, http.StatusBadRequest, "epoch %d is beyond the next epoch %d", epoch, cur+1)
		return 0, false
	}
	return epoch, true
}

// handleAttesterDuties serves POST /eth/v1/validator/duties/attester/{epoch} with a body of
// decimal index strings. Every validator of the network has exactly one duty per epoch (see
// network.go); indices beyond the network get none. Epochs beyond the current one plus one are
// refused with 400. Duties are answered in request order, with the epoch's dependent root.
func (s *Sim) handleAttesterDuties(w http.ResponseWriter, r *http.Request) {
	epoch, ok := s.dutyEpoch(w, r)
	if !ok {
		return
	}
	indices, ok := readIndices(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	sh := s.shuffleLocked(epoch)
	root := s.attesterDependentRootLocked(epoch)
	s.mu.Unlock()
	duties := make([]*apiv1.AttesterDuty, 0, len(indices))
	for _, idx := range indices {
		if uint64(idx) >= s.n {
			continue
		}
		d := sh.dutyOf(idx)
		duties = append(duties, &apiv1.AttesterDuty{
			PubKey:                  s.pubkeyOf(idx),
			Slot:                    d.slot,
			ValidatorIndex:          idx,
			CommitteeIndex:          d.committeeIndex,
			CommitteeLength:         d.committeeLength,
			CommitteesAtSlot:        sh.cps,
			ValidatorCommitteeIndex: d.position,
		})
	}
	writeJSON(w, http.StatusOK, envelope{ExecutionOptimistic: falsePtr(), DependentRoot: &root, Data: duties})
}

// handleProposerDuties serves GET /eth/v1/validator/duties/proposer/{epoch}: the proposer of
// every slot of the epoch (slot 0, the genesis block, has none), for the current and the next
// epoch (400 beyond), with the dependent root (see network.go for who proposes).
func (s *Sim) handleProposerDuties(w http.ResponseWriter, r *http.Request) {
	epoch, ok := s.dutyEpoch(w, r)
	if !ok {
		return
	}
	duties := make([]*apiv1.ProposerDuty, 0, s.cfg.SlotsPerEpoch)
	s.mu.Lock()
	for slot := s.startSlot(epoch); slot < s.startSlot(epoch+1); slot++ {
		if p, ok := s.proposerLocked(slot); ok {
			duties = append(duties, &apiv1.ProposerDuty{PubKey: s.pubkeyOf(p), Slot: slot, ValidatorIndex: p})
		}
	}
	root := s.proposerDependentRootLocked(epoch)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope{ExecutionOptimistic: falsePtr(), DependentRoot: &root, Data: duties})
}

// handleSyncDuties serves POST /eth/v1/validator/duties/sync/{epoch} with a body of decimal index
// strings: the requested validators that sit in the sync committee of the epoch's period, with
// their seats, in request order. Epochs beyond the next sync committee period are refused with
// 400.
func (s *Sim) handleSyncDuties(w http.ResponseWriter, r *http.Request) {
	n, err := parseUint("epoch", r.PathValue("epoch"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	epoch := phase0.Epoch(n)
	if cur := syncPeriod(s.epoch(s.clock().slot)); syncPeriod(epoch) > cur+1 {
		writeError(w, http.StatusBadRequest, "epoch %d is beyond the next sync committee period %d", epoch, cur+1)
		return
	}
	indices, ok := readIndices(w, r)
	if !ok {
		return
	}
	sc := s.syncCommitteeOf(syncPeriod(epoch))
	duties := make([]*apiv1.SyncCommitteeDuty, 0)
	seen := map[phase0.ValidatorIndex]bool{}
	for _, idx := range indices {
		seats := sc.members[idx]
		if len(seats) == 0 || seen[idx] {
			continue
		}
		seen[idx] = true
		d := &apiv1.SyncCommitteeDuty{PubKey: s.pubkeyOf(idx), ValidatorIndex: idx}
		for _, seat := range seats {
			d.ValidatorSyncCommitteeIndices = append(d.ValidatorSyncCommitteeIndices, phase0.CommitteeIndex(seat))
		}
		duties = append(duties, d)
	}
	writeJSON(w, http.StatusOK, envelope{ExecutionOptimistic: falsePtr(), Data: duties})
}

// handleAttestationData serves GET /eth/v1/validator/attestation_data?slot=S&committee_index=C
// for slots at or before the current one (400 otherwise, and before genesis). The data is the
// same for every committee index (index 0, Electra style).
func (s *Sim) handleAttestationData(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	slot, err := parseUint("slot", q.Get("slot"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ci, err := parseUint("committee_index", q.Get("committee_index"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if ci >= maxCommitteesPerSlot {
		writeError(w, http.StatusBadRequest, "committee_index %d out of range", ci)
		return
	}
	c := s.clock()
	if !c.started {
		writeError(w, http.StatusBadRequest, "chain has not started")
		return
	}
	if phase0.Slot(slot) > c.slot {
		writeError(w, http.StatusBadRequest, "slot %d is in the future (current slot %d)", slot, c.slot)
		return
	}
	writeJSON(w, http.StatusOK, envelope{Data: s.attestationData(phase0.Slot(slot))})
}
