package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	apiv1electra "github.com/attestantio/go-eth2-client/api/v1/electra"
	apiv1fulu "github.com/attestantio/go-eth2-client/api/v1/fulu"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/deneb"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/holiman/uint256"

	"github.com/dvmesh/dvmesh/signing"
)

// The spec formulas written out by hand with sha256, independent of go-eth2-client's SSZ code:
// compute_domain = domain_type || hash_tree_root(ForkData)[:28], where the ForkData root is
// sha256(version padded to 32 bytes || genesis_validators_root), and compute_signing_root =
// sha256(object_root || domain).
func handDomain(dt phase0.DomainType, v phase0.Version, gvr phase0.Root) phase0.Domain {
	var buf [64]byte
	copy(buf[:4], v[:])
	copy(buf[32:], gvr[:])
	h := sha256.Sum256(buf[:])
	var d phase0.Domain
	copy(d[:4], dt[:])
	copy(d[4:], h[:28])
	return d
}

func handSigningRoot(objRoot [32]byte, d phase0.Domain) phase0.Root {
	return sha256.Sum256(append(objRoot[:], d[:]...))
}

func leRoot(v uint64) [32]byte {
	var r [32]byte
	binary.LittleEndian.PutUint64(r[:], v)
	return r
}

// testChain has distinct versions for every fork, Fulu from epoch 10, so that a domain taken
// from the wrong fork shows.
func testChain() *Chain {
	c := &Chain{GenesisForkVersion: phase0.Version{0x10}, SlotsPerEpoch: 8, SlotDuration: time.Second, SyncCommitteeSize: 512}
	c.GenesisValidatorsRoot = sha256.Sum256([]byte("gvr"))
	for i := range 7 {
		epoch := phase0.Epoch(0)
		if i == 6 {
			epoch = 10
		}
		c.Forks = append(c.Forks, signing.Fork{Epoch: epoch, Version: phase0.Version{byte(0x10 * (i + 1))}})
	}
	c.ElectraEpoch, c.FuluEpoch = 0, 10
	return c
}

func TestSigningRoots_MatchSpecFormulas(t *testing.T) {
	c := testChain()
	n := &Node{chain: c}
	electraV, fuluV, capellaV := c.Forks[5].Version, c.Forks[6].Version, c.Forks[3].Version
	gvr := c.GenesisValidatorsRoot
	block := phase0.Root(sha256.Sum256([]byte("block")))

	check := func(name string, got phase0.Root, err error, want phase0.Root) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: signing root %#x, spec formula gives %#x", name, got, want)
		}
	}
	got, err := n.signingRoot(signing.DomainRandao, 12, sszUint64(12))
	check("randao at epoch 12 (Fulu)", got, err, handSigningRoot(leRoot(12), handDomain(phase0.DomainType{2}, fuluV, gvr)))
	got, err = n.signingRoot(signing.DomainSelectionProof, 1, sszUint64(9))
	check("selection proof of slot 9 (Electra)", got, err, handSigningRoot(leRoot(9), handDomain(phase0.DomainType{5}, electraV, gvr)))
	got, err = n.signingRoot(signing.DomainBeaconProposer, 11, rootObj(block))
	check("block", got, err, handSigningRoot(block, handDomain(phase0.DomainType{0}, fuluV, gvr)))
	got, err = n.signingRoot(signing.DomainSyncCommittee, 11, rootObj(block))
	check("sync committee message", got, err, handSigningRoot(block, handDomain(phase0.DomainType{7}, fuluV, gvr)))
	// SyncAggregatorSelectionData{slot, subcommittee}: two uint64 leaves, root = sha256(leaf0 || leaf1).
	l0, l1 := leRoot(90), leRoot(3)
	got, err = n.signingRoot(signing.DomainSyncCommitteeSelectionProof, 11, &altair.SyncAggregatorSelectionData{Slot: 90, SubcommitteeIndex: 3})
	check("sync selection", got, err, handSigningRoot(sha256.Sum256(append(l0[:], l1[:]...)), handDomain(phase0.DomainType{8}, fuluV, gvr)))
	// EIP-7044: the exit domain uses Capella's version, whatever the current fork.
	got, err = n.exitRoot(5, 20)
	e0, e1 := leRoot(20), leRoot(5)
	check("voluntary exit", got, err, handSigningRoot(sha256.Sum256(append(e0[:], e1[:]...)), handDomain(phase0.DomainType{4}, capellaV, gvr)))
	// Builder registrations: genesis fork version and a zero genesis validators root.
	d, err := signing.ComputeDomain(signing.DomainApplicationBuilder, c.GenesisForkVersion, phase0.Root{})
	if err != nil || d != handDomain(phase0.DomainType{0, 0, 0, 1}, phase0.Version{0x10}, phase0.Root{}) {
		t.Errorf("builder domain %#x (%v)", d, err)
	}
}

