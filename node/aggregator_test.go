package node

import (
	"encoding/hex"
	"errors"
	"strings"
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

// partialsOf is share holder id's message for pks, all signing root.
func partialsOf(id *Identity, pks []phase0.BLSPubKey, root phase0.Root) []p2p.Partial {
	out := make([]p2p.Partial, len(pks))
	for i, pk := range pks {
		out[i] = partial(id, pk, root)
	}
	return out
}

// expectedDuty loads a cluster of the given validators and returns node 1's aggregator, which
// expects every validator to sign root in duty key.
func expectedDuty(t *testing.T, validators int, key dutyKey, root phase0.Root) ([]*Identity, []phase0.BLSPubKey, *aggregator) {
	t.Helper()
	ids := loadAll(t, validators)
	pks := ids[0].Pubkeys()
	roots := make(map[phase0.BLSPubKey]phase0.Root, len(pks))
	for _, pk := range pks {
		roots[pk] = root
	}
	agg := newAggregator(3, ids[0])
	agg.Expect(key, roots)
	return ids, pks, agg
}

// addOwn signs root for pks with id's shares and adds them as its own partials, as sendPartials
// does.
func addOwn(agg *aggregator, id *Identity, key dutyKey, pks []phase0.BLSPubKey, root phase0.Root) ([]fullSig, []error) {
	keys := make([]*bls.SecretKey, len(pks))
	for i, pk := range pks {
		keys[i] = id.Shares[pk]
	}
	return agg.AddOwn(key, pks, signing.SignSameMessageParsed(keys, root[:]))
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
	sigs, errs := addOwn(agg, ids[0], key, []phase0.BLSPubKey{pk}, root)
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
	root := phase0.Root{9}
	key := dutyKey{Slot: 1, Type: dutyAttester}
	ids, pks, agg := expectedDuty(t, 1, key, root)
	pk := pks[0]
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
		"share index outside lock": {9, good},
		"claims this node's share": {1, partial(ids[0], pk, root)},
		"nil everything":           {2, p2p.Partial{}},
		// The spec's not-in-G2 point, on the curve but outside the subgroup, in both encodings.
		"outside G2, uncompressed": {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: unhexNode(t, notInG2Uncompressed)}},
		"outside G2, compressed":   {2, p2p.Partial{GroupPubkey: pk[:], SigningRoot: root[:], Signature: unhexNode(t, notInG2Compressed)}},
	}
	// A well-formed partial signed with another share passes these checks: it is caught by the
	// recovered signature's check (TestAggregator_SpoiledBatchDroppedWhole).
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
	key := dutyKey{Slot: 1, Type: dutyAttester}
	_, errs := agg.Add(key, 2, flood)
	if len(errs) == 0 {
		t.Fatal("unbounded early partials accepted")
	}
	// The bound is per sender: share 2's flood does not crowd out share 3's partial.
	pk := ids[0].Pubkeys()[0]
	root := phase0.Root{2}
	if _, errs := agg.Add(key, 3, []p2p.Partial{partial(ids[2], pk, root)}); len(errs) != 0 {
		t.Fatalf("share 3's early partial after share 2's flood: %v", errs)
	}
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root})
	addOwn(agg, ids[0], key, []phase0.BLSPubKey{pk}, root)
	if sigs, errs := agg.Add(key, 4, []p2p.Partial{partial(ids[3], pk, root)}); len(sigs) != 1 || len(errs) != 0 {
		t.Fatalf("shares 1, 3 and 4: sigs %v errs %v, want the signature", sigs, errs)
	}
}

