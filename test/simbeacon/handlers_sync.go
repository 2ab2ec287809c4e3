package simbeacon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Sync committees. Every slot's sync committee message signs that slot's block root
// (blockRoot(slot), what the head is during the slot). Contributions are aggregated from the valid
// messages the simulator received. See network.go for who sits in the committee.

// maxSyncSlots bounds the memory of sync committee messages: slots this far behind the current
// one are forgotten (no contribution can be asked for them).
const maxSyncSlots = 64

// handleSyncCommitteeSubscriptions serves POST /eth/v1/validator/sync_committee_subscriptions: a
// JSON array of subscriptions, each naming a validator of the network and seats it holds in the
// sync committee of the current or the next period, until an epoch after the current one. 400
// with indexed failures for the others. Subscriptions change nothing else.
func (s *Sim) handleSyncCommitteeSubscriptions(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	var subs []json.RawMessage
	present, err := decodeBody(r, w, &subs)
	if err == nil && (!present || subs == nil) {
		err = errors.New("body missing")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v: want a JSON array of sync committee subscriptions", err)
		return
	}
	cur := s.epoch(s.clock().slot)
	var failures []indexedFailure
	for i, m := range subs {
		var sub apiv1.SyncCommitteeSubscription
		reason := ""
		if err := json.Unmarshal(m, &sub); err != nil {
			reason = fmt.Sprintf("invalid subscription: %v", err)
		} else {
			reason = s.checkSyncSubscription(cur, &sub)
		}
		if reason != "" {
			failures = append(failures, indexedFailure{Index: i, Message: reason})
			s.mu.Lock()
			s.failLocked(Failure{Time: now, Duty: DutySyncMessage, ValidatorIndex: sub.ValidatorIndex, Reason: "subscription: " + reason})
			s.mu.Unlock()
		}
	}
	if len(failures) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Code: http.StatusBadRequest, Message: "some subscriptions failed", Failures: failures})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// checkSyncSubscription returns why sub is refused in the current epoch cur, or "".
func (s *Sim) checkSyncSubscription(cur phase0.Epoch, sub *apiv1.SyncCommitteeSubscription) string {
	if uint64(sub.ValidatorIndex) >= s.n {
		return fmt.Sprintf("unknown validator index %d", sub.ValidatorIndex)
	}
	if sub.UntilEpoch <= cur {
		return fmt.Sprintf("until_epoch %d is not after the current epoch %d", sub.UntilEpoch, cur)
	}
	if len(sub.SyncCommitteeIndices) == 0 {
		return "no sync committee indices"
	}
	for _, period := range []uint64{syncPeriod(cur), syncPeriod(cur) + 1} {
		seats := map[uint64]bool{}
		for _, seat := range s.syncCommitteeOf(period).members[sub.ValidatorIndex] {
			seats[seat] = true
		}
		all := true
		for _, i := range sub.SyncCommitteeIndices {
			all = all && seats[uint64(i)]
		}
		if all {
			return ""
		}
	}
	return fmt.Sprintf("validator %d does not hold seats %v in the current or next sync committee", sub.ValidatorIndex, sub.SyncCommitteeIndices)
}

// resolveBlock maps a block_id (head, genesis, finalized, justified, a slot or a 0x block root)
// to a slot at or before the head.
func (s *Sim) resolveBlock(id string) (phase0.Slot, error) {
	head := s.headSlot()
	if strings.HasPrefix(id, "0x") {
		b, err := decodeHex(id)
		if err != nil || len(b) != 32 {
			return 0, fmt.Errorf("invalid block id %q: not a 32-byte hex root", id)
		}
		var root phase0.Root
		copy(root[:], b)
		for slot := head; ; slot-- {
			if blockRoot(slot) == root {
				return slot, nil
			}
			if slot == 0 {
				return 0, errStateNotFound
			}
		}
	}
	switch id {
	case "head", "genesis", "finalized", "justified":
		return s.resolveState(id)
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid block id %q", id)
	}
	if phase0.Slot(n) > head {
		return 0, errStateNotFound
	}
	return phase0.Slot(n), nil
}

