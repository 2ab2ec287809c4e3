package simbeacon

import (
	"net/http"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// handleAttesterDuties serves POST /eth/v1/validator/duties/attester/{epoch} with a body of
// decimal index strings. Every validator has exactly one duty per epoch, in committee 0 of its
// slot; unknown indices get no duty. Epochs beyond the current one plus one are refused with 400.
// Duties are answered in request order, with the epoch's dependent root.
func (s *Sim) handleAttesterDuties(w http.ResponseWriter, r *http.Request) {
	n, err := parseUint("epoch", r.PathValue("epoch"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	epoch := phase0.Epoch(n)
	if cur := s.epoch(s.clock().slot); epoch > cur+1 {
		writeError(w, http.StatusBadRequest, "epoch %d is beyond the next epoch %d", epoch, cur+1)
		return
	}
	var ids []string
	present, err := decodeBody(r, w, &ids)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v: want a JSON array of validator index strings", err)
		return
	}
	if !present {
		writeError(w, http.StatusBadRequest, "body missing: want a JSON array of validator index strings")
		return
	}
	duties := make([]*apiv1.AttesterDuty, 0, len(ids))
	for _, id := range ids {
		n, err := parseUint("validator index", id)
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if n >= uint64(len(s.cfg.Validators)) {
			continue
		}
		idx := phase0.ValidatorIndex(n)
		d := s.dutyOf(epoch, idx)
		duties = append(duties, &apiv1.AttesterDuty{
			PubKey:                  s.cfg.Validators[idx],
			Slot:                    d.slot,
			ValidatorIndex:          idx,
			CommitteeIndex:          0,
			CommitteeLength:         d.committeeLength,
			CommitteesAtSlot:        1,
			ValidatorCommitteeIndex: d.position,
		})
	}
	root := s.attesterDependentRoot(epoch)
	writeJSON(w, http.StatusOK, envelope{ExecutionOptimistic: falsePtr(), DependentRoot: &root, Data: duties})
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

// maxCommitteesPerSlot is the spec's MAX_COMMITTEES_PER_SLOT.
const maxCommitteesPerSlot = 64