// TestAggregator_SpoiledBatchDroppedWhole: a peer's partials count unchecked until a signature
// recovered with them fails. Then each contributing peer's partials of the failed signatures get
// one batch check, and one bad partial drops all the spoiler sent for the duty (no per-partial
// fallback a peer could use to burn CPU: the checks are counted); the other peers still
// complete. The spoiler's later messages for the duty are refused unparsed, and it is a suspect:
// its partials are checked on arrival, and a spoiled message is dropped whole at once, until
// suspectSlots after the slot of its last spoiled duty.
func TestAggregator_SpoiledBatchDroppedWhole(t *testing.T) {
	// The third validator is not in the failing recovery: share 2's partial for it, waiting for
	// the threshold, must go too.
	root := phase0.Root{7}
	key := dutyKey{Slot: 3, Type: dutyAttester}
	ids, pks, agg := expectedDuty(t, 3, key, root)
	failing := map[phase0.BLSPubKey]phase0.Root{pks[0]: root, pks[1]: root}
	messageOf := func(i int) []p2p.Partial { return partialsOf(ids[i], pks[:2], root) }
	spoiled := []p2p.Partial{partial(ids[1], pks[0], root), partial(ids[2], pks[1], root), partial(ids[1], pks[2], root)} // second signed by share 3

	if sigs, errs := agg.Add(key, 2, spoiled); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("spoiled batch on arrival: sigs %v errs %v, want it kept unchecked", sigs, errs)
	}
	if agg.batchChecks.Load() != 0 {
		t.Fatal("a trusted peer's partials were checked on arrival")
	}
	if sigs, errs := addOwn(agg, ids[0], key, pks[:3], root); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("own partials: sigs %v errs %v", sigs, errs)
	}
	// Share 3's partials complete two validators with share 2's: the recovered batch fails,
	// share 2's check fails, share 3's passes; share 2's good partials go with its bad one.
	sigs, errs := agg.Add(key, 3, messageOf(2))
	if len(sigs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrBadBatch) || !strings.Contains(errs[0].Error(), "share 2 ") {
		t.Fatalf("share 3: sigs %v errs %v, want one ErrBadBatch naming share 2", sigs, errs)
	}
	// The recovered batch, then one batch per contributing peer (2 and 3), and no bisection.
	if checks, bisected := agg.batchChecks.Load(), agg.bisected.Load(); checks != 3 || bisected != 0 {
		t.Fatalf("%d batch checks and %d signatures bisected for one spoiled batch, want 3 and 0", checks, bisected)
	}
	if _, errs := agg.Add(key, 2, messageOf(1)); len(errs) != 1 {
		t.Fatalf("share 2's later message for the duty: errs %v, want it refused", errs)
	}
	sigs, errs = agg.Add(key, 4, append(messageOf(3), partial(ids[3], pks[2], root)))
	if len(sigs) != 2 || len(errs) != 0 {
		t.Fatalf("share 4: %d signatures, errs %v; want the two reopened validators only", len(sigs), errs)
	}
	for _, s := range sigs {
		if err := signing.Verify(s.Pubkey[:], root[:], s.Signature[:]); err != nil {
			t.Fatalf("recovered signature of %#x: %v", s.Pubkey, err)
		}
	}
	// Had share 2's partial of the third validator been kept, share 4's would have completed it.
	if sigs, errs := agg.Add(key, 3, []p2p.Partial{partial(ids[2], pks[2], root)}); len(sigs) != 1 || len(errs) != 0 {
		t.Fatalf("share 3 on the third validator: sigs %v errs %v, want it complete", sigs, errs)
	}

	// Share 2 is a suspect: its spoiled message of the next duty is refused on arrival, in one
	// check, and none of it is kept: shares 1, 3 and 4 complete without it.
	next := dutyKey{Slot: key.Slot + 1, Type: dutyAttester}
	agg.Expect(next, failing)
	before := agg.batchChecks.Load()
	if sigs, errs := agg.Add(next, 2, spoiled[:2]); len(sigs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrBadBatch) {
		t.Fatalf("suspect's spoiled message: sigs %v errs %v, want one ErrBadBatch at once", sigs, errs)
	}
	if checks := agg.batchChecks.Load() - before; checks != 1 {
		t.Fatalf("suspect's message: %d batch checks, want 1", checks)
	}
	addOwn(agg, ids[0], next, pks[:2], root)
	if sigs, errs := agg.Add(next, 3, messageOf(2)); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("shares 1 and 3: sigs %v errs %v, want none (share 2's spoiled partials not kept)", sigs, errs)
	}
	if sigs, errs := agg.Add(next, 4, messageOf(3)); len(sigs) != 2 || len(errs) != 0 {
		t.Fatalf("shares 1, 3 and 4: %d signatures, errs %v; want 2", len(sigs), errs)
	}
	// A suspect's good partials are checked and count.
	good := dutyKey{Slot: next.Slot + 1, Type: dutyAttester}
	agg.Expect(good, failing)
	addOwn(agg, ids[0], good, pks[:2], root)
	agg.Add(good, 2, messageOf(1))
	if sigs, errs := agg.Add(good, 4, messageOf(3)); len(sigs) != 2 || len(errs) != 0 {
		t.Fatalf("suspect's good partials: %d signatures, errs %v; want 2", len(sigs), errs)
	}
	// The suspicion lasts up to suspectSlots after the last spoiled duty's slot, inclusive.
	for _, c := range []struct {
		slot    phase0.Slot
		checked bool
	}{{next.Slot + suspectSlots, true}, {next.Slot + suspectSlots + 1, false}} {
		k := dutyKey{Slot: c.slot, Type: dutySelection}
		agg.Expect(k, failing)
		before := agg.batchChecks.Load()
		agg.Add(k, 2, messageOf(1))
		if checked := agg.batchChecks.Load() > before; checked != c.checked {
			t.Fatalf("slot %d (last spoiled %d): checked on arrival %v, want %v", c.slot, next.Slot, checked, c.checked)
		}
	}
}

