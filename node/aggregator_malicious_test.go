package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// partialsCounted reads dvmesh_partials_received_total{result} from n's metrics.
func partialsCounted(t *testing.T, n *Node, result string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dvmesh_partials_received_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAggregator_PartialForAnotherBlockRefused: the cluster agreed on block A for a proposer
// duty, and share holder 2 sends a partial signature over block B instead (lying, or following
// another decision). Node 1 receives it through its peer-message path (onPartials) first of all:
// it must refuse and count it by the time it would have counted, and its own partial with those
// of nodes 3 and 4 (the threshold of three without node 2) must still recover a signature of
// block A valid under the group key.
// Node 2's partial would be the third one after nodes 1 and 3: had it been kept, the
// recovery would have run on it (and failed), so no signature may come before node 4's.
func TestAggregator_PartialForAnotherBlockRefused(t *testing.T) {
	ids := loadAll(t, 1)
	pk := ids[0].Pubkeys()[0]
	peers := ids[0].Lock.PeerIDs()

	proposal, duty, _, _ := testProposal(t, false)
	slot := duty.Slot
	agreedBlock, err := proposal.Root()
	if err != nil {
		t.Fatal(err)
	}
	proposal.Fulu.Block.Body.Graffiti = [32]byte{'o', 't', 'h', 'e', 'r'}
	otherBlock, err := proposal.Root()
	if err != nil || otherBlock == agreedBlock {
		t.Fatalf("other block root %#x (%v)", otherBlock, err)
	}

	cases := []struct {
		name string
		// labelled is the signing root node 2's partial claims; it always signs the other block.
		labelAgreed bool
		// early: node 2's partial arrives before node 1 knows the duty's root.
		early   bool
		counted string
	}{
		{name: "labelled with the other block's root", counted: "invalid"},
		{name: "labelled with the agreed root", labelAgreed: true, counted: "bad_batch"},
		{name: "labelled with the agreed root, before the duty is known", labelAgreed: true, early: true, counted: "bad_batch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chain := testChain()
			// The current slot is the duty's: peers' partials are accepted only near it.
			chain.GenesisTime = time.Now().Add(-time.Duration(slot)*chain.SlotDuration - chain.SlotDuration/2)
			n := &Node{id: ids[0], chain: chain, agg: newAggregator(3, ids[0]), metrics: newMetrics(),
				log: slog.New(slog.DiscardHandler), runs: map[dutyKey]*sigRun{}}
			epoch := chain.EpochOf(slot)
			agreedRoot, err := n.signingRoot(signing.DomainBeaconProposer, epoch, rootObj(agreedBlock))
			if err != nil {
				t.Fatal(err)
			}
			otherRoot, err := n.signingRoot(signing.DomainBeaconProposer, epoch, rootObj(otherBlock))
			if err != nil {
				t.Fatal(err)
			}
			key := dutyKey{Slot: slot, Type: dutyProposer}
			msg := func(i int, root phase0.Root) p2p.Message {
				return p2p.Message{Slot: uint64(slot), DutyType: dutyProposer, Partials: []p2p.Partial{partial(ids[i], pk, root)}}
			}
			bad := msg(1, otherRoot)
			if c.labelAgreed {
				bad.Partials[0].SigningRoot = agreedRoot[:]
			}

			if c.early {
				n.onPartials(peers[1], bad)
			}
			run := n.expect(key, map[phase0.BLSPubKey]phase0.Root{pk: agreedRoot})
			if !c.early {
				n.onPartials(peers[1], bad)
			}
			// Node 1's own partial, as sendPartials keeps it, then node 3's.
			sigs, errs := addOwn(n.agg, n.id, key, []phase0.BLSPubKey{pk}, agreedRoot)
			n.handleFull(key, sigs, errs)
			n.onPartials(peers[2], msg(2, agreedRoot))
			if got, _ := run.take(); len(got) != 0 {
				t.Fatalf("a signature recovered from nodes 1 and 3 and node 2's partial over another block: %v", got)
			}
			// Refused on arrival when it names another root; when it claims the agreed one, once
			// the signature recovered with it failed and node 2's own batch check failed.
			if got := partialsCounted(t, n, c.counted); got != 1 {
				t.Errorf("node 2's partial over the other block: %v counted %q, want 1", got, c.counted)
			}
			if len(errs) != 0 {
				t.Fatalf("node 1's own partial refused: %v", errs)
			}
			n.onPartials(peers[3], msg(3, agreedRoot))
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			got, err := run.wait(ctx)
			if err != nil {
				t.Fatalf("nodes 1, 3 and 4 did not complete the duty: %v", err)
			}
			sig := got[pk]
			if err := signing.Verify(pk[:], agreedRoot[:], sig[:]); err != nil {
				t.Fatalf("recovered signature does not verify over the agreed block under the group key: %v", err)
			}
			if signing.Verify(pk[:], otherRoot[:], sig[:]) == nil {
				t.Fatal("recovered signature verifies over the other block")
			}
			if refused := partialsCounted(t, n, "invalid") + partialsCounted(t, n, "bad_batch"); refused != 1 {
				t.Fatalf("%v partials refused, want node 2's only", refused)
			}
		})
	}
}
