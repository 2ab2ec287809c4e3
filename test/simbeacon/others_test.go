package simbeacon

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/signing"
)

// capellaVersion is the Capella fork version for the default genesis version 0x10000000.
var capellaVersion = phase0.Version{0x40, 0x00, 0x00, 0x00}

// registration is sk's validator registration signed with domain type dt, fork version and
// genesis validators root gvr (the builder spec's: DOMAIN_APPLICATION_BUILDER, the genesis
// version and the zero root).
func registration(t *testing.T, sk *bls.SecretKey, fee bellatrix.ExecutionAddress, ts time.Time, version phase0.Version, gvr phase0.Root) *eth2api.VersionedSignedValidatorRegistration {
	t.Helper()
	var pk phase0.BLSPubKey
	copy(pk[:], sk.GetPublicKey().Serialize())
	msg := &apiv1.ValidatorRegistration{FeeRecipient: fee, GasLimit: 36_000_000, Timestamp: ts, Pubkey: pk}
	return &eth2api.VersionedSignedValidatorRegistration{
		Version: spec.BuilderVersionV1,
		V1:      &apiv1.SignedValidatorRegistration{Message: msg, Signature: signWith(t, sk, msg, domainApplicationBuilder, version, gvr)},
	}
}

func TestPreparationsAndRegistrations(t *testing.T) {
	e := newEnvWith(t, 0, func(c *Config) { c.BuilderBlocks = true })
	ctx := context.Background()
	slot := phase0.Slot(13)
	e.atSlot(slot, 0.02)
	proposer := phase0.ValidatorIndex(slot % testValidators)

	prepared := bellatrix.ExecutionAddress{0xaa}
	if err := e.client.SubmitProposalPreparations(ctx, []*apiv1.ProposalPreparation{{ValidatorIndex: proposer, FeeRecipient: prepared}}); err != nil {
		t.Fatalf("preparations: %v", err)
	}
	if code, body := errorStatus(e.client.SubmitProposalPreparations(ctx, []*apiv1.ProposalPreparation{{ValidatorIndex: 1000, FeeRecipient: prepared}})); code != 400 {
		t.Errorf("preparation of an unknown index: %d %s", code, body)
	}
	zero := uint64(0)
	full, err := e.propose(t, slot, e.reveal(t, proposer, slot), &zero)
	if err != nil || full.Fulu.Block.Body.ExecutionPayload.FeeRecipient != prepared {
		t.Fatalf("full block after preparation: %v, %v", full, err)
	}

	now := testGenesis.Add(time.Duration(slot) * testSlot)
	registered := bellatrix.ExecutionAddress{0xbb}
	gvr := e.sim.GenesisValidatorsRoot()
	var stranger bls.SecretKey
	stranger.SetByCSPRNG()
	cases := []struct {
		name string
		reg  *eth2api.VersionedSignedValidatorRegistration
		ok   bool
	}{
		{"correct", registration(t, e.keys[proposer], registered, now, DefaultGenesisForkVersion, phase0.Root{}), true},
		{"unknown key, correct", registration(t, &stranger, registered, now, DefaultGenesisForkVersion, phase0.Root{}), true},
		{"signed with the genesis validators root", registration(t, e.keys[proposer], registered, now, DefaultGenesisForkVersion, gvr), false},
		{"signed with the fulu version", registration(t, e.keys[proposer], registered, now, fuluVersion, phase0.Root{}), false},
		{"timestamp a minute ahead", registration(t, e.keys[proposer], registered, now.Add(time.Minute), DefaultGenesisForkVersion, phase0.Root{}), false},
	}
	for _, c := range cases {
		err := e.client.SubmitValidatorRegistrations(ctx, []*eth2api.VersionedSignedValidatorRegistration{c.reg})
		if code, body := errorStatus(err); c.ok && err != nil || !c.ok && (code != http.StatusBadRequest || !strings.Contains(body, `"failures"`)) {
			t.Errorf("%s: %v (%d %s)", c.name, err, code, body)
		}
	}
	blinded, err := e.propose(t, slot, e.reveal(t, proposer, slot), nil)
	if err != nil || !blinded.Blinded {
		t.Fatalf("blinded proposal: %v, %v", blinded, err)
	}
	if h := blinded.FuluBlinded.Body.ExecutionPayloadHeader; h.FeeRecipient != registered || h.GasLimit != 36_000_000 {
		t.Errorf("blinded block pays %#x with gas limit %d, want the registration's", h.FeeRecipient, h.GasLimit)
	}

	st := e.sim.Stats()
	if r := st.Duties[DutyRegistration]; r.Submitted != 5 || r.Valid != 2 || r.Invalid != 3 || r.Expected != 0 {
		t.Errorf("registration counts %+v", r)
	}
	if r := st.ValidatorDuties[proposer][DutyRegistration]; r.Valid != 1 || r.Invalid != 3 {
		t.Errorf("registration counts of %d: %+v", proposer, r)
	}
	if p := st.Duties[DutyPrepareProposer]; p.Submitted != 2 || p.Valid != 1 || p.Invalid != 1 {
		t.Errorf("prepare_proposer counts %+v", p)
	}
	if n := len(st.RecentFailures); n < 4 || st.RecentFailures[n-1].Duty != DutyRegistration {
		t.Errorf("recent failures %+v", st.RecentFailures)
	}
}

