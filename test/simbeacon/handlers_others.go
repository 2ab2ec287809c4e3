package simbeacon

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// maxRegistrationFutureSkew is how far in the future a validator registration's timestamp may be.
const maxRegistrationFutureSkew = 10 * time.Second

// maxSeedLookahead is the spec's MAX_SEED_LOOKAHEAD: an exit initiated in epoch e takes effect at
// e + 1 + MAX_SEED_LOOKAHEAD (compute_activation_exit_epoch; there is no exit queue here).
const maxSeedLookahead = 4

// handlePrepareProposer serves POST /eth/v1/validator/prepare_beacon_proposer: a JSON array of
// {validator_index, fee_recipient}. Each validator of the network gets that fee recipient in the
// blocks produced for it; indices beyond the network are refused (400 with indexed failures).
func (s *Sim) handlePrepareProposer(w http.ResponseWriter, r *http.Request) {
	s.servePool(w, r, DutyPrepareProposer, "ProposalPreparation", "", func(_ time.Time, _ clock, raw json.RawMessage) verdict {
		var p apiv1.ProposalPreparation
		if err := json.Unmarshal(raw, &p); err != nil {
			return refuse(unattributed, 0, "invalid ProposalPreparation: %v", err)
		}
		if uint64(p.ValidatorIndex) >= s.n {
			return refuse(unattributed, 0, "unknown validator index %d", p.ValidatorIndex)
		}
		s.mu.Lock()
		s.feeRecipients[p.ValidatorIndex] = p.FeeRecipient
		s.mu.Unlock()
		s.noteValid(dutyKey{typ: DutyPrepareProposer, validator: p.ValidatorIndex, sub: contentKey(p.FeeRecipient[:])}, true)
		return verdict{validator: p.ValidatorIndex}
	})
}

// handleRegisterValidator serves POST /eth/v1/validator/register_validator: a JSON array of
// SignedValidatorRegistration. Each signature must verify under the registration's public key
// with the builder domain: compute_domain(DOMAIN_APPLICATION_BUILDER, GENESIS_FORK_VERSION,
// zero genesis validators root), and its timestamp may be at most 10 s ahead. Registrations of
// public keys the network does not know are accepted (as the spec says) but counted unattributed;
// those of known validators set the fee recipient and gas limit of their blinded blocks.
func (s *Sim) handleRegisterValidator(w http.ResponseWriter, r *http.Request) {
	domain, domainErr := signing.ComputeDomain(domainApplicationBuilder, s.cfg.GenesisForkVersion, phase0.Root{})
	s.servePool(w, r, DutyRegistration, "SignedValidatorRegistration", "", func(now time.Time, _ clock, raw json.RawMessage) verdict {
		var reg apiv1.SignedValidatorRegistration
		if err := json.Unmarshal(raw, &reg); err != nil {
			return refuse(unattributed, 0, "invalid SignedValidatorRegistration: %v", err)
		}
		if reg.Message == nil {
			return refuse(unattributed, 0, "SignedValidatorRegistration without message")
		}
		m := reg.Message
		v, known := s.indexOf(m.Pubkey)
		if !known {
			v = unattributed
		}
		if m.Timestamp.After(now.Add(maxRegistrationFutureSkew)) {
			return refuse(v, 0, "registration timestamp %s is in the future", m.Timestamp.UTC().Format(time.RFC3339))
		}
		if domainErr != nil {
			return refuse(v, 0, "domain: %v", domainErr)
		}
		pk, err := signing.ParsePublicKey(m.Pubkey[:])
		if err == nil {
			err = verifyKey(pk, m, domain, reg.Signature)
		}
		if err != nil {
			return refuse(v, 0, "registration signature of %#x: %v", m.Pubkey, err)
		}
		if known {
			s.mu.Lock()
			if prev, ok := s.registrations[v]; !ok || !prev.Timestamp.After(m.Timestamp) {
				s.registrations[v] = m
			}
			s.mu.Unlock()
		}
		var ts [8]byte
		binary.LittleEndian.PutUint64(ts[:], uint64(m.Timestamp.Unix()))
		var gas [8]byte
		binary.LittleEndian.PutUint64(gas[:], m.GasLimit)
		s.noteValid(dutyKey{typ: DutyRegistration, validator: v, sub: contentKey(m.Pubkey[:], m.FeeRecipient[:], gas[:], ts[:])}, true)
		return verdict{validator: v}
	})
}

// handleVoluntaryExit serves POST /eth/v1/beacon/pool/voluntary_exits: one SignedVoluntaryExit.
// The validator must belong to the network, the exit's epoch must not be in the future, and the
// signature must verify with DOMAIN_VOLUNTARY_EXIT under the Capella fork version and the chain's
// genesis validators root (EIP-7044: exits stay valid across later forks). The spec's
// SHARD_COMMITTEE_PERIOD (a validator must have been active 256 epochs) is not enforced, so young
// simulated chains can test exits. A valid exit makes the validator active_exiting, with exit
// epoch current + 1 + MAX_SEED_LOOKAHEAD; it keeps its duties. Refusals are 400.
func (s *Sim) handleVoluntaryExit(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	fail := func(v phase0.ValidatorIndex, format string, args ...any) {
		reason := fmt.Sprintf(format, args...)
		s.noteSubmitted(DutyExit, v)
		s.noteInvalid(now, DutyExit, 0, v, reason)
		writeError(w, http.StatusBadRequest, "%s", reason)
	}
	var exit phase0.SignedVoluntaryExit
	present, err := decodeBody(r, w, &exit)
	if err == nil && !present {
		err = fmt.Errorf("body missing")
	}
	if err == nil && exit.Message == nil {
		err = fmt.Errorf("no message")
	}
	if err != nil {
		fail(unattributed, "%v: want a SignedVoluntaryExit", err)
		return
	}
	m := exit.Message
	v := m.ValidatorIndex
	if uint64(v) >= s.n {
		fail(unattributed, "unknown validator index %d", v)
		return
	}
	c := s.clock()
	cur := s.epoch(c.slot)
	if !c.started || m.Epoch > cur {
		fail(v, "exit epoch %d is in the future (current epoch %d)", m.Epoch, cur)
		return
	}
	domain, err := signing.ComputeDomain(signing.DomainVoluntaryExit, s.forkVersion("capella"), s.cfg.GenesisValidatorsRoot)
	if err == nil {
		err = s.verifyBy(v, m, domain, exit.Signature)
	}
	if err != nil {
		fail(v, "voluntary exit signature of validator %d (Capella domain, EIP-7044): %v", v, err)
		return
	}
	s.noteSubmitted(DutyExit, v)
	var e [8]byte
	binary.LittleEndian.PutUint64(e[:], uint64(m.Epoch))
	s.noteValid(dutyKey{typ: DutyExit, validator: v, sub: contentKey(e[:])}, true)
	s.mu.Lock()
	if _, ok := s.exits[v]; !ok {
		s.exits[v] = cur + 1 + maxSeedLookahead
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}
