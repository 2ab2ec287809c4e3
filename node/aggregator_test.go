package node

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

func loadAll(t *testing.T, validators int) []*Identity {
	t.Helper()
	dir, _ := createTestCluster(t, validators)
	var ids []*Identity
	for i := 1; i <= 4; i++ {
		id, err := loadNode(dir, i)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func partial(id *Identity, pk phase0.BLSPubKey, root phase0.Root) p2p.Partial {
	return p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: signing.SerializeForPeer(id.Shares[pk].SignByte(root[:]))}
}

// The spec vector deserialization_fails_not_in_G2 (on the curve, outside the prime-order
// subgroup), compressed and uncompressed; signing's TestParsePeerSignature checks that both
// encode one point of the curve.
const (
	notInG2Compressed   = "8123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	notInG2Uncompressed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef087c8cfe7dbaf1e16223b38b0d6343723b09c73dfc14cf0b1065da168ea8d3d752bc62daeb2bc19fb72542150782d95705563f818f87409d27d1c65bab55db7cfd498b61050e1ed2fab7ccb52050b39aedcea21a46dca02553bdac4d4a72cc54"
)

func unhexNode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAggregator_RecoversFromAnyThreePartials(t *testing.T) {
	ids := loadAll(t, 1)
	pk := ids[0].Pubkeys()[0]
	root := phase0.Root{1, 2, 3}
	key := dutyKey{Slot: 5, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	// Partials of nodes 2 and 4 arrive before this node knows the duty.
	for _, i := range []int{1, 3} {
		sigs, errs := agg.Add(key, uint64(i+1), []p2p.Partial{partial(ids[i], pk, root)})
		if len(sigs) != 0 || len(errs) != 0 {
			t.Fatalf("early partial: %v %v", sigs, errs)
		}
	}
	if sigs, errs := agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root}); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("two partials completed a duty: %v %v", sigs, errs)
	}
	sigs, errs := agg.Add(key, 1, []p2p.Partial{partial(ids[0], pk, root)})
	if len(errs) != 0 || len(sigs) != 1 {
		t.Fatalf("third partial: sigs %v errs %v", sigs, errs)
	}
	if err := signing.Verify(pk[:], root[:], sigs[0].Signature[:]); err != nil {
		t.Fatalf("recovered signature: %v", err)
	}
	// A fourth partial does not produce a second submission.
	if sigs, _ := agg.Add(key, 3, []p2p.Partial{partial(ids[2], pk, root)}); len(sigs) != 0 {
		t.Fatal("completed twice")
	}
}

func TestAggregator_RefusesBadPartials(t *testing.T) {
	ids := loadAll(t, 1)
	pk := ids[0].Pubkeys()[0]
	root := phase0.Root{9}
	key := dutyKey{Slot: 1, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root})
	good := partial(ids[1], pk, root)
	otherRoot := partial(ids[1], pk, phase0.Root{8})
	cases := map[string]struct {
		from uint64
		p    p2p.Partial
	}{
		"malformed signature":      {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: []byte{1, 2, 3}}},
		"garbage 96 bytes":         {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: make([]byte, 96)}},
		"short group key":          {2, p2p.Partial{GroupPubkey: pk[:5], SigningRoot: root[:], Signature: good.Signature}},
		"unknown validator":        {2, p2p.Partial{GroupPubkey: make([]byte, 48), SigningRoot: root[:], Signature: good.Signature}},
		"other root":               {2, otherRoot},
		"signed by another share":  {3, good},
		"share index outside lock": {9, good},
		"nil everything":           {2, p2p.Partial{}},
		// The spec's not-in-G2 point, on the curve but outside the subgroup, in both encodings.
		"outside G2, uncompressed": {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: unhexNode(t, notInG2Uncompressed)}},
		"outside G2, compressed":   {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: unhexNode(t, notInG2Compressed)}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			sigs, errs := agg.Add(key, c.from, []p2p.Partial{c.p})
			if len(sigs) != 0 || len(errs) != 1 {
				t.Fatalf("sigs %v errs %v, want one refusal", sigs, errs)
			}
		})
	}
}

