package simbeacon

import (
	"context"
	"net/http"
	"strings"
	"testing"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1electra "github.com/attestantio/go-eth2-client/api/v1/electra"
	apiv1fulu "github.com/attestantio/go-eth2-client/api/v1/fulu"
	eth2http "github.com/attestantio/go-eth2-client/http"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/rs/zerolog"

	"github.com/dvmesh/dvmesh/signing"
)

// signObj signs obj with sk under domain type dt and fork version (the test's own computation of
// the domain, independent of the simulator's).
func (e *env) signObj(t *testing.T, sk *bls.SecretKey, obj hashRooter, dt phase0.DomainType, version phase0.Version) phase0.BLSSignature {
	t.Helper()
	return signWith(t, sk, obj, dt, version, e.sim.GenesisValidatorsRoot())
}

func signWith(t *testing.T, sk *bls.SecretKey, obj hashRooter, dt phase0.DomainType, version phase0.Version, gvr phase0.Root) phase0.BLSSignature {
	t.Helper()
	domain, err := signing.ComputeDomain(dt, version, gvr)
	if err != nil {
		t.Fatal(err)
	}
	root, err := signing.SigningRoot(obj, domain)
	if err != nil {
		t.Fatal(err)
	}
	var sig phase0.BLSSignature
	copy(sig[:], sk.SignByte(root[:]).Serialize())
	return sig
}

// reveal is the randao reveal of validator v for the epoch of slot.
func (e *env) reveal(t *testing.T, v phase0.ValidatorIndex, slot phase0.Slot) phase0.BLSSignature {
	t.Helper()
	return e.signObj(t, e.keys[v], sszUint64(slot/testSlotsPerEpoch), signing.DomainRandao, fuluVersion)
}