// handleBlockRoot serves GET /eth/v1/beacon/blocks/{block_id}/root.
func (s *Sim) handleBlockRoot(w http.ResponseWriter, r *http.Request) {
	slot, err := s.resolveBlock(r.PathValue("block_id"))
	switch {
	case errors.Is(err, errStateNotFound):
		writeError(w, http.StatusNotFound, "block %s not found", r.PathValue("block_id"))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeData(w, map[string]phase0.Root{"root": blockRoot(slot)}, s.isFinalized(slot))
}

// syncKey names the sync committee messages of one slot over one block root.
type syncKey struct {
	slot phase0.Slot
	root phase0.Root
}

// syncRootOK reports whether a sync committee message of slot may sign root: the slot's block
// root, or, for a slot whose block comes late (see headArrival), the head before it arrived.
func (s *Sim) syncRootOK(slot phase0.Slot, root phase0.Root) bool {
	if root == blockRoot(slot) {
		return true
	}
	return slot > 0 && s.headArrival(slot) > s.cfg.SlotDuration/3 && root == blockRoot(slot-1)
}

// handleSubmitSyncMessages serves POST /eth/v1/beacon/pool/sync_committees: a JSON array of
// SyncCommitteeMessage. A message is valid if its validator sits in the sync committee of the
// slot's period, the slot is not in the future, the block root is the slot's (see syncRootOK), and the
// signature verifies (DOMAIN_SYNC_COMMITTEE at the slot's epoch, over the block root).
func (s *Sim) handleSubmitSyncMessages(w http.ResponseWriter, r *http.Request) {
	s.servePool(w, r, DutySyncMessage, "SyncCommitteeMessage", "", func(now time.Time, c clock, raw json.RawMessage) verdict {
		var m altair.SyncCommitteeMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return refuse(unattributed, 0, "invalid SyncCommitteeMessage: %v", err)
		}
		v, slot := m.ValidatorIndex, m.Slot
		switch {
		case uint64(v) >= s.n:
			return refuse(unattributed, slot, "unknown validator index %d", v)
		case !c.started || slot > c.slot:
			return refuse(v, slot, "slot %d is in the future (current slot %d)", slot, c.slot)
		case len(s.syncCommitteeOf(syncPeriod(s.epoch(slot))).members[v]) == 0:
			return refuse(v, slot, "validator %d is not in the sync committee at slot %d", v, slot)
		case !s.syncRootOK(slot, m.BeaconBlockRoot):
			return refuse(v, slot, "beacon_block_root %#x, want the block root %#x of slot %d", m.BeaconBlockRoot, blockRoot(slot), slot)
		}
		domain, err := s.domainAt(domainSyncCommittee, s.epoch(slot))
		if err == nil {
			err = s.verifyBy(v, sszRoot(m.BeaconBlockRoot), domain, m.Signature)
		}
		if err != nil {
			return refuse(v, slot, "sync committee signature of validator %d at slot %d: %v", v, slot, err)
		}
		s.mu.Lock()
		for old := range s.syncMsgs {
			if old.slot+maxSyncSlots < c.slot {
				delete(s.syncMsgs, old)
			}
		}
		key := syncKey{slot: slot, root: m.BeaconBlockRoot}
		bySlot := s.syncMsgs[key]
		if bySlot == nil {
			bySlot = map[phase0.ValidatorIndex]phase0.BLSSignature{}
			s.syncMsgs[key] = bySlot
		}
		bySlot[v] = m.Signature
		s.mu.Unlock()
		s.noteValid(dutyKey{typ: DutySyncMessage, slot: slot, validator: v}, s.onTime(c, now, slot))
		return verdict{validator: v, slot: slot}
	})
}

// handleSyncContribution serves GET /eth/v1/validator/sync_committee_contribution?slot=..
// &subcommittee_index=..&beacon_block_root=..: the contribution of the valid messages received
// for that slot from the subcommittee's members: a bit for every seat of every member whose
// message arrived, and the aggregate of their signatures (once per bit). 404 if none arrived or
// the root is not the slot's block root.
func (s *Sim) handleSyncContribution(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	slotN, err := parseUint("slot", q.Get("slot"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	sub, err := parseUint("subcommittee_index", q.Get("subcommittee_index"))
	if err != nil || sub >= syncCommitteeSubnetCount {
		writeError(w, http.StatusBadRequest, "invalid subcommittee_index %q", q.Get("subcommittee_index"))
		return
	}
	var root phase0.Root
	if err := parseHexQuery("beacon_block_root", q.Get("beacon_block_root"), root[:]); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	slot := phase0.Slot(slotN)
	c := s.clock()
	if !c.started || slot > c.slot {
		writeError(w, http.StatusBadRequest, "slot %d is in the future (current slot %d)", slot, c.slot)
		return
	}
	if !s.syncRootOK(slot, root) {
		writeError(w, http.StatusNotFound, "no sync committee message at slot %d signs %#x", slot, root)
		return
	}
	sc := s.syncCommitteeOf(syncPeriod(s.epoch(slot)))
	bits := bitfield.NewBitvector128()
	var sigs []phase0.BLSSignature
	s.mu.Lock()
	msgs := s.syncMsgs[syncKey{slot: slot, root: root}]
	for i := range uint64(syncSubcommitteeSize) {
		if sig, ok := msgs[sc.seats[sub*syncSubcommitteeSize+i]]; ok {
			bits.SetBitAt(i, true)
			sigs = append(sigs, sig)
		}
	}
	s.mu.Unlock()
	if len(sigs) == 0 {
		writeError(w, http.StatusNotFound, "no sync committee message of subcommittee %d at slot %d has arrived", sub, slot)
		return
	}
	agg, err := aggregateSignatures(sigs)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "aggregate: %v", err)
		return
	}
	writeData(w, &altair.SyncCommitteeContribution{
		Slot: slot, BeaconBlockRoot: root, SubcommitteeIndex: sub, AggregationBits: bits, Signature: agg,
	}, nil)
}