func TestAggregator_EarlyPartialsBounded(t *testing.T) {
	ids := loadAll(t, 1)
	agg := newAggregator(3, ids[0])
	var flood []p2p.Partial
	for i := 0; i < 100; i++ {
		flood = append(flood, p2p.Partial{})
	}
	_, errs := agg.Add(dutyKey{Slot: 1, Type: dutyAttester}, 2, flood)
	if len(errs) == 0 {
		t.Fatal("unbounded early partials accepted")
	}
}

// TestAggregator_SpoiledBatchDroppedWhole: one bad partial in a peer's message drops the whole
// message (no per-partial fallback a peer could use to burn CPU); the other peers still complete.
func TestAggregator_SpoiledBatchDroppedWhole(t *testing.T) {
	ids := loadAll(t, 2)
	pks := ids[0].Pubkeys()
	root := phase0.Root{7}
	key := dutyKey{Slot: 3, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pks[0]: root, pks[1]: root})

	spoiled := []p2p.Partial{partial(ids[1], pks[0], root), partial(ids[2], pks[1], root)} // second signed by share 3
	sigs, errs := agg.Add(key, 2, spoiled)
	if len(sigs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrBadBatch) {
		t.Fatalf("spoiled batch: sigs %v errs %v, want one ErrBadBatch", sigs, errs)
	}
	// Nodes 1, 3 and 4 complete both validators; node 2's good partial was not kept.
	for step, i := range []int{0, 2, 3} {
		s, e := agg.Add(key, uint64(i+1), []p2p.Partial{partial(ids[i], pks[0], root), partial(ids[i], pks[1], root)})
		if len(e) != 0 {
			t.Fatalf("node %d: %v", i+1, e)
		}
		// Had node 2's good partial been kept, node 3's would already complete validator 0.
		if want := map[int]int{0: 0, 1: 0, 2: 2}[step]; len(s) != want {
			t.Fatalf("after node %d: %d signatures, want %d", i+1, len(s), want)
		}
	}
}

// TestAggregator_EarlyPartialsVerifiedAsSent: partials held because they came before this node
// knew the duty are verified per sender in one batch, like any other message: one bad partial
// drops that sender's whole message, not just itself (a per-partial check would cost a pairing
// each for the common case of a peer that is ahead).
func TestAggregator_EarlyPartialsVerifiedAsSent(t *testing.T) {
	ids := loadAll(t, 2)
	pks := ids[0].Pubkeys()
	root := phase0.Root{6}
	key := dutyKey{Slot: 4, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	spoiled := []p2p.Partial{partial(ids[1], pks[0], root), partial(ids[2], pks[1], root)} // second signed by share 3
	good := []p2p.Partial{partial(ids[2], pks[0], root), partial(ids[2], pks[1], root)}
	for from, ps := range map[uint64][]p2p.Partial{2: spoiled, 3: good} {
		if sigs, errs := agg.Add(key, from, ps); len(sigs) != 0 || len(errs) != 0 {
			t.Fatalf("early partials: %v %v", sigs, errs)
		}
	}
	sigs, errs := agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pks[0]: root, pks[1]: root})
	if len(sigs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrBadBatch) {
		t.Fatalf("expect: sigs %v errs %v, want one ErrBadBatch for share 2's message", sigs, errs)
	}
	// Shares 1 and 4 complete both; had share 2's good partial been kept, share 1 alone would.
	if s, e := agg.Add(key, 1, []p2p.Partial{partial(ids[0], pks[0], root), partial(ids[0], pks[1], root)}); len(s) != 0 || len(e) != 0 {
		t.Fatalf("share 1: %d signatures, errs %v; want none yet", len(s), e)
	}
	if s, e := agg.Add(key, 4, []p2p.Partial{partial(ids[3], pks[0], root), partial(ids[3], pks[1], root)}); len(s) != 2 || len(e) != 0 {
		t.Fatalf("share 4: %d signatures, errs %v; want 2", len(s), e)
	}
}