func TestIsAggregator_SpecRuleAndOdds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	hits := 0
	for range 4000 {
		var sig phase0.BLSSignature
		for i := range sig {
			sig[i] = byte(r.Uint32())
		}
		h := sha256.Sum256(sig[:])
		want := binary.LittleEndian.Uint64(h[:8])%8 == 0
		if isAggregator(8, sig) != want {
			t.Fatal("isAggregator differs from bytes_to_uint64(hash(sig)[0:8]) % modulo == 0")
		}
		if want {
			hits++
		}
		if !isAggregator(0, sig) || !isAggregator(1, sig) {
			t.Fatal("modulo 0 or 1 must make every validator an aggregator")
		}
	}
	if hits < 400 || hits > 600 {
		t.Fatalf("%d of 4000 aggregators at modulo 8, want about 500", hits)
	}
}

func testProposal(t *testing.T, blinded bool) (*api.VersionedProposal, *proposerDuty, phase0.BLSSignature, [20]byte) {
	t.Helper()
	reveal := phase0.BLSSignature{1, 2, 3}
	fee := [20]byte{0xfe}
	duty := &proposerDuty{ProposerDuty: &apiv1.ProposerDuty{Slot: 33, ValidatorIndex: 7}}
	body := &electra.BeaconBlockBody{
		RANDAOReveal: reveal, ETH1Data: &phase0.ETH1Data{BlockHash: make([]byte, 32)}, SyncAggregate: &altair.SyncAggregate{SyncCommitteeBits: bitfield.NewBitvector512()},
		ExecutionRequests: &electra.ExecutionRequests{},
	}
	block := &electra.BeaconBlock{Slot: 33, ProposerIndex: 7, ParentRoot: phase0.Root{9}, Body: body}
	p := &api.VersionedProposal{Version: spec.DataVersionFulu, Blinded: blinded}
	if blinded {
		p.FuluBlinded = &apiv1electra.BlindedBeaconBlock{Slot: 33, ProposerIndex: 7, ParentRoot: phase0.Root{9}, Body: &apiv1electra.BlindedBeaconBlockBody{
			RANDAOReveal: reveal, ETH1Data: body.ETH1Data, SyncAggregate: body.SyncAggregate, ExecutionRequests: body.ExecutionRequests,
			ExecutionPayloadHeader: &deneb.ExecutionPayloadHeader{FeeRecipient: bellatrix.ExecutionAddress(fee), BaseFeePerGas: uint256.NewInt(1), ExtraData: []byte{}},
		}}
	} else {
		body.ExecutionPayload = &deneb.ExecutionPayload{FeeRecipient: bellatrix.ExecutionAddress(fee), BaseFeePerGas: uint256.NewInt(1), ExtraData: []byte{}}
		p.Fulu = &apiv1fulu.BlockContents{Block: block}
	}
	return p, duty, reveal, fee
}

