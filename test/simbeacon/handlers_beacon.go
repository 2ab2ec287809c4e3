package simbeacon

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// validatorBalance is every validator's balance and effective balance, in Gwei.
const validatorBalance = phase0.Gwei(32_000_000_000)

// handleGenesis serves GET /eth/v1/beacon/genesis; 404 until SetGenesis is called.
func (s *Sim) handleGenesis(w http.ResponseWriter, _ *http.Request) {
	g, ok := s.Genesis()
	if !ok {
		writeError(w, http.StatusNotFound, "chain genesis not yet known")
		return
	}
	writeJSON(w, http.StatusOK, envelope{Data: &apiv1.Genesis{
		GenesisTime:           g,
		GenesisValidatorsRoot: s.cfg.GenesisValidatorsRoot,
		GenesisForkVersion:    s.cfg.GenesisForkVersion,
	}})
}

// isFinalized reports whether the state at slot is at or before the finalized checkpoint.
func (s *Sim) isFinalized(slot phase0.Slot) *bool {
	f, _, _ := s.finality(s.clock().slot)
	b := slot <= s.startSlot(f.Epoch) && f.Epoch > 0
	return &b
}

// handleStateFork serves GET /eth/v1/beacon/states/{state_id}/fork: the chain is on Fulu from
// epoch 0, so every state reports the same fork.
func (s *Sim) handleStateFork(w http.ResponseWriter, r *http.Request) {
	slot, ok := s.stateOrError(w, r)
	if !ok {
		return
	}
	f := s.currentFork()
	writeData(w, &f, s.isFinalized(slot))
}

// handleFinality serves GET /eth/v1/beacon/states/{state_id}/finality_checkpoints.
func (s *Sim) handleFinality(w http.ResponseWriter, r *http.Request) {
	slot, ok := s.stateOrError(w, r)
	if !ok {
		return
	}
	fin, just, prev := s.finality(slot)
	writeData(w, &apiv1.Finality{Finalized: fin, Justified: just, PreviousJustified: prev}, s.isFinalized(slot))
}

// handleValidatorsGet serves GET /eth/v1/beacon/states/{state_id}/validators?id=..&status=..
// (both repeatable and comma-separated; no id means every validator).
func (s *Sim) handleValidatorsGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.serveValidators(w, r, splitList(q["id"]), splitList(q["status"]))
}

// validatorsRequest is the body of POST /eth/v1/beacon/states/{state_id}/validators.
type validatorsRequest struct {
	IDs      []string `json:"ids"`
	Statuses []string `json:"statuses"`
}

// handleValidatorsPost serves POST /eth/v1/beacon/states/{state_id}/validators; an empty body
// or no ids means every validator.
func (s *Sim) handleValidatorsPost(w http.ResponseWriter, r *http.Request) {
	var req validatorsRequest
	if _, err := decodeBody(r, w, &req); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.serveValidators(w, r, req.IDs, req.Statuses)
}

// serveValidators answers the validators matching ids (indices or 0x public keys; unknown ones
// are left out, as the spec says) and statuses. Every validator is active_ongoing. No ids means
// every validator when the network has no virtual validators, and the configured validators
// otherwise: virtual validators are answered only when asked for by index or public key, so a
// network of a million validators costs nothing until asked.
func (s *Sim) serveValidators(w http.ResponseWriter, r *http.Request, ids, statuses []string) {
	slot, ok := s.stateOrError(w, r)
	if !ok {
		return
	}
	var indices []phase0.ValidatorIndex
	if len(ids) == 0 {
		indices = make([]phase0.ValidatorIndex, len(s.cfg.Validators))
		for i := range indices {
			indices[i] = phase0.ValidatorIndex(i)
		}
	} else {
		for _, id := range ids {
			idx, known, err := s.parseValidatorID(id)
			if err != nil {
				writeError(w, http.StatusBadRequest, "%v", err)
				return
			}
			if known {
				indices = append(indices, idx)
			}
		}
	}
	out := make([]*apiv1.Validator, 0, len(indices))
	for _, idx := range indices {
		if v := s.validator(idx); statusMatches(v.Status, statuses) {
			out = append(out, v)
		}
	}
	writeData(w, out, s.isFinalized(slot))
}

// validator returns the API view of the known validator idx: active_ongoing, or active_exiting
// after a valid voluntary exit (the simulator never lets it leave).
func (s *Sim) validator(idx phase0.ValidatorIndex) *apiv1.Validator {
	pk := s.pubkeyOf(idx)
	creds := make([]byte, 32)
	creds[0] = 0x01 // execution address credentials
	copy(creds[12:], pk[:20])
	status, exit, withdrawable := apiv1.ValidatorStateActiveOngoing, farFutureEpoch, farFutureEpoch
	s.mu.Lock()
	if e, ok := s.exits[idx]; ok {
		status, exit, withdrawable = apiv1.ValidatorStateActiveExiting, e, e+256
	}
	s.mu.Unlock()
	return &apiv1.Validator{
		Index:   idx,
		Balance: validatorBalance,
		Status:  status,
		Validator: &phase0.Validator{
			PublicKey:                  pk,
			WithdrawalCredentials:      creds,
			EffectiveBalance:           validatorBalance,
			ActivationEligibilityEpoch: 0,
			ActivationEpoch:            0,
			ExitEpoch:                  exit,
			WithdrawableEpoch:          withdrawable,
		},
	}
}

// parseValidatorID parses a validator id (decimal index or 0x public key); known is false for a
// well-formed id of no validator.
func (s *Sim) parseValidatorID(id string) (phase0.ValidatorIndex, bool, error) {
	if strings.HasPrefix(id, "0x") {
		b, err := hex.DecodeString(id[2:])
		if err != nil || len(b) != len(phase0.BLSPubKey{}) {
			return 0, false, fmt.Errorf("invalid validator id %q: not a 48-byte hex public key", id)
		}
		var pk phase0.BLSPubKey
		copy(pk[:], b)
		idx, ok := s.indexOf(pk)
		return idx, ok, nil
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("invalid validator id %q: want an index or a 0x public key", id)
	}
	return phase0.ValidatorIndex(n), n < s.n, nil
}

// statusMatches reports whether a validator of status passes the status filter (empty matches
// everything; the general status "active" is accepted too).
func statusMatches(status apiv1.ValidatorState, statuses []string) bool {
	if len(statuses) == 0 {
		return true
	}
	for _, st := range statuses {
		if st == status.String() || st == "active" {
			return true
		}
	}
	return false
}

// splitList flattens repeated and comma-separated query values, dropping empty ones.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