// TestAggregator_AddOwnNeedsNoParsing: this node's own partials go in as points, and with two
// peers' partials they recover a signature that verifies under the group key.
func TestAggregator_AddOwnNeedsNoParsing(t *testing.T) {
	ids := loadAll(t, 1)
	pk := ids[0].Pubkeys()[0]
	root := phase0.Root{4, 2}
	key := dutyKey{Slot: 2, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	own := signing.SignSameMessageParsed([]*bls.SecretKey{ids[0].Shares[pk]}, root[:])
	if _, errs := agg.AddOwn(key, 1, []phase0.BLSPubKey{pk}, own); len(errs) != 1 {
		t.Fatalf("own partials before the duty is expected: errs %v, want one", errs)
	}
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root})
	if sigs, errs := agg.AddOwn(key, 1, []phase0.BLSPubKey{pk}, own); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("own partial alone: %v %v", sigs, errs)
	}
	agg.Add(key, 2, []p2p.Partial{partial(ids[1], pk, root)})
	sigs, errs := agg.Add(key, 3, []p2p.Partial{partial(ids[2], pk, root)})
	if len(sigs) != 1 || len(errs) != 0 {
		t.Fatalf("third partial: sigs %v errs %v", sigs, errs)
	}
	if err := signing.Verify(pk[:], root[:], sigs[0].Signature[:]); err != nil {
		t.Fatalf("recovered signature: %v", err)
	}
	// A validator outside the duty is refused.
	other := phase0.BLSPubKey{1}
	if _, errs := agg.AddOwn(key, 1, []phase0.BLSPubKey{other}, own); len(errs) != 1 {
		t.Fatalf("own partial outside the duty: errs %v", errs)
	}
}

// TestAggregator_DuplicatePartialInMessage: a validator's second partial in one message is
// refused without parsing; the first still counts.
func TestAggregator_DuplicatePartialInMessage(t *testing.T) {
	ids := loadAll(t, 1)
	pk := ids[0].Pubkeys()[0]
	root := phase0.Root{3}
	key := dutyKey{Slot: 2, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root})
	p := partial(ids[1], pk, root)
	if sigs, errs := agg.Add(key, 2, []p2p.Partial{p, p}); len(sigs) != 0 || len(errs) != 1 {
		t.Fatalf("duplicate: sigs %v errs %v, want one refusal", sigs, errs)
	}
	agg.Add(key, 3, []p2p.Partial{partial(ids[2], pk, root)})
	if sigs, errs := agg.Add(key, 4, []p2p.Partial{partial(ids[3], pk, root)}); len(sigs) != 1 || len(errs) != 0 {
		t.Fatalf("share 2's first partial did not count: sigs %v errs %v", sigs, errs)
	}
}

// TestAggregator_BadOwnShareDoesNotBlockPeers: own partials are stored unverified, so a wrong
// own share (a corrupt key file) spoils the first recovery. The own partial is then dropped
// and the validator reopened, and the peers' verified partials still recover the signature.
func TestAggregator_BadOwnShareDoesNotBlockPeers(t *testing.T) {
	ids := loadAll(t, 2)
	pks := ids[0].Pubkeys()
	root := phase0.Root{7, 7}
	key := dutyKey{Slot: 3, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	roots := map[phase0.BLSPubKey]phase0.Root{pks[0]: root, pks[1]: root}
	agg.Expect(key, roots)
	var wrong bls.SecretKey
	wrong.SetByCSPRNG()
	// The first validator's own partial is made with a wrong share, the second's is right.
	own := signing.SignSameMessageParsed([]*bls.SecretKey{&wrong, ids[0].Shares[pks[1]]}, root[:])
	if sigs, errs := agg.AddOwn(key, 1, pks, own); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("own partials alone: %v %v", sigs, errs)
	}
	agg.Add(key, 2, []p2p.Partial{partial(ids[1], pks[0], root), partial(ids[1], pks[1], root)})
	sigs, errs := agg.Add(key, 3, []p2p.Partial{partial(ids[2], pks[0], root), partial(ids[2], pks[1], root)})
	if len(sigs) != 1 || sigs[0].Pubkey != pks[1] {
		t.Fatalf("share 3: sigs %v, want only the second validator's", sigs)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrOwnShare) {
		t.Fatalf("share 3: errs %v, want one ErrOwnShare", errs)
	}
	// The fourth share's partial completes the first validator without this node's.
	sigs, errs = agg.Add(key, 4, []p2p.Partial{partial(ids[3], pks[0], root), partial(ids[3], pks[1], root)})
	if len(sigs) != 1 || sigs[0].Pubkey != pks[0] || len(errs) != 0 {
		t.Fatalf("share 4: sigs %v errs %v, want the first validator's signature", sigs, errs)
	}
	if err := signing.Verify(pks[0][:], root[:], sigs[0].Signature[:]); err != nil {
		t.Fatalf("recovered signature: %v", err)
	}
}
