package simbeacon

import (
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Counts are attester duty outcomes.
//
// For every attester duty (validator, slot): Correct if a valid attestation (served data, valid
// signature) arrived before the slot ended; Late if the first valid one arrived after the slot
// ended; Missing if no valid one arrived before the slot ended, counted once the slot has ended
// (so Late ⊆ Missing, and Correct + Missing == Expected for every ended slot). Duplicate valid
// submissions of the same duty, e.g. from several nodes of a cluster, count once.
//
// Wrong counts submissions, not duties: every submission refused for a bad signature, data that
// differs from what the simulator serves, no duty at that slot, a future slot, an unknown
// validator or a malformed body counts, each time.
type Counts struct {
	Expected uint64 `json:"expected"`
	Correct  uint64 `json:"correct"`
	Wrong    uint64 `json:"wrong"`
	Late     uint64 `json:"late"`
	Missing  uint64 `json:"missing"`
}

func (c *Counts) add(o Counts) {
	c.Expected += o.Expected
	c.Correct += o.Correct
	c.Wrong += o.Wrong
	c.Late += o.Late
	c.Missing += o.Missing
}

// SlotStats are the outcomes of one slot's attester duties.
type SlotStats struct {
	Slot phase0.Slot `json:"slot"`
	// Ended is set once the slot is over; Missing is only counted then.
	Ended bool `json:"ended"`
	Counts
}

// Failure describes one refused submission.
type Failure struct {
	Time time.Time `json:"time"`
	// Duty is the duty type of the submission (see DutyCounts).
	Duty string `json:"duty"`
	// Slot and ValidatorIndex are those the submission claimed (zero if it could not be parsed).
	Slot           phase0.Slot           `json:"slot"`
	ValidatorIndex phase0.ValidatorIndex `json:"validator_index"`
	Reason         string                `json:"reason"`
}

// Stats is a snapshot of the simulator's judgement.
type Stats struct {
	// Started is set once genesis has passed.
	Started     bool        `json:"started"`
	CurrentSlot phase0.Slot `json:"current_slot"`
	// Totals sums Slots and adds the wrong submissions that name no slot of the chain so far
	// (malformed bodies, future slots), so Totals.Wrong >= the sum of the rows' Wrong.
	Totals Counts `json:"totals"`
	// Slots has one row per slot from 0 to the current slot, in order.
	Slots []SlotStats `json:"slots"`
	// RecentFailures are the latest refused submissions of every duty type, oldest first (at
	// most maxFailures).
	RecentFailures []Failure `json:"recent_failures"`
	// Duties are the outcomes per duty type (every type of DutyTypes is present), summed over
	// the validators; see DutyCounts. Duties[DutyAttester] counts the same attestations as
	// Totals, with DutyCounts' semantics (Valid includes late ones, Missed equals
	// Totals.Missing, Invalid equals Totals.Wrong).
	Duties map[string]DutyCounts `json:"duties"`
	// ValidatorDuties are the outcomes per validator and duty type, for every validator with a
	// nonzero count.
	ValidatorDuties map[phase0.ValidatorIndex]map[string]DutyCounts `json:"validator_duties"`
}

// maxFailures bounds Stats.RecentFailures.
const maxFailures = 100

// slotRecord is what was submitted for one slot.
type slotRecord struct {
	onTime map[phase0.ValidatorIndex]struct{}
	late   map[phase0.ValidatorIndex]struct{}
	wrong  uint64
	// sigs are the signatures of the valid attestations, by committee and position in it.
	sigs map[phase0.CommitteeIndex]map[uint64]phase0.BLSSignature
}

// recordLocked returns the record of slot, creating it. s.mu must be held.
func (s *Sim) recordLocked(slot phase0.Slot) *slotRecord {
	r, ok := s.records[slot]
	if !ok {
		r = &slotRecord{
			onTime: map[phase0.ValidatorIndex]struct{}{},
			late:   map[phase0.ValidatorIndex]struct{}{},
			sigs:   map[phase0.CommitteeIndex]map[uint64]phase0.BLSSignature{},
		}
		s.records[slot] = r
	}
	return r
}

// recordValid counts a valid attestation of validator for slot, on time or late, and keeps its
// signature for aggregation.
func (s *Sim) recordValid(slot phase0.Slot, validator phase0.ValidatorIndex, late bool, d duty, sig phase0.BLSSignature) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recordLocked(slot)
	bySlot := r.sigs[d.committeeIndex]
	if bySlot == nil {
		bySlot = map[uint64]phase0.BLSSignature{}
		r.sigs[d.committeeIndex] = bySlot
	}
	bySlot[d.position] = sig
	if _, ok := r.onTime[validator]; ok {
		return
	}
	if late {
		r.late[validator] = struct{}{}
		return
	}
	r.onTime[validator] = struct{}{}
}

// recordWrong counts a refused attestation; attributed says whether slot is a slot of the chain
// so far (else it only counts in the totals). validator is unattributed for unparsable ones.
func (s *Sim) recordWrong(now time.Time, attributed bool, slot phase0.Slot, validator phase0.ValidatorIndex, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if attributed {
		s.recordLocked(slot).wrong++
	} else {
		s.unattrWrong++
	}
	s.dl.invalid[typeVal{DutyAttester, s.attribute(validator)}]++
	if validator == unattributed {
		validator = 0
	}
	s.failLocked(Failure{Time: now, Duty: DutyAttester, Slot: slot, ValidatorIndex: validator, Reason: reason})
}

// failLocked keeps f among the recent failures and logs it. s.mu must be held.
func (s *Sim) failLocked(f Failure) {
	if len(s.failures) == maxFailures {
		copy(s.failures, s.failures[1:])
		s.failures = s.failures[:maxFailures-1]
	}
	s.failures = append(s.failures, f)
	s.log.Warn("submission refused", "duty", f.Duty, "slot", uint64(f.Slot), "validator", uint64(f.ValidatorIndex), "reason", f.Reason)
}

// Stats returns the outcomes so far. Its cost grows with the number of slots since genesis.
func (s *Sim) Stats() Stats {
	c := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Started:        c.started,
		CurrentSlot:    c.slot,
		RecentFailures: append([]Failure{}, s.failures...),
		Slots:          []SlotStats{},
	}
	st.Totals.Wrong = s.unattrWrong
	st.Duties, st.ValidatorDuties = s.dutyStatsLocked(c)
	if !c.started {
		// Nothing can be attributed before genesis.
		for _, r := range s.records {
			st.Totals.Wrong += r.wrong
		}
		return st
	}
	st.Slots = make([]SlotStats, 0, int(c.slot)+1)
	for slot := phase0.Slot(0); slot <= c.slot; slot++ {
		row := SlotStats{Slot: slot, Ended: !c.now.Before(s.slotStart(c.genesis, slot+1))}
		row.Expected = s.expectedLocked(slot)
		if r, ok := s.records[slot]; ok {
			row.Correct = uint64(len(r.onTime))
			row.Late = uint64(len(r.late))
			row.Wrong = r.wrong
		}
		if row.Ended && row.Expected > row.Correct {
			row.Missing = row.Expected - row.Correct
		}
		st.Totals.add(row.Counts)
		st.Slots = append(st.Slots, row)
	}
	return st
}