// TestAggregator_CancellingPartialsCaught: a peer sends two wrong partials whose errors cancel
// (sig_1 + E, sig_2 - E), so that a plain sum of its partials verifies. The signatures recovered
// with them are each wrong; the randomised checks catch both the recovered signatures and the
// peer's batch, its partials are dropped, and the other peers complete both validators.
func TestAggregator_CancellingPartialsCaught(t *testing.T) {
	root := phase0.Root{5, 5}
	key := dutyKey{Slot: 9, Type: dutyAttester}
	ids, pks, agg := expectedDuty(t, 2, key, root)

	e := bls.HashAndMapToSignature([]byte("the error term"))
	var s0, s1 bls.G2
	bls.G2Add(&s0, bls.CastFromSign(ids[1].Shares[pks[0]].SignByte(root[:])), bls.CastFromSign(e))
	bls.G2Sub(&s1, bls.CastFromSign(ids[1].Shares[pks[1]].SignByte(root[:])), bls.CastFromSign(e))
	bad0, bad1 := bls.CastToSign(&s0), bls.CastToSign(&s1)
	// Setup check: the plain sum passes under the sum of share 2's public shares.
	var sum bls.Sign
	sum.Aggregate([]bls.Sign{*bad0, *bad1})
	sumKey := *ids[0].PublicShares[pks[0]][2]
	sumKey.Add(ids[0].PublicShares[pks[1]][2])
	if !sum.VerifyByte(&sumKey, root[:]) {
		t.Fatal("test setup: the cancelling errors should fool a plain sum")
	}
	if bad0.VerifyByte(ids[0].PublicShares[pks[0]][2], root[:]) {
		t.Fatal("test setup: the first partial should be wrong")
	}

	cancelling := []p2p.Partial{
		{GroupPubkey: pks[0][:], SigningRoot: root[:], Signature: signing.SerializeForPeer(bad0)},
		{GroupPubkey: pks[1][:], SigningRoot: root[:], Signature: signing.SerializeForPeer(bad1)},
	}
	agg.Add(key, 2, cancelling)
	addOwn(agg, ids[0], key, pks[:2], root)
	sigs, errs := agg.Add(key, 3, partialsOf(ids[2], pks[:2], root))
	if len(sigs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrBadBatch) {
		t.Fatalf("cancelling partials: sigs %v errs %v, want none and one ErrBadBatch", sigs, errs)
	}
	sigs, errs = agg.Add(key, 4, partialsOf(ids[3], pks[:2], root))
	if len(sigs) != 2 || len(errs) != 0 {
		t.Fatalf("share 4: %d signatures, errs %v; want 2", len(sigs), errs)
	}
	for _, s := range sigs {
		if err := signing.Verify(s.Pubkey[:], root[:], s.Signature[:]); err != nil {
			t.Fatalf("recovered signature of %#x: %v", s.Pubkey, err)
		}
	}
}