// handleSubmitContributions serves POST /eth/v1/validator/contribution_and_proofs: a JSON array
// of SignedContributionAndProof (see checkContribution).
func (s *Sim) handleSubmitContributions(w http.ResponseWriter, r *http.Request) {
	s.servePool(w, r, DutySyncContribution, "SignedContributionAndProof", "", func(now time.Time, c clock, raw json.RawMessage) verdict {
		var sc altair.SignedContributionAndProof
		if err := json.Unmarshal(raw, &sc); err != nil {
			return refuse(unattributed, 0, "invalid SignedContributionAndProof: %v", err)
		}
		if sc.Message == nil || sc.Message.Contribution == nil {
			return refuse(unattributed, 0, "SignedContributionAndProof without contribution")
		}
		return s.checkContribution(now, c, &sc)
	})
}

// checkContribution judges a signed contribution and proof: the slot must not be in the future,
// the block root must be the slot's (see syncRootOK), the subcommittee index below SYNC_COMMITTEE_SUBNET_COUNT,
// the aggregator must hold a seat in that subcommittee; its selection proof
// (DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF over SyncAggregatorSelectionData{slot,
// subcommittee_index}) must verify and make it an aggregator (modulo max(1, SYNC_COMMITTEE_SIZE /
// SYNC_COMMITTEE_SUBNET_COUNT / TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE)); the contribution's
// signature must verify against the seats its bits name (DOMAIN_SYNC_COMMITTEE over the block
// root); and the contribution-and-proof signature must verify (DOMAIN_CONTRIBUTION_AND_PROOF).
func (s *Sim) checkContribution(now time.Time, c clock, sc *altair.SignedContributionAndProof) verdict {
	m := sc.Message
	con := m.Contribution
	v, slot, sub := m.AggregatorIndex, con.Slot, con.SubcommitteeIndex
	switch {
	case uint64(v) >= s.n:
		return refuse(unattributed, slot, "unknown aggregator index %d", v)
	case !c.started || slot > c.slot:
		return refuse(v, slot, "slot %d is in the future (current slot %d)", slot, c.slot)
	case sub >= syncCommitteeSubnetCount:
		return refuse(v, slot, "subcommittee index %d out of range", sub)
	case !s.syncRootOK(slot, con.BeaconBlockRoot):
		return refuse(v, slot, "beacon_block_root %#x, want the block root %#x of slot %d", con.BeaconBlockRoot, blockRoot(slot), slot)
	case len(con.AggregationBits) != syncSubcommitteeSize/8:
		return refuse(v, slot, "aggregation bits of %d bytes, want %d", len(con.AggregationBits), syncSubcommitteeSize/8)
	}
	committee := s.syncCommitteeOf(syncPeriod(s.epoch(slot)))
	inSub := false
	for _, seat := range committee.members[v] {
		inSub = inSub || seat/syncSubcommitteeSize == sub
	}
	if !inSub {
		return refuse(v, slot, "aggregator %d holds no seat in sync subcommittee %d at slot %d", v, sub, slot)
	}
	var participants []phase0.ValidatorIndex
	for _, i := range con.AggregationBits.BitIndices() {
		participants = append(participants, committee.seats[sub*syncSubcommitteeSize+uint64(i)])
	}
	if len(participants) == 0 {
		return refuse(v, slot, "no aggregation bit set")
	}

	epoch := s.epoch(slot)
	selDomain, err := s.domainAt(domainSyncCommitteeSelectionProof, epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyBy(v, &altair.SyncAggregatorSelectionData{Slot: slot, SubcommitteeIndex: sub}, selDomain, m.SelectionProof); err != nil {
		return refuse(v, slot, "sync selection proof of validator %d at slot %d: %v", v, slot, err)
	}
	if !isAggregatorProof(m.SelectionProof, syncAggregatorModulo) {
		return refuse(v, slot, "the selection proof of validator %d does not make it a sync subcommittee %d aggregator at slot %d (modulo %d)",
			v, sub, slot, syncAggregatorModulo)
	}
	key := dutyKey{typ: DutySyncContribution, slot: slot, validator: v, sub: sub}
	if s.configured(v) {
		s.expectDuty(key)
	}
	syncDomain, err := s.domainAt(domainSyncCommittee, epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyAggregate(participants, sszRoot(con.BeaconBlockRoot), syncDomain, con.Signature); err != nil {
		return refuse(v, slot, "contribution signature of %d participants: %v", len(participants), err)
	}
	capDomain, err := s.domainAt(domainContributionAndProof, epoch)
	if err != nil {
		return refuse(v, slot, "domain: %v", err)
	}
	if err := s.verifyBy(v, m, capDomain, sc.Signature); err != nil {
		return refuse(v, slot, "contribution and proof signature of validator %d at slot %d: %v", v, slot, err)
	}
	s.noteValid(key, s.onTime(c, now, slot))
	return verdict{validator: v, slot: slot}
}
