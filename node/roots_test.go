package node

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// SSZ hash_tree_root written out by hand with sha256 (consensus-specs ssz/simple-serialize.md),
// independent of go-eth2-client's generated SSZ code, for the containers whose signing roots
// TestSigningRoots_MatchSpecFormulas does not cover.

func hashPair(a, b [32]byte) [32]byte { return sha256.Sum256(append(a[:], b[:]...)) }

// merkleize pads chunks with zero chunks to the next power of two at or above limit, and
// returns the root of the binary tree over them.
func merkleize(chunks [][32]byte, limit int) [32]byte {
	if len(chunks) > limit {
		panic(fmt.Sprintf("merkleize: %d chunks over a limit of %d", len(chunks), limit))
	}
	width := 1
	for width < limit {
		width *= 2
	}
	layer := make([][32]byte, width)
	copy(layer, chunks)
	for len(layer) > 1 {
		next := make([][32]byte, len(layer)/2)
		for i := range next {
			next[i] = hashPair(layer[2*i], layer[2*i+1])
		}
		layer = next
	}
	return layer[0]
}

// pack splits b into 32-byte chunks, the last one right-padded with zeros.
func pack(b []byte) [][32]byte {
	var out [][32]byte
	for len(b) > 0 {
		var c [32]byte
		n := copy(c[:], b)
		out = append(out, c)
		b = b[n:]
	}
	return out
}

// bytesRoot is the root of a fixed-size byte vector (Bytes20, Bytes48, Bytes96).
func bytesRoot(b []byte) [32]byte {
	chunks := pack(b)
	return merkleize(chunks, len(chunks))
}

// bitsBytes packs the given bits of a length-bit sequence, bit i at byte i/8, bit i%8 (no
// delimiter).
func bitsBytes(length int, set []int) []byte {
	b := make([]byte, (length+7)/8)
	for _, i := range set {
		b[i/8] |= 1 << (i % 8)
	}
	return b
}

// bitvectorRoot is the root of a Bitvector[n].
func bitvectorRoot(n int, set []int) [32]byte {
	return merkleize(pack(bitsBytes(n, set)), (n+255)/256)
}

// bitlistRoot is the root of a Bitlist[limit] of length bits: mix_in_length(merkleize(packed
// bits, chunk limit), length).
func bitlistRoot(length, limit int, set []int) [32]byte {
	return hashPair(merkleize(pack(bitsBytes(length, set)), (limit+255)/256), leRoot(uint64(length)))
}

// containerRoot is the root of a container whose fields have the given roots.
func containerRoot(fields ...[32]byte) [32]byte { return merkleize(fields, len(fields)) }

func checkpointRoot(c *phase0.Checkpoint) [32]byte {
	return containerRoot(leRoot(uint64(c.Epoch)), c.Root)
}

func attestationDataRoot(d *phase0.AttestationData) [32]byte {
	return containerRoot(leRoot(uint64(d.Slot)), leRoot(uint64(d.Index)), d.BeaconBlockRoot, checkpointRoot(d.Source), checkpointRoot(d.Target))
}

// Spec list and vector sizes.
const (
	maxAggregationBits = 2048 * 64 // MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT (Electra)
	maxCommitteeBits   = 64        // MAX_COMMITTEES_PER_SLOT
	syncSubcommitBits  = 512 / 4   // SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT
)

