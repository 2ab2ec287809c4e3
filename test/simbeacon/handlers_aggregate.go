package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// handleBeaconCommitteeSubscriptions serves POST /eth/v1/validator/beacon_committee_subscriptions:
// a JSON array of subscriptions. Each must name a validator of the network with its attester duty
// at the slot in that committee, with the slot's committee count, for an epoch up to the next
// one; is_aggregator = true makes the aggregator duty expected (see DutyCounts). 400 with indexed
// failures for the others.
func (s *Sim) handleBeaconCommitteeSubscriptions(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	var subs []json.RawMessage
	present, err := decodeBody(r, w, &subs)
	if err == nil && (!present || subs == nil) {
		err = fmt.Errorf("body missing")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v: want a JSON array of beacon committee subscriptions", err)
		return
	}
	c := s.clock()
	var failures []indexedFailure
	for i, m := range subs {
		var sub apiv1.BeaconCommitteeSubscription
		reason := ""
		if err := json.Unmarshal(m, &sub); err != nil {
			reason = fmt.Sprintf("invalid subscription: %v", err)
		} else {
			reason = s.checkSubscription(c, &sub)
		}
		if reason != "" {
			failures = append(failures, indexedFailure{Index: i, Message: reason})
			s.mu.Lock()
			s.failLocked(Failure{Time: now, Duty: DutyAggregator, Slot: sub.Slot, ValidatorIndex: sub.ValidatorIndex, Reason: "subscription: " + reason})
			s.mu.Unlock()
			continue
		}
		if sub.IsAggregator && s.configured(sub.ValidatorIndex) {
			s.expectDuty(dutyKey{typ: DutyAggregator, slot: sub.Slot, validator: sub.ValidatorIndex})
		}
	}
	if len(failures) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Code: http.StatusBadRequest, Message: "some subscriptions failed", Failures: failures})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// checkSubscription returns why sub is refused at c, or "".
func (s *Sim) checkSubscription(c clock, sub *apiv1.BeaconCommitteeSubscription) string {
	epoch := s.epoch(sub.Slot)
	switch {
	case uint64(sub.ValidatorIndex) >= s.n:
		return fmt.Sprintf("unknown validator index %d", sub.ValidatorIndex)
	case epoch > s.epoch(c.slot)+1:
		return fmt.Sprintf("slot %d is beyond the next epoch", sub.Slot)
	}
	sh := s.shuffle(epoch)
	d := sh.dutyOf(sub.ValidatorIndex)
	switch {
	case d.slot != sub.Slot || d.committeeIndex != sub.CommitteeIndex:
		return fmt.Sprintf("validator %d attests at slot %d in committee %d, not slot %d committee %d",
			sub.ValidatorIndex, d.slot, d.committeeIndex, sub.Slot, sub.CommitteeIndex)
	case sub.CommitteesAtSlot != sh.cps:
		return fmt.Sprintf("committees_at_slot %d, want %d", sub.CommitteesAtSlot, sh.cps)
	}
	return ""
}

// handleAggregateAttestation serves GET /eth/v2/validator/aggregate_attestation?
// attestation_data_root=..&slot=..&committee_index=..: the aggregate of the valid attestations
// the simulator received for that committee (aggregation bits of the attesters, the committee
// bit, the aggregate signature), as a Fulu Attestation. 404 if none arrived or the root is not
// the slot's attestation data root; 400 for malformed requests and future slots.
func (s *Sim) handleAggregateAttestation(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	slotN, err := parseUint("slot", q.Get("slot"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ci, err := parseUint("committee_index", q.Get("committee_index"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var want phase0.Root
	if err := parseHexQuery("attestation_data_root", q.Get("attestation_data_root"), want[:]); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	slot := phase0.Slot(slotN)
	c := s.clock()
	if !c.started || slot > c.slot {
		writeError(w, http.StatusBadRequest, "slot %d is in the future (current slot %d)", slot, c.slot)
		return
	}
	data := s.attestationData(slot)
	root, err := data.HashTreeRoot()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "data root: %v", err)
		return
	}
	if root != want {
		writeError(w, http.StatusNotFound, "no attestation at slot %d has data root %#x", slot, want)
		return
	}
	length := s.shuffle(s.epoch(slot)).committeeLength(slot, phase0.CommitteeIndex(ci))
	if length == 0 {
		writeError(w, http.StatusBadRequest, "slot %d has no committee %d", slot, ci)
		return
	}
	s.mu.Lock()
	var positions []uint64
	var sigs []phase0.BLSSignature
	if rec := s.records[slot]; rec != nil {
		for p := range rec.sigs[phase0.CommitteeIndex(ci)] {
			if p < length {
				positions = append(positions, p)
			}
		}
		sort.Slice(positions, func(i, j int) bool { return positions[i] < positions[j] })
		for _, p := range positions {
			sigs = append(sigs, rec.sigs[phase0.CommitteeIndex(ci)][p])
		}
	}
	s.mu.Unlock()
	if len(sigs) == 0 {
		writeError(w, http.StatusNotFound, "no attestation for committee %d at slot %d has arrived", ci, slot)
		return
	}
	agg, err := aggregateSignatures(sigs)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "aggregate: %v", err)
		return
	}
	bits := bitfield.NewBitlist(length)
	for _, p := range positions {
		bits.SetBitAt(p, true)
	}
	committees := bitfield.NewBitvector64()
	committees.SetBitAt(ci, true)
	att := &electra.Attestation{AggregationBits: bits, Data: data, Signature: agg, CommitteeBits: committees}
	w.Header().Set("Eth-Consensus-Version", consensusVersion)
	writeJSON(w, http.StatusOK, envelope{Version: consensusVersion, Data: att})
}