// TestAggregator_EarlyPartialsKeptAsSent: partials held because they came before this node knew
// the duty are processed per sender, as sent: one bad partial drops that sender's whole message
// once a signature recovered with it fails, not just itself (a per-partial check would cost a
// pairing each for the common case of a peer that is ahead).
func TestAggregator_EarlyPartialsKeptAsSent(t *testing.T) {
	ids := loadAll(t, 2)
	pks := ids[0].Pubkeys()
	root := phase0.Root{6}
	key := dutyKey{Slot: 4, Type: dutyAttester}
	agg := newAggregator(3, ids[0])
	spoiled := []p2p.Partial{partial(ids[1], pks[0], root), partial(ids[2], pks[1], root)} // second signed by share 3
	good := partialsOf(ids[2], pks[:2], root)
	for from, ps := range map[uint64][]p2p.Partial{2: spoiled, 3: good} {
		if sigs, errs := agg.Add(key, from, ps); len(sigs) != 0 || len(errs) != 0 {
			t.Fatalf("early partials: %v %v", sigs, errs)
		}
	}
	if sigs, errs := agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pks[0]: root, pks[1]: root}); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("expect: sigs %v errs %v, want both messages kept", sigs, errs)
	}
	// Share 1's partials complete both validators with shares 2 and 3; the recovered batch fails
	// and share 2's whole message goes: had its good partial been kept, share 1 would complete
	// the first validator.
	s, e := addOwn(agg, ids[0], key, pks[:2], root)
	if len(s) != 0 || len(e) != 1 || !errors.Is(e[0], ErrBadBatch) {
		t.Fatalf("share 1: %d signatures, errs %v; want none and one ErrBadBatch for share 2", len(s), e)
	}
	if s, e := agg.Add(key, 4, partialsOf(ids[3], pks[:2], root)); len(s) != 2 || len(e) != 0 {
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
	if _, errs := agg.AddOwn(key, []phase0.BLSPubKey{pk}, own); len(errs) != 1 {
		t.Fatalf("own partials before the duty is expected: errs %v, want one", errs)
	}
	agg.Expect(key, map[phase0.BLSPubKey]phase0.Root{pk: root})
	if sigs, errs := agg.AddOwn(key, []phase0.BLSPubKey{pk}, own); len(sigs) != 0 || len(errs) != 0 {
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
	if _, errs := agg.AddOwn(key, []phase0.BLSPubKey{other}, own); len(errs) != 1 {
		t.Fatalf("own partial outside the duty: errs %v", errs)
	}
}

// TestAggregator_DuplicatePartialInMessage: a validator's second partial in one message is
// refused without parsing; the first still counts.
func TestAggregator_DuplicatePartialInMessage(t *testing.T) {
	root := phase0.Root{3}
	key := dutyKey{Slot: 2, Type: dutyAttester}
	ids, pks, agg := expectedDuty(t, 1, key, root)
	pk := pks[0]
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
	root := phase0.Root{7, 7}
	key := dutyKey{Slot: 3, Type: dutyAttester}
	ids, pks, agg := expectedDuty(t, 2, key, root)
	var wrong bls.SecretKey
	wrong.SetByCSPRNG()
	// The first validator's own partial is made with a wrong share, the second's is right.
	own := signing.SignSameMessageParsed([]*bls.SecretKey{&wrong, ids[0].Shares[pks[1]]}, root[:])
	if sigs, errs := agg.AddOwn(key, pks, own); len(sigs) != 0 || len(errs) != 0 {
		t.Fatalf("own partials alone: %v %v", sigs, errs)
	}
	agg.Add(key, 2, partialsOf(ids[1], pks[:2], root))
	sigs, errs := agg.Add(key, 3, partialsOf(ids[2], pks[:2], root))
	if len(sigs) != 1 || sigs[0].Pubkey != pks[1] {
		t.Fatalf("share 3: sigs %v, want only the second validator's", sigs)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrOwnShare) {
		t.Fatalf("share 3: errs %v, want one ErrOwnShare", errs)
	}
	// The fourth share's partial completes the first validator without this node's.
	sigs, errs = agg.Add(key, 4, partialsOf(ids[3], pks[:2], root))
	if len(sigs) != 1 || sigs[0].Pubkey != pks[0] || len(errs) != 0 {
		t.Fatalf("share 4: sigs %v errs %v, want the first validator's signature", sigs, errs)
	}
	if err := signing.Verify(pks[0][:], root[:], sigs[0].Signature[:]); err != nil {
		t.Fatalf("recovered signature: %v", err)
	}
}
