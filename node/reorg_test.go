package node

import (
	"log/slog"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// TestOnHead_ReorgDropsStaleDuties: a head event whose dependent roots differ from the first
// seen in the epoch drops the duties computed from the old blocks (previous root: this epoch's
// attester duties; current root: this epoch's proposer duties and the next epoch's attester
// duties), so that they are fetched again; the same roots again drop nothing.
func TestOnHead_ReorgDropsStaleDuties(t *testing.T) {
	n := &Node{chain: testChain(), log: slog.New(slog.DiscardHandler), metrics: newMetrics(), heads: newHeadTracker(),
		duties: map[phase0.Epoch]*epochDuties{}, depRoots: map[phase0.Epoch][2]phase0.Root{}}
	fill := func() {
		for e := phase0.Epoch(2); e <= 4; e++ {
			n.duties[e] = &epochDuties{haveAtt: true, haveProp: true, haveSync: true}
		}
	}
	have := func(e phase0.Epoch) bool { _, ok := n.duties[e]; return ok }
	fill()
	a, b, c := phase0.Root{1}, phase0.Root{2}, phase0.Root{3}
	n.onHead(HeadEvent{Slot: 24, PreviousDutyDependentRoot: a, CurrentDutyDependentRoot: b}) // epoch 3, first event
	n.onHead(HeadEvent{Slot: 25, PreviousDutyDependentRoot: a, CurrentDutyDependentRoot: b})
	if !have(2) || !have(3) || !have(4) {
		t.Fatal("duties dropped without a reorg")
	}
	n.onHead(HeadEvent{Slot: 26, PreviousDutyDependentRoot: a, CurrentDutyDependentRoot: c})
	if !have(2) || have(3) || have(4) {
		t.Fatalf("current dependent root changed: want epochs 3 and 4 dropped, have 2:%v 3:%v 4:%v", have(2), have(3), have(4))
	}
	fill()
	n.onHead(HeadEvent{Slot: 27, PreviousDutyDependentRoot: b, CurrentDutyDependentRoot: c})
	if have(3) != false || !have(4) {
		t.Fatalf("previous dependent root changed: want epoch 3 dropped only, have 3:%v 4:%v", have(3), have(4))
	}
	if n.heads.highest != 27 {
		t.Fatalf("head tracker at %d", n.heads.highest)
	}
}