// handleSubmitAggregates serves POST /eth/v2/validator/aggregate_and_proofs: a JSON array of Fulu
// SignedAggregateAndProof with Eth-Consensus-Version: fulu (see checkAggregate).
func (s *Sim) handleSubmitAggregates(w http.ResponseWriter, r *http.Request) {
	s.servePool(w, r, DutyAggregator, "SignedAggregateAndProof", consensusVersion, func(now time.Time, c clock, raw json.RawMessage) verdict {
		var sa electra.SignedAggregateAndProof
		if err := json.Unmarshal(raw, &sa); err != nil {
			return refuse(unattributed, 0, "invalid SignedAggregateAndProof: %v", err)
		}
		if sa.Message == nil || sa.Message.Aggregate == nil || sa.Message.Aggregate.Data == nil {
			return refuse(unattributed, 0, "SignedAggregateAndProof without aggregate")
		}
		return s.checkAggregate(now, c, &sa)
	})
}

// checkAggregate judges a signed aggregate and proof, per the spec's gossip rules as far as the
// simulator can: the aggregate's data must be what the simulator serves for its slot (not in the
// future), exactly one committee bit must name a committee of the slot whose length the
// aggregation bits have, with at least one bit set; the aggregator must be a member of that
// committee; its selection proof (DOMAIN_SELECTION_PROOF over the slot) must verify and make it an
// aggregator (is_aggregator with modulo max(1, len/TARGET_AGGREGATORS_PER_COMMITTEE)); the
// aggregate signature must verify against the attesters the bits name (DOMAIN_BEACON_ATTESTER);
// and the aggregate-and-proof signature must verify (DOMAIN_AGGREGATE_AND_PROOF).
func (s *Sim) checkAggregate(now time.Time, c clock, sa *electra.SignedAggregateAndProof) verdict {
	m := sa.Message
	agg := m.Aggregate
	data := agg.Data
	slot, v := data.Slot, m.AggregatorIndex
	if uint64(v) >= s.n {
		return refuse(unattributed, slot, "unknown aggregator index %d", v)
	}
	if !c.started || slot > c.slot {
		return refuse(v, slot, "slot %d is in the future (current slot %d)", slot, c.slot)
	}
	if reason := dataMismatch(data, s.attestationData(slot)); reason != "" {
		return refuse(v, slot, "%s", reason)
	}
	committeeBits := agg.CommitteeBits.BitIndices()
	if len(committeeBits) != 1 {
		return refuse(v, slot, "%d committee bits set, want 1", len(committeeBits))
	}
	ci := phase0.CommitteeIndex(committeeBits[0])
	sh := s.shuffle(s.epoch(slot))
	members := sh.committee(slot, ci)
	if len(members) == 0 {
		return refuse(v, slot, "slot %d has no committee %d", slot, ci)
	}
	if agg.AggregationBits.Len() != uint64(len(members)) {
		return refuse(v, slot, "aggregation bits of length %d for a committee of %d", agg.AggregationBits.Len(), len(members))
	}
	if d := sh.dutyOf(v); d.slot != slot || d.committeeIndex != ci {
		return refuse(v, slot, "aggregator %d is not in committee %d at slot %d", v, ci, slot)
	}
	var participants []phase0.ValidatorIndex
	for _, p := range agg.AggregationBits.BitIndices() {
		if p >= len(members) {
			return refuse(v, slot, "malformed aggregation bits")
		}
		participants = append(participants, members[p])
	}
	if len(participants) == 0 {
		return refuse(v, slot, "no aggregation bit set")
	}

	epoch := s.epoch(slot)
	selDomain, err := s.domainAt(signing.DomainSelectionProof, epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyBy(v, sszUint64(slot), selDomain, m.SelectionProof); err != nil {
		return refuse(v, slot, "selection proof of validator %d at slot %d: %v", v, slot, err)
	}
	modulo := aggregatorModulo(uint64(len(members)))
	if !isAggregatorProof(m.SelectionProof, modulo) {
		return refuse(v, slot, "the selection proof of validator %d does not make it an aggregator at slot %d (modulo %d)", v, slot, modulo)
	}
	key := dutyKey{typ: DutyAggregator, slot: slot, validator: v}
	if s.configured(v) {
		s.expectDuty(key)
	}
	attDomain, err := s.domainAt(signing.DomainBeaconAttester, data.Target.Epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyAggregate(participants, data, attDomain, agg.Signature); err != nil {
		return refuse(v, slot, "aggregate signature of %d attesters: %v", len(participants), err)
	}
	aapDomain, err := s.domainAt(signing.DomainAggregateAndProof, epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyBy(v, m, aapDomain, sa.Signature); err != nil {
		return refuse(v, slot, "aggregate and proof signature of validator %d at slot %d: %v", v, slot, err)
	}
	s.noteValid(key, s.onTime(c, now, slot))
	return verdict{validator: v, slot: slot}
}