func TestProposal_EncodeDecodeAndValidate(t *testing.T) {
	for _, blinded := range []bool{false, true} {
		p, duty, reveal, fee := testProposal(t, blinded)
		b, err := encodeProposal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := decodeProposal(b)
		if err != nil {
			t.Fatal(err)
		}
		r1, _ := p.Root()
		r2, err := q.Root()
		if err != nil || r1 != r2 || q.Blinded != blinded {
			t.Fatalf("blinded=%v: round trip changed the block (%v)", blinded, err)
		}
		if err := validateProposal(q, duty, reveal, fee); err != nil {
			t.Fatalf("blinded=%v: valid proposal refused: %v", blinded, err)
		}
		wrongs := map[string]func() error{
			"slot": func() error {
				d := *duty.ProposerDuty
				d.Slot++
				return validateProposal(q, &proposerDuty{ProposerDuty: &d}, reveal, fee)
			},
			"proposer": func() error {
				d := *duty.ProposerDuty
				d.ValidatorIndex++
				return validateProposal(q, &proposerDuty{ProposerDuty: &d}, reveal, fee)
			},
			"randao":        func() error { return validateProposal(q, duty, phase0.BLSSignature{9}, fee) },
			"fee recipient": func() error { return validateProposal(q, duty, reveal, [20]byte{1}) },
		}
		for name, f := range wrongs {
			if err := f(); !errors.Is(err, ErrInvalidDecided) {
				t.Errorf("blinded=%v: wrong %s accepted (%v)", blinded, name, err)
			}
		}
	}
	for _, garbage := range [][]byte{nil, {1}, {byte(spec.DataVersionFulu), 0, 1, 2}, {byte(spec.DataVersionFulu), 2}, {200, 0}} {
		if _, err := decodeProposal(garbage); !errors.Is(err, ErrInvalidDecided) {
			t.Errorf("garbage %x decoded (%v)", garbage, err)
		}
	}
}

func testAggregate(committee uint64, length uint64, data *phase0.AttestationData) *electra.Attestation {
	cb := bitfield.NewBitvector64()
	cb.SetBitAt(committee, true)
	return &electra.Attestation{AggregationBits: bitfield.NewBitlist(length), Data: data, CommitteeBits: cb}
}

func TestAggregates_EncodeDecodeAndValidate(t *testing.T) {
	data := &phase0.AttestationData{Slot: 5, BeaconBlockRoot: phase0.Root{1}, Source: &phase0.Checkpoint{}, Target: &phase0.Checkpoint{Epoch: 1}}
	root, _ := data.HashTreeRoot()
	committees := map[phase0.CommitteeIndex]uint64{2: 10, 5: 12}
	good := []*electra.Attestation{testAggregate(2, 10, data), testAggregate(5, 12, data)}
	b, err := encodeAggregates(spec.DataVersionFulu, good)
	if err != nil {
		t.Fatal(err)
	}
	v, got, err := decodeAggregates(b)
	if err != nil || v != spec.DataVersionFulu || len(got) != 2 {
		t.Fatalf("round trip: %v %v %d", err, v, len(got))
	}
	if err := validateAggregates(got, root, committees); err != nil {
		t.Fatalf("valid aggregates refused: %v", err)
	}
	other := &phase0.AttestationData{Slot: 5, BeaconBlockRoot: phase0.Root{2}, Source: &phase0.Checkpoint{}, Target: &phase0.Checkpoint{Epoch: 1}}
	bad := map[string][]*electra.Attestation{
		"other data":         {testAggregate(2, 10, other), testAggregate(5, 12, data)},
		"other committee":    {testAggregate(3, 10, data), testAggregate(5, 12, data)},
		"repeated committee": {testAggregate(2, 10, data), testAggregate(2, 10, data)},
		"wrong bits length":  {testAggregate(2, 11, data), testAggregate(5, 12, data)},
		"none":               {},
	}
	for name, aggs := range bad {
		if err := validateAggregates(aggs, root, committees); !errors.Is(err, ErrInvalidDecided) {
			t.Errorf("%s accepted (%v)", name, err)
		}
	}
	// A committee the beacon node had no attestations for is left out (Prysm answers 404).
	if err := validateAggregates([]*electra.Attestation{testAggregate(2, 10, data)}, root, committees); err != nil {
		t.Errorf("aggregates without an empty committee refused: %v", err)
	}
	two := testAggregate(2, 10, data)
	two.CommitteeBits.SetBitAt(5, true)
	if err := validateAggregates([]*electra.Attestation{two, testAggregate(5, 12, data)}, root, committees); err == nil {
		t.Error("aggregate with two committee bits accepted")
	}
	for _, garbage := range [][]byte{nil, {byte(spec.DataVersionFulu), 0, 0, 0}, {byte(spec.DataVersionFulu), 0, 0, 0, 9, 1}, {3}} {
		if _, _, err := decodeAggregates(garbage); !errors.Is(err, ErrInvalidDecided) {
			t.Errorf("garbage %x decoded (%v)", garbage, err)
		}
	}
}