func TestVoluntaryExit(t *testing.T) {
	e := newEnv(t, 3*testSlotsPerEpoch*testSlot) // epoch 3
	ctx := context.Background()
	exit := func(v phase0.ValidatorIndex, epoch phase0.Epoch, version phase0.Version) *phase0.SignedVoluntaryExit {
		msg := &phase0.VoluntaryExit{Epoch: epoch, ValidatorIndex: v}
		return &phase0.SignedVoluntaryExit{Message: msg, Signature: e.signObj(t, e.keys[v], msg, signing.DomainVoluntaryExit, version)}
	}
	for name, x := range map[string]*phase0.SignedVoluntaryExit{
		"fulu domain (EIP-7044 fixes capella)": exit(4, 2, fuluVersion),
		"future epoch":                         exit(4, 4, capellaVersion),
		"another validator's key":              {Message: &phase0.VoluntaryExit{Epoch: 2, ValidatorIndex: 5}, Signature: exit(4, 2, capellaVersion).Signature},
	} {
		if code, body := errorStatus(e.client.SubmitVoluntaryExit(ctx, x)); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
	}
	if err := e.client.SubmitVoluntaryExit(ctx, exit(4, 2, capellaVersion)); err != nil {
		t.Fatalf("valid exit: %v", err)
	}
	vals, err := e.client.Validators(ctx, &eth2api.ValidatorsOpts{State: "head", Indices: []phase0.ValidatorIndex{4, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if v := vals.Data[4]; v.Status != apiv1.ValidatorStateActiveExiting || v.Validator.ExitEpoch != 3+1+maxSeedLookahead {
		t.Errorf("exited validator %+v", v)
	}
	if vals.Data[5].Status != apiv1.ValidatorStateActiveOngoing {
		t.Errorf("validator 5 %+v", vals.Data[5])
	}
	for _, body := range []string{"", "{", `{"message":null}`, "[]"} {
		if code, resp := rawDo(t, "POST", e.srv.URL+"/eth/v1/beacon/pool/voluntary_exits", body, nil); code != 400 {
			t.Errorf("%q: %d %s", body, code, resp)
		}
	}
	st := e.sim.Stats()
	if x := st.Duties[DutyExit]; x.Submitted != 8 || x.Valid != 1 || x.Invalid != 7 {
		t.Errorf("exit counts %+v", x)
	}
	if x := st.ValidatorDuties[4][DutyExit]; x.Valid != 1 || x.Invalid != 2 {
		t.Errorf("exit counts of 4: %+v", x)
	}
}
