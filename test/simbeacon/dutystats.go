package simbeacon

import (
	"hash/fnv"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Duty types, the keys of Stats.Duties.
const (
	DutyAttester         = "attester"
	DutyProposer         = "proposer"
	DutyRandao           = "randao"
	DutyAggregator       = "aggregator"
	DutySyncMessage      = "sync_message"
	DutySyncContribution = "sync_contribution"
	DutyExit             = "exit"
	DutyRegistration     = "registration"
	DutyPrepareProposer  = "prepare_proposer"
)

// DutyTypes lists every duty type, in the order of a validator's work.
var DutyTypes = []string{
	DutyAttester, DutyAggregator, DutyProposer, DutyRandao, DutySyncMessage, DutySyncContribution,
	DutyExit, DutyRegistration, DutyPrepareProposer,
}

// DutyCounts are the outcomes of one duty type, counted per validator (a duty is one validator's
// task at one slot: e.g. attesting at slot s, or aggregating sync subcommittee i at slot s).
//
//   - Expected: duties the simulator assigned to configured validators at slots up to the current
//     one. attester: one per epoch per validator; proposer and randao: the validator's proposal
//     slots (randao is the reveal inside the proposal request); sync_message: every slot of a
//     period in which the validator sits in the sync committee. Aggregation is decided by the
//     validator's (combined) selection proof, which only the validator can compute, so
//     aggregator duties are expected once known: when a beacon committee subscription says
//     is_aggregator, when a valid selection proof that makes the validator an aggregator arrives
//     (inside an aggregate and proof), or in advance when the committee is so small that the
//     modulo is 1 (every member aggregates); sync_contribution duties are expected once a valid
//     selection proof that makes the validator a subcommittee aggregator arrives (inside a
//     contribution and proof). exit, registration and prepare_proposer are never expected.
//   - Submitted: submissions received in the validator's name (every one, duplicates included:
//     every node of a cluster may submit the same).
//   - Valid: distinct duties (or, for exit, registration and prepare_proposer, distinct
//     submitted contents) with at least one valid submission, at any time.
//   - Invalid: refused submissions (each).
//   - Missed: expected duties without a valid submission before the duty's slot ended, counted
//     once it has ended (late valid submissions count as Valid and as Missed).
//
// Submissions that cannot be attributed to a validator of the network (malformed bodies,
// unknown indices) count only in the per-type totals.
type DutyCounts struct {
	Expected  uint64 `json:"expected"`
	Submitted uint64 `json:"submitted"`
	Valid     uint64 `json:"valid"`
	Invalid   uint64 `json:"invalid"`
	Missed    uint64 `json:"missed"`
}

func (c *DutyCounts) add(o DutyCounts) {
	c.Expected += o.Expected
	c.Submitted += o.Submitted
	c.Valid += o.Valid
	c.Invalid += o.Invalid
	c.Missed += o.Missed
}

// unattributed stands for "no validator" in the duty records.
const unattributed = phase0.ValidatorIndex(^uint64(0))

// dutyKey names one duty: sub is the sync subcommittee for sync_contribution, a hash of the
// content for exit, registration and prepare_proposer, else 0.
type dutyKey struct {
	typ       string
	slot      phase0.Slot
	validator phase0.ValidatorIndex
	sub       uint64
}

// typeVal is a duty type and a validator (or unattributed).
type typeVal struct {
	typ       string
	validator phase0.ValidatorIndex
}

// dutyLog holds the per-type records. Guarded by Sim.mu.
type dutyLog struct {
	outcome   map[dutyKey]bool // valid duties (not attester duties, see slotRecord): on time?
	submitted map[typeVal]uint64
	invalid   map[typeVal]uint64
	valid     map[typeVal]uint64 // distinct valid duties
	expected  map[dutyKey]struct{}
}

func newDutyLog() dutyLog {
	return dutyLog{
		outcome:   map[dutyKey]bool{},
		submitted: map[typeVal]uint64{},
		invalid:   map[typeVal]uint64{},
		valid:     map[typeVal]uint64{},
		expected:  map[dutyKey]struct{}{},
	}
}

// attribute returns validator if it is a validator of the network, else unattributed.
func (s *Sim) attribute(validator phase0.ValidatorIndex) phase0.ValidatorIndex {
	if uint64(validator) < s.n {
		return validator
	}
	return unattributed
}

// noteSubmitted counts a submission of typ in validator's name.
func (s *Sim) noteSubmitted(typ string, validator phase0.ValidatorIndex) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dl.submitted[typeVal{typ, s.attribute(validator)}]++
}

// noteInvalid counts a refused submission and keeps it among the recent failures.
func (s *Sim) noteInvalid(now time.Time, typ string, slot phase0.Slot, validator phase0.ValidatorIndex, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dl.invalid[typeVal{typ, s.attribute(validator)}]++
	s.failLocked(Failure{Time: now, Duty: typ, Slot: slot, ValidatorIndex: validator, Reason: reason})
}

// noteValid counts a valid submission of duty k, on time or not; repeated submissions of a duty
// count once (on time if any was).
func (s *Sim) noteValid(k dutyKey, onTime bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, seen := s.dl.outcome[k]
	s.dl.outcome[k] = prev || onTime
	if !seen {
		s.dl.valid[typeVal{k.typ, s.attribute(k.validator)}]++
	}
}

