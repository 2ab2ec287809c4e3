package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// handleSubmitAttestations serves POST /eth/v2/beacon/pool/attestations: a JSON array of
// SingleAttestation with header Eth-Consensus-Version: fulu.
//
// Each attestation is judged on its own (see checkAttestation) and counted in the stats. If any
// fails, the answer is 400 with the spec's indexed failure list (the valid ones still count);
// otherwise 200 with no body.
func (s *Sim) handleSubmitAttestations(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	var raw []json.RawMessage
	present, err := decodeBody(r, w, &raw)
	if err == nil && !present {
		err = fmt.Errorf("body missing")
	}
	if err != nil {
		reason := fmt.Sprintf("%v: want a JSON array of SingleAttestation", err)
		s.noteSubmitted(DutyAttester, unattributed)
		s.recordWrong(now, false, 0, unattributed, reason)
		writeError(w, http.StatusBadRequest, "%s", reason)
		return
	}

	var versionErr string
	if v := r.Header.Get("Eth-Consensus-Version"); !strings.EqualFold(v, consensusVersion) {
		versionErr = fmt.Sprintf("Eth-Consensus-Version %q: the chain is at %s", v, consensusVersion)
	}

	c := s.clock()
	s.batchVerifyAttestations(raw)
	var failures []indexedFailure
	for i, m := range raw {
		var att electra.SingleAttestation
		if err := json.Unmarshal(m, &att); err != nil {
			reason := fmt.Sprintf("invalid SingleAttestation: %v", err)
			s.noteSubmitted(DutyAttester, unattributed)
			s.recordWrong(now, false, 0, unattributed, reason)
			failures = append(failures, indexedFailure{Index: i, Message: reason})
			continue
		}
		s.noteSubmitted(DutyAttester, att.AttesterIndex)
		reason, d := versionErr, duty{}
		if reason == "" {
			reason, d = s.checkAttestation(c, &att)
		}
		if reason != "" {
			attributed := c.started && att.Data.Slot <= c.slot
			s.recordWrong(now, attributed, att.Data.Slot, att.AttesterIndex, reason)
			failures = append(failures, indexedFailure{Index: i, Message: reason})
			continue
		}
		late := !c.now.Before(s.slotStart(c.genesis, att.Data.Slot+1))
		s.recordValid(att.Data.Slot, att.AttesterIndex, late, d, att.Signature)
	}
	if len(failures) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{
			Code:     http.StatusBadRequest,
			Message:  fmt.Sprintf("%d of %d attestations failed validation", len(failures), len(raw)),
			Failures: failures,
		})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// batchVerifyAttestations pre-verifies the signatures of a submission's attestations in batches
// (see batchVerify); what does not parse is left to the per-attestation checks.
func (s *Sim) batchVerifyAttestations(raw []json.RawMessage) {
	items := make([]signedBy, 0, len(raw))
	for _, m := range raw {
		var att electra.SingleAttestation
		if json.Unmarshal(m, &att) != nil || att.Data == nil || att.Data.Target == nil {
			continue
		}
		domain, err := s.domainAt(signing.DomainBeaconAttester, att.Data.Target.Epoch)
		if err != nil {
			continue
		}
		root, err := signingRoot(att.Data, domain)
		if err != nil {
			continue
		}
		items = append(items, signedBy{index: att.AttesterIndex, root: root, sig: att.Signature})
	}
	s.batchVerify(items)
}

// checkAttestation returns why att is refused at time c, or "" if it is valid, and the duty it
// fulfils: the attester must be a validator of the network with its duty at data.slot in the
// committee att names, the slot must not be in the future, data must equal what the simulator
// serves for that slot, and the signature must verify under the validator's key over
// compute_signing_root(data, compute_domain(DOMAIN_BEACON_ATTESTER, fork_version_at(data.target.epoch),
// genesis_validators_root)). Virtual validators never verify.
func (s *Sim) checkAttestation(c clock, att *electra.SingleAttestation) (string, duty) {
	data := att.Data
	switch {
	case !c.started:
		return "the chain has not started", duty{}
	case uint64(att.AttesterIndex) >= s.n:
		return fmt.Sprintf("unknown validator index %d", att.AttesterIndex), duty{}
	case data.Slot > c.slot:
		return fmt.Sprintf("slot %d is in the future (current slot %d)", data.Slot, c.slot), duty{}
	}
	d := s.dutyOf(s.epoch(data.Slot), att.AttesterIndex)
	if d.slot != data.Slot {
		return fmt.Sprintf("validator %d has no attester duty at slot %d (its duty is at slot %d)",
			att.AttesterIndex, data.Slot, d.slot), d
	}
	if d.committeeIndex != att.CommitteeIndex {
		return fmt.Sprintf("validator %d is in committee %d at slot %d, not committee %d",
			att.AttesterIndex, d.committeeIndex, data.Slot, att.CommitteeIndex), d
	}
	if reason := dataMismatch(data, s.attestationData(data.Slot)); reason != "" {
		return reason, d
	}
	domain, err := s.domainAt(signing.DomainBeaconAttester, data.Target.Epoch)
	if err != nil {
		return fmt.Sprintf("domain: %v", err), d
	}
	if err := s.verifyBy(att.AttesterIndex, data, domain, att.Signature); err != nil {
		return fmt.Sprintf("signature of validator %d at slot %d: %v", att.AttesterIndex, data.Slot, err), d
	}
	return "", d
}

// dataMismatch names the first field in which got differs from want, or returns "".
func dataMismatch(got, want *phase0.AttestationData) string {
	switch {
	case got.Index != want.Index:
		return fmt.Sprintf("data.index %d, want %d", got.Index, want.Index)
	case got.BeaconBlockRoot != want.BeaconBlockRoot:
		return fmt.Sprintf("data.beacon_block_root %#x, want %#x", got.BeaconBlockRoot, want.BeaconBlockRoot)
	case got.Source.Epoch != want.Source.Epoch || got.Source.Root != want.Source.Root:
		return fmt.Sprintf("data.source %d/%#x, want %d/%#x", got.Source.Epoch, got.Source.Root, want.Source.Epoch, want.Source.Root)
	case got.Target.Epoch != want.Target.Epoch || got.Target.Root != want.Target.Root:
		return fmt.Sprintf("data.target %d/%#x, want %d/%#x", got.Target.Epoch, got.Target.Root, want.Target.Epoch, want.Target.Root)
	}
	return ""
}
