package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

type headBeacon struct {
	Beacon
	head phase0.Slot
}

func (b headBeacon) HeadSlot(context.Context) (phase0.Slot, error) { return b.head, nil }

func TestCheckClock(t *testing.T) {
	genesis := time.Unix(1_700_000_000, 0)
	chain := &Chain{GenesisTime: genesis, SlotDuration: 12 * time.Second, SlotsPerEpoch: 32}
	now := genesis.Add(100 * 12 * time.Second) // slot 100
	for _, c := range []struct {
		head phase0.Slot
		ok   bool
	}{{100, true}, {70, true}, {130, true}, {67, false}, {133, false}, {0, false}} {
		err := checkClock(context.Background(), headBeacon{head: c.head}, chain, now)
		if (err == nil) != c.ok {
			t.Errorf("head %d at slot 100: err = %v, want ok=%v", c.head, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "clock") {
			t.Errorf("error does not name the clock: %v", err)
		}
	}
	// Before genesis there is nothing to compare.
	if err := checkClock(context.Background(), headBeacon{head: 999}, chain, genesis.Add(-time.Minute)); err != nil {
		t.Errorf("before genesis: %v", err)
	}
}