// filled returns n bytes derived from tag, so that every field of a container is distinct.
func filled(tag string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", tag, i))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func sig96(tag string) (s phase0.BLSSignature) { copy(s[:], filled(tag, 96)); return s }
func root32(tag string) (r phase0.Root)        { copy(r[:], filled(tag, 32)); return r }

func bitlist(length int, set []int) bitfield.Bitlist {
	b := bitfield.NewBitlist(uint64(length))
	for _, i := range set {
		b.SetBitAt(uint64(i), true)
	}
	return b
}

func bitvector64(set []int) bitfield.Bitvector64 {
	b := bitfield.NewBitvector64()
	for _, i := range set {
		b.SetBitAt(uint64(i), true)
	}
	return b
}

func bitvector128(set []int) bitfield.Bitvector128 {
	b := bitfield.NewBitvector128()
	for _, i := range set {
		b.SetBitAt(uint64(i), true)
	}
	return b
}

// TestSigningRoots_AttestationByHand: AttestationData (5 fields: slot, index, block root, source
// and target checkpoints), domain DOMAIN_BEACON_ATTESTER at the target epoch, as signAttestations
// computes it.
func TestSigningRoots_AttestationByHand(t *testing.T) {
	c := testChain()
	n := &Node{chain: c}
	data := &phase0.AttestationData{Slot: 97, Index: 0, BeaconBlockRoot: root32("head"),
		Source: &phase0.Checkpoint{Epoch: 11, Root: root32("source")}, Target: &phase0.Checkpoint{Epoch: 12, Root: root32("target")}}
	domain, err := n.chain.Domain(signing.DomainBeaconAttester, data.Target.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := signing.SigningRoot(data, domain)
	if err != nil {
		t.Fatal(err)
	}
	want := handSigningRoot(attestationDataRoot(data), handDomain(phase0.DomainType{1}, c.Forks[6].Version, c.GenesisValidatorsRoot))
	if got != want {
		t.Errorf("attestation signing root %#x, by hand %#x", got, want)
	}
}

// TestSigningRoots_AggregateAndProofByHand: Electra AggregateAndProof {aggregator_index,
// aggregate: Attestation {aggregation_bits: Bitlist[2048*64], data, signature, committee_bits:
// Bitvector[64]}, selection_proof}, domain DOMAIN_AGGREGATE_AND_PROOF at the slot's epoch, as
// runAggregator computes it. Aggregation bits of one chunk and of two (bits past 256).
func TestSigningRoots_AggregateAndProofByHand(t *testing.T) {
	c := testChain()
	n := &Node{chain: c}
	for _, bits := range []struct {
		length int
		set    []int
	}{{37, []int{0, 5, 36}}, {300, []int{0, 255, 256, 299}}, {8, nil}} {
		data := &phase0.AttestationData{Slot: 90, Index: 0, BeaconBlockRoot: root32("block"),
			Source: &phase0.Checkpoint{Epoch: 10, Root: root32("src")}, Target: &phase0.Checkpoint{Epoch: 11, Root: root32("tgt")}}
		committees := []int{3}
		msg := &electra.AggregateAndProof{
			AggregatorIndex: 123456,
			Aggregate: &electra.Attestation{AggregationBits: bitlist(bits.length, bits.set), Data: data,
				Signature: sig96("aggregate"), CommitteeBits: bitvector64(committees)},
			SelectionProof: sig96("selection"),
		}
		got, err := n.signingRoot(signing.DomainAggregateAndProof, c.EpochOf(data.Slot), msg)
		if err != nil {
			t.Fatal(err)
		}
		aggSig, selProof := msg.Aggregate.Signature, msg.SelectionProof
		attRoot := containerRoot(bitlistRoot(bits.length, maxAggregationBits, bits.set), attestationDataRoot(data),
			bytesRoot(aggSig[:]), bitvectorRoot(maxCommitteeBits, committees))
		objRoot := containerRoot(leRoot(123456), attRoot, bytesRoot(selProof[:]))
		want := handSigningRoot(objRoot, handDomain(phase0.DomainType{6}, c.Forks[6].Version, c.GenesisValidatorsRoot))
		if got != want {
			t.Errorf("aggregation bits %d%v: aggregate-and-proof signing root %#x, by hand %#x", bits.length, bits.set, got, want)
		}
	}
}

// TestSigningRoots_ContributionAndProofByHand: ContributionAndProof {aggregator_index,
// contribution: SyncCommitteeContribution {slot, beacon_block_root, subcommittee_index,
// aggregation_bits: Bitvector[128], signature}, selection_proof}, domain
// DOMAIN_CONTRIBUTION_AND_PROOF at the slot's epoch (here Electra's), as runSyncContributions
// computes it.
func TestSigningRoots_ContributionAndProofByHand(t *testing.T) {
	c := testChain()
	n := &Node{chain: c}
	set := []int{0, 7, 64, 127}
	msg := &altair.ContributionAndProof{
		AggregatorIndex: 77,
		Contribution: &altair.SyncCommitteeContribution{Slot: 21, BeaconBlockRoot: root32("head"), SubcommitteeIndex: 3,
			AggregationBits: bitvector128(set), Signature: sig96("contribution")},
		SelectionProof: sig96("sync selection"),
	}
	got, err := n.signingRoot(signing.DomainContributionAndProof, c.EpochOf(msg.Contribution.Slot), msg)
	if err != nil {
		t.Fatal(err)
	}
	con := msg.Contribution
	conRoot := containerRoot(leRoot(21), con.BeaconBlockRoot, leRoot(3), bitvectorRoot(syncSubcommitBits, set), bytesRoot(con.Signature[:]))
	objRoot := containerRoot(leRoot(77), conRoot, bytesRoot(msg.SelectionProof[:]))
	want := handSigningRoot(objRoot, handDomain(phase0.DomainType{9}, c.Forks[5].Version, c.GenesisValidatorsRoot))
	if got != want {
		t.Errorf("contribution-and-proof signing root %#x, by hand %#x", got, want)
	}
}

// TestSigningRoots_ValidatorRegistrationByHand: builder-API ValidatorRegistrationV1
// {fee_recipient: Bytes20, gas_limit, timestamp, pubkey: Bytes48}, domain
// DOMAIN_APPLICATION_BUILDER with the genesis fork version and a zero genesis validators root,
// built as signRegistrations builds it (timestamp in seconds).
func TestSigningRoots_ValidatorRegistrationByHand(t *testing.T) {
	c := testChain()
	var pk phase0.BLSPubKey
	copy(pk[:], filled("pubkey", 48))
	var fee [20]byte
	copy(fee[:], filled("fee", 20))
	const gasLimit, timestamp = 60_000_000, 1_700_000_123
	domain, err := signing.ComputeDomain(signing.DomainApplicationBuilder, c.GenesisForkVersion, phase0.Root{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := signing.SigningRoot(&apiv1.ValidatorRegistration{FeeRecipient: bellatrix.ExecutionAddress(fee), GasLimit: gasLimit,
		Timestamp: time.Unix(int64(timestamp), 0), Pubkey: pk}, domain)
	if err != nil {
		t.Fatal(err)
	}
	objRoot := containerRoot(bytesRoot(fee[:]), leRoot(gasLimit), leRoot(timestamp), bytesRoot(pk[:]))
	want := handSigningRoot(objRoot, handDomain(phase0.DomainType{0, 0, 0, 1}, c.GenesisForkVersion, phase0.Root{}))
	if got != want {
		t.Errorf("registration signing root %#x, by hand %#x", got, want)
	}
}

// TestSSZByHand_KnownVectors pins the hand-written helpers to values fixed by the spec's
// definitions alone: the root of a zero Bytes96 is the depth-2 zero hash, an empty Bitlist's
// root mixes length 0 into the zero subtree of its chunk limit.
func TestSSZByHand_KnownVectors(t *testing.T) {
	z1 := hashPair([32]byte{}, [32]byte{})
	z2 := hashPair(z1, z1)
	if got := bytesRoot(make([]byte, 96)); got != z2 {
		t.Errorf("zero Bytes96 root %#x, want %#x", got, z2)
	}
	zero := [32]byte{}
	want := zero
	for range 9 { // 512 chunks: depth 9
		want = hashPair(want, want)
	}
	if got := bitlistRoot(0, maxAggregationBits, nil); got != hashPair(want, leRoot(0)) {
		t.Errorf("empty Bitlist[%d] root %#x", maxAggregationBits, got)
	}
}