// expectDuty records that duty k (aggregator or sync_contribution) is known to be due.
func (s *Sim) expectDuty(k dutyKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dl.expected[k] = struct{}{}
}

// contentKey hashes submitted content, to count distinct valid contents.
func contentKey(parts ...[]byte) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// dutyTally accumulates per-validator counts.
type dutyTally map[phase0.ValidatorIndex]map[string]*DutyCounts

func (t dutyTally) at(v phase0.ValidatorIndex, typ string) *DutyCounts {
	m := t[v]
	if m == nil {
		m = map[string]*DutyCounts{}
		t[v] = m
	}
	c := m[typ]
	if c == nil {
		c = &DutyCounts{}
		m[typ] = c
	}
	return c
}

// expect counts an expected duty of v, missed if ended without an on-time valid submission.
func (t dutyTally) expect(v phase0.ValidatorIndex, typ string, ended, onTime bool) {
	c := t.at(v, typ)
	c.Expected++
	if ended && !onTime {
		c.Missed++
	}
}

// dutyStatsLocked computes the per-type totals and the per-validator counts at c. s.mu must be
// held. Its cost grows with the slots since genesis times the configured validators.
func (s *Sim) dutyStatsLocked(c clock) (map[string]DutyCounts, map[phase0.ValidatorIndex]map[string]DutyCounts) {
	t := dutyTally{}
	for tv, n := range s.dl.submitted {
		t.at(tv.validator, tv.typ).Submitted += n
	}
	for tv, n := range s.dl.invalid {
		t.at(tv.validator, tv.typ).Invalid += n
	}
	for tv, n := range s.dl.valid {
		t.at(tv.validator, tv.typ).Valid += n
	}
	for _, r := range s.records {
		for v := range r.onTime {
			t.at(v, DutyAttester).Valid++
		}
		for v := range r.late {
			t.at(v, DutyAttester).Valid++
		}
	}
	if c.started {
		s.expectedDutiesLocked(c, t)
	}

	totals := map[string]DutyCounts{}
	for _, typ := range DutyTypes {
		totals[typ] = DutyCounts{}
	}
	perValidator := map[phase0.ValidatorIndex]map[string]DutyCounts{}
	for v, m := range t {
		var row map[string]DutyCounts
		if v != unattributed {
			row = map[string]DutyCounts{}
			perValidator[v] = row
		}
		for typ, dc := range m {
			tot := totals[typ]
			tot.add(*dc)
			totals[typ] = tot
			if row != nil {
				row[typ] = *dc
			}
		}
	}
	return totals, perValidator
}

// expectedDutiesLocked adds the expected and missed duties up to the current slot of c to t.
// s.mu must be held.
func (s *Sim) expectedDutiesLocked(c clock, t dutyTally) {
	cur := c.slot
	ended := func(slot phase0.Slot) bool { return slot < cur }

	// Attester duties, and aggregator duties known in advance (modulo 1).
	aggregators := map[dutyKey]struct{}{}
	for k := range s.dl.expected {
		if k.typ == DutyAggregator && k.slot <= cur {
			aggregators[k] = struct{}{}
		}
	}
	for e := phase0.Epoch(0); e <= s.epoch(cur); e++ {
		a := s.assignmentLocked(e)
		for i, d := range a.duties {
			if d.slot > cur {
				continue
			}
			v := phase0.ValidatorIndex(i)
			_, onTime := s.records[d.slot].onTimeOf(v)
			t.expect(v, DutyAttester, ended(d.slot), onTime)
			if aggregatorModulo(d.committeeLength) == 1 {
				aggregators[dutyKey{typ: DutyAggregator, slot: d.slot, validator: v}] = struct{}{}
			}
		}
	}
	for k := range aggregators {
		t.expect(k.validator, DutyAggregator, ended(k.slot), s.dl.outcome[k])
	}

	// Proposals and their randao reveals.
	for slot := phase0.Slot(1); slot <= cur; slot++ {
		p, ok := s.proposerLocked(slot)
		if !ok || !s.configured(p) {
			continue
		}
		t.expect(p, DutyProposer, ended(slot), s.dl.outcome[dutyKey{typ: DutyProposer, slot: slot, validator: p}])
		t.expect(p, DutyRandao, ended(slot), s.dl.outcome[dutyKey{typ: DutyRandao, slot: slot, validator: p}])
	}

	// Sync committee messages: every slot of a period the validator sits in.
	for slot := phase0.Slot(0); slot <= cur; slot++ {
		sc := s.syncCommitteeLocked(syncPeriod(s.epoch(slot)))
		for _, v := range sc.configured {
			t.expect(v, DutySyncMessage, ended(slot), s.dl.outcome[dutyKey{typ: DutySyncMessage, slot: slot, validator: v}])
		}
	}

	// Sync contributions known from selection proofs.
	for k := range s.dl.expected {
		if k.typ == DutySyncContribution && k.slot <= cur {
			t.expect(k.validator, DutySyncContribution, ended(k.slot), s.dl.outcome[k])
		}
	}
}

// onTimeOf reports whether validator's attestation in r is valid at all and on time; r may be
// nil.
func (r *slotRecord) onTimeOf(v phase0.ValidatorIndex) (valid, onTime bool) {
	if r == nil {
		return false, false
	}
	if _, ok := r.onTime[v]; ok {
		return true, true
	}
	_, late := r.late[v]
	return late, false
}