func TestContributions_EncodeDecodeAndValidate(t *testing.T) {
	root := phase0.Root{7}
	mk := func(slot phase0.Slot, sub uint64, r phase0.Root) *altair.SyncCommitteeContribution {
		return &altair.SyncCommitteeContribution{Slot: slot, SubcommitteeIndex: sub, BeaconBlockRoot: r, AggregationBits: bitfield.NewBitvector128()}
	}
	subs := map[uint64]bool{0: true, 3: true}
	b, err := encodeContributions([]*altair.SyncCommitteeContribution{mk(9, 0, root), mk(9, 3, root)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeContributions(b)
	if err != nil || validateContributions(got, 9, root, subs) != nil {
		t.Fatalf("valid contributions refused: %v %v", err, validateContributions(got, 9, root, subs))
	}
	bad := map[string][]*altair.SyncCommitteeContribution{
		"other slot":     {mk(8, 0, root), mk(9, 3, root)},
		"other root":     {mk(9, 0, phase0.Root{1}), mk(9, 3, root)},
		"other sub":      {mk(9, 1, root), mk(9, 3, root)},
		"repeated sub":   {mk(9, 0, root), mk(9, 0, root)},
		"none":           {},
		"unexpected sub": {mk(9, 0, root), mk(9, 3, root), mk(9, 2, root)},
	}
	for name, cs := range bad {
		if err := validateContributions(cs, 9, root, subs); !errors.Is(err, ErrInvalidDecided) {
			t.Errorf("%s accepted (%v)", name, err)
		}
	}
	// A subcommittee the beacon node had no messages for is left out (Prysm answers 404).
	if err := validateContributions([]*altair.SyncCommitteeContribution{mk(9, 3, root)}, 9, root, subs); err != nil {
		t.Errorf("contributions without an empty subcommittee refused: %v", err)
	}
	if _, err := decodeContributions([]byte{0, 0, 0, 5, 1}); !errors.Is(err, ErrInvalidDecided) {
		t.Error("truncated contributions decoded")
	}
}

func TestKnownDutyType(t *testing.T) {
	for _, ok := range []string{"attester", "proposer", "randao", "selection", "aggregator", "sync_message", "sync_selection/0", "sync_selection/3", "sync_contribution/2", "registration"} {
		if !knownDutyType(ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{"", "exit", "sync_selection/4", "sync_selection/", "sync_selection/10", "sync_contribution/x", "attester/1"} {
		if knownDutyType(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// contribBeacon answers contributions for the subcommittees in have and, like Prysm, 404 ("No
// subcommittee messages found") for the others, wrapped as MultiBeacon wraps a node's error.
type contribBeacon struct {
	Beacon
	have map[uint64]bool
}

func (b contribBeacon) SyncCommitteeContribution(_ context.Context, slot phase0.Slot, sub uint64, root phase0.Root) (*altair.SyncCommitteeContribution, error) {
	if !b.have[sub] {
		err := &api.Error{Method: "GET", Endpoint: "/eth/v1/validator/sync_committee_contribution", StatusCode: 404,
			Data: []byte(`{"message":"No subcommittee messages found","code":404}`)}
		return nil, fmt.Errorf("sync committee contribution: %w", errors.Join(fmt.Errorf("http://bn: %w", err)))
	}
	return &altair.SyncCommitteeContribution{Slot: slot, SubcommitteeIndex: sub, BeaconBlockRoot: root, AggregationBits: bitfield.NewBitvector128()}, nil
}

// On a real chain a subcommittee's pool can be empty when the contributions are fetched (seen on
// a Prysm devnet): that subcommittee's aggregators sit out, the others still aggregate.
func TestFetchContributions_SkipsSubcommitteesWithoutMessages(t *testing.T) {
	root := phase0.Root{7}
	n := &Node{beacon: contribBeacon{have: map[uint64]bool{1: true}}}
	b, err := n.fetchContributions(context.Background(), 9, root, []uint64{0, 1, 2})
	if err != nil {
		t.Fatalf("one empty subcommittee failed the whole duty: %v", err)
	}
	got, err := decodeContributions(b)
	if err != nil || len(got) != 1 || got[0].SubcommitteeIndex != 1 {
		t.Fatalf("contributions %v %v, want subcommittee 1's only", got, err)
	}
	if err := validateContributions(got, 9, root, map[uint64]bool{0: true, 1: true, 2: true}); err != nil {
		t.Fatalf("decided subset refused: %v", err)
	}
	n.beacon = contribBeacon{}
	if _, err := n.fetchContributions(context.Background(), 9, root, []uint64{0, 2}); err == nil {
		t.Fatal("no contribution at all was not an error")
	}
	if isNotFound(errors.New("404")) || !isNotFound(fmt.Errorf("x: %w", &api.Error{StatusCode: 404})) || isNotFound(&api.Error{StatusCode: 500}) {
		t.Fatal("isNotFound misjudges")
	}
}

// aggBeacon answers aggregates for the committees in have and, like Prysm, 404 ("No matching
// attestations found") for the others.
type aggBeacon struct {
	Beacon
	have map[phase0.CommitteeIndex]bool
	data *phase0.AttestationData
}

func (b aggBeacon) AggregateAttestation(_ context.Context, _ phase0.Slot, _ phase0.Root, ci phase0.CommitteeIndex) (*spec.VersionedAttestation, error) {
	if !b.have[ci] {
		return nil, fmt.Errorf("aggregate attestation: %w", &api.Error{StatusCode: 404, Data: []byte(`{"message":"No matching attestations found","code":404}`)})
	}
	return &spec.VersionedAttestation{Version: spec.DataVersionElectra, Electra: testAggregate(uint64(ci), 10, b.data)}, nil
}

// On a real chain one committee's attestations can be missing from the pool at aggregation
// time (seen on a Prysm devnet): that committee's aggregators sit out, the others aggregate.
func TestFetchAggregates_SkipsCommitteesWithoutAttestations(t *testing.T) {
	data := &phase0.AttestationData{Slot: 5, BeaconBlockRoot: phase0.Root{1}, Source: &phase0.Checkpoint{}, Target: &phase0.Checkpoint{Epoch: 1}}
	root, _ := data.HashTreeRoot()
	n := &Node{beacon: aggBeacon{have: map[phase0.CommitteeIndex]bool{5: true}, data: data}}
	b, err := n.fetchAggregates(context.Background(), 5, root, []phase0.CommitteeIndex{2, 5})
	if err != nil {
		t.Fatalf("one empty committee failed the whole duty: %v", err)
	}
	_, got, err := decodeAggregates(b)
	if err != nil || len(got) != 1 || committeeOf(got[0]) != 5 {
		t.Fatalf("aggregates %v %v, want committee 5's only", got, err)
	}
	if err := validateAggregates(got, root, map[phase0.CommitteeIndex]uint64{2: 10, 5: 10}); err != nil {
		t.Fatalf("decided subset refused: %v", err)
	}
	n.beacon = aggBeacon{data: data}
	if _, err := n.fetchAggregates(context.Background(), 5, root, []phase0.CommitteeIndex{2}); err == nil {
		t.Fatal("no aggregate at all was not an error")
	}
}