// propose asks the simulator for a block at slot through the client.
func (e *env) propose(t *testing.T, slot phase0.Slot, reveal phase0.BLSSignature, boost *uint64) (*eth2api.VersionedProposal, error) {
	t.Helper()
	resp, err := e.client.Proposal(context.Background(), &eth2api.ProposalOpts{
		Slot: slot, RandaoReveal: reveal, Graffiti: [32]byte{'d', 'v'}, BuilderBoostFactor: boost,
	})
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// signedFull signs a full proposal's block with sk under the given fork version.
func (e *env) signedFull(t *testing.T, p *eth2api.VersionedProposal, sk *bls.SecretKey, version phase0.Version) *eth2api.VersionedSignedProposal {
	t.Helper()
	return &eth2api.VersionedSignedProposal{
		Version: spec.DataVersionFulu,
		Fulu: &apiv1fulu.SignedBlockContents{
			SignedBlock: &electra.SignedBeaconBlock{Message: p.Fulu.Block, Signature: e.signObj(t, sk, p.Fulu.Block, signing.DomainBeaconProposer, version)},
			KZGProofs:   p.Fulu.KZGProofs,
			Blobs:       p.Fulu.Blobs,
		},
	}
}

func (e *env) submitFull(c *eth2http.Service, p *eth2api.VersionedSignedProposal) error {
	return c.SubmitProposal(context.Background(), &eth2api.SubmitProposalOpts{Proposal: p})
}

func TestProposeFullBlock(t *testing.T) {
	e := newEnv(t, 0)
	slot := phase0.Slot(9)
	e.atSlot(slot, 0.05)
	proposer := phase0.ValidatorIndex(slot % testValidators)
	fee := bellatrix.ExecutionAddress{0xfe, 0xe1}
	e.sim.cfg.DefaultFeeRecipient = fee

	p, err := e.propose(t, slot, e.reveal(t, proposer, slot), nil)
	if err != nil {
		t.Fatalf("proposal: %v", err)
	}
	if p.Version != spec.DataVersionFulu || p.Blinded || p.Fulu == nil || p.ExecutionValue.String() != localPayloadValue || p.ConsensusValue.String() != consensusBlockValue {
		t.Fatalf("proposal %+v", p)
	}
	b := p.Fulu.Block
	if b.Slot != slot || b.ProposerIndex != proposer || b.ParentRoot != blockRoot(slot-1) || b.Body.Graffiti != [32]byte{'d', 'v'} ||
		b.Body.ExecutionPayload.FeeRecipient != fee || len(p.Fulu.Blobs) != 0 || len(p.Fulu.KZGProofs) != 0 {
		t.Errorf("block %+v", b)
	}
	// The header of the payload has the payload's root: the empty list roots are right.
	pr, _ := b.Body.ExecutionPayload.HashTreeRoot()
	hr, _ := payloadHeader(b.Body.ExecutionPayload).HashTreeRoot()
	if pr != hr {
		t.Errorf("payload root %#x, header root %#x", pr, hr)
	}

	// Wrongly signed: with the electra fork version, and by another validator.
	for name, signed := range map[string]*eth2api.VersionedSignedProposal{
		"electra domain": e.signedFull(t, p, e.keys[proposer], phase0.Version{0x60}),
		"other key":      e.signedFull(t, p, e.keys[proposer+1], fuluVersion),
	} {
		if code, body := errorStatus(e.submitFull(e.client, signed)); code != http.StatusBadRequest || !strings.Contains(body, "signature") {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
	}
	// A block the simulator did not produce (another graffiti), correctly signed.
	other, err := e.propose(t, slot, e.reveal(t, proposer, slot), nil)
	if err != nil {
		t.Fatal(err)
	}
	other.Fulu.Block.Body.Graffiti[5] = 1
	if code, body := errorStatus(e.submitFull(e.client, e.signedFull(t, other, e.keys[proposer], fuluVersion))); code != 400 || !strings.Contains(body, "not one the beacon node produced") {
		t.Errorf("foreign block: %d %s", code, body)
	}
	if _, ok := e.sim.ProposedBlock(slot); ok {
		t.Error("a refused block was recorded")
	}

	// Correct: SSZ (the client's default) and JSON.
	if err := e.submitFull(e.client, e.signedFull(t, p, e.keys[proposer], fuluVersion)); err != nil {
		t.Fatalf("SSZ submission: %v", err)
	}
	jsonClient := newClientOpts(t, e.srv.URL, eth2http.WithEnforceJSON(true))
	if err := e.submitFull(jsonClient, e.signedFull(t, p, e.keys[proposer], fuluVersion)); err != nil {
		t.Fatalf("JSON submission: %v", err)
	}
	root, _ := b.HashTreeRoot()
	if got, ok := e.sim.ProposedBlock(slot); !ok || got != root {
		t.Errorf("proposed block %#x, %v; want %#x", got, ok, root)
	}

	st := e.sim.Stats().Duties
	if got := st[DutyProposer]; got.Submitted != 5 || got.Valid != 1 || got.Invalid != 3 {
		t.Errorf("proposer counts %+v", got)
	}
	if got := st[DutyRandao]; got.Submitted != 2 || got.Valid != 1 || got.Invalid != 0 {
		t.Errorf("randao counts %+v", got)
	}
}

func TestProposalRefusals(t *testing.T) {
	e := newEnv(t, 0)
	slot := phase0.Slot(10)
	e.atSlot(slot, 0.05)
	proposer := phase0.ValidatorIndex(slot % testValidators)
	cases := map[string]struct {
		slot   phase0.Slot
		reveal phase0.BLSSignature
		want   string
	}{
		"reveal by another validator": {slot, e.reveal(t, proposer+1, slot), "randao reveal"},
		"reveal of another epoch":     {slot, e.reveal(t, proposer, slot+testSlotsPerEpoch), "randao reveal"},
		"reveal with electra domain":  {slot, e.signObj(t, e.keys[proposer], sszUint64(1), signing.DomainRandao, phase0.Version{0x60}), "randao reveal"},
		"past slot":                   {slot - 1, e.reveal(t, proposer-1, slot-1), "past"},
		"far slot":                    {slot + 2, e.reveal(t, proposer+2, slot+2), "future"},
	}
	for name, c := range cases {
		_, err := e.propose(t, c.slot, c.reveal, nil)
		if code, body := errorStatus(err); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s (%v), want 400 with %q", name, code, body, err, c.want)
		}
	}
	if got := e.sim.Stats().Duties[DutyRandao]; got.Invalid != 3 || got.Valid != 0 {
		t.Errorf("randao counts %+v", got)
	}
	for _, q := range []string{"randao_reveal=0x12", "", "randao_reveal=0x" + strings.Repeat("00", 96) + "&graffiti=zz",
		"randao_reveal=0x" + strings.Repeat("00", 96) + "&builder_boost_factor=-1", "randao_reveal=0x" + strings.Repeat("00", 96) + "&skip_randao_verification"} {
		if code, body := rawDo(t, "GET", e.srv.URL+"/eth/v3/validator/blocks/10?"+q, "", nil); code != 400 {
			t.Errorf("%q: %d %s", q, code, body)
		}
	}
	// The next slot may be asked for early; skipping randao verification needs infinity.
	q := "randao_reveal=0xc0" + strings.Repeat("00", 95) + "&skip_randao_verification"
	if code, body := rawDo(t, "GET", e.srv.URL+"/eth/v3/validator/blocks/11?"+q, "", nil); code != 200 || !strings.Contains(body, `"version":"fulu"`) {
		t.Errorf("skip randao: %d %s", code, body)
	}
	for _, body := range []string{"", "{", `{"signed_block":null}`, "\x00\x01"} {
		for _, path := range []string{"/eth/v2/beacon/blocks", "/eth/v2/beacon/blinded_blocks"} {
			for _, ct := range []string{"application/json", "application/octet-stream"} {
				if code, resp := rawDo(t, "POST", e.srv.URL+path, body, map[string]string{"Eth-Consensus-Version": "fulu", "Content-Type": ct}); code != 400 {
					t.Errorf("%s %s %q: %d %s", path, ct, body, code, resp)
				}
			}
		}
	}
}

func TestProposeBlindedBlock(t *testing.T) {
	e := newEnvWith(t, 0, func(c *Config) { c.BuilderBlocks = true })
	slot := phase0.Slot(12)
	e.atSlot(slot, 0.05)
	proposer := phase0.ValidatorIndex(slot % testValidators)

	zero := uint64(0)
	full, err := e.propose(t, slot, e.reveal(t, proposer, slot), &zero)
	if err != nil || full.Blinded || full.Fulu == nil {
		t.Fatalf("boost 0: %+v, %v; want a full block", full, err)
	}
	p, err := e.propose(t, slot, e.reveal(t, proposer, slot), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blinded || p.FuluBlinded == nil || p.ExecutionValue.String() != builderPayloadValue {
		t.Fatalf("default boost with builder: %+v, want blinded", p)
	}
	b := p.FuluBlinded
	if b.Slot != slot || b.ProposerIndex != proposer || b.Body.ExecutionPayloadHeader.BlockHash == full.Fulu.Block.Body.ExecutionPayload.BlockHash {
		t.Errorf("blinded block %+v", b)
	}
	submit := func(sig phase0.BLSSignature) error {
		return e.client.SubmitBlindedProposal(context.Background(), &eth2api.SubmitBlindedProposalOpts{
			Proposal: &eth2api.VersionedSignedBlindedProposal{Version: spec.DataVersionFulu, Fulu: &apiv1electra.SignedBlindedBeaconBlock{Message: b, Signature: sig}},
		})
	}
	if code, _ := errorStatus(submit(e.signObj(t, e.keys[proposer], b, signing.DomainBeaconProposer, phase0.Version{0x10}))); code != 400 {
		t.Errorf("genesis-domain signature: %d, want 400", code)
	}
	if err := submit(e.signObj(t, e.keys[proposer], b, signing.DomainBeaconProposer, fuluVersion)); err != nil {
		t.Fatalf("blinded submission: %v", err)
	}
	// The full block is not accepted as blinded, nor the blinded one as full.
	if code, _ := errorStatus(e.submitFull(e.client, e.signedFull(t, full, e.keys[proposer], fuluVersion))); code != 0 {
		t.Errorf("the full block produced with boost 0 was refused: %d", code)
	}
	if got := e.sim.Stats().Duties[DutyProposer]; got.Valid != 1 || got.Invalid != 1 || got.Submitted != 3 || got.Expected == 0 {
		t.Errorf("proposer counts %+v", got)
	}
}

// newClientOpts connects a go-eth2-client with extra parameters.
func newClientOpts(t *testing.T, url string, params ...eth2http.Parameter) *eth2http.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := eth2http.New(ctx, append([]eth2http.Parameter{eth2http.WithAddress(url), eth2http.WithLogLevel(zerolog.Disabled)}, params...)...)
	if err != nil {
		t.Fatalf("connect go-eth2-client: %v", err)
	}
	return c.(*eth2http.Service)
}
