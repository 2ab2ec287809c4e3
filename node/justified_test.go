package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// transitionBeacon is a beacon node in the first slot of an epoch whose block has not arrived:
// its head state predates the epoch transition (justified epoch 1) while the state at the
// current slot, advanced through the transition, has justified epoch 2, the source of the slot's
// attestation data. Prysm on the devnet was in this state at every epoch start.
type transitionBeacon struct {
	*fakeBeacon
	states []string // state ids asked for
}

func (b *transitionBeacon) JustifiedEpoch(_ context.Context, state string) (phase0.Epoch, error) {
	b.states = append(b.states, state)
	if state == "head" {
		return 1, nil
	}
	return 2, nil
}

func TestValidAttestationData_EpochStartSourceAheadOfHeadState(t *testing.T) {
	const slot = 12 // first slot of epoch 3 with 4-slot epochs
	b := &transitionBeacon{fakeBeacon: &fakeBeacon{}}
	// Genesis such that now is in the middle of slot 12.
	chain := &Chain{GenesisTime: time.Now().Add(-slot*time.Second - 500*time.Millisecond), SlotDuration: time.Second, SlotsPerEpoch: 4}
	n := &Node{beacon: b, chain: chain}
	data := func(source phase0.Epoch) []byte {
		b, err := (&phase0.AttestationData{Slot: slot, Source: &phase0.Checkpoint{Epoch: source}, Target: &phase0.Checkpoint{Epoch: 3}}).MarshalSSZ()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := n.validAttestationData(context.Background(), slot, data(2)); err != nil {
		t.Fatalf("a source justified in the state at the duty's slot was refused: %v", err)
	}
	if want := []string{"head", "12"}; len(b.states) != 2 || b.states[0] != want[0] || b.states[1] != want[1] {
		t.Fatalf("states asked for: %v, want %v", b.states, want)
	}
	if _, err := n.validAttestationData(context.Background(), slot, data(2)); err != nil || len(b.states) != 2 {
		t.Fatalf("second check: err %v, states %v; want it to pass from the kept epoch without a request", err, b.states)
	}
	// A source beyond the justified epoch of every state is still refused.
	if _, err := n.validAttestationData(context.Background(), slot, data(3)); !errors.Is(err, ErrInvalidDecided) {
		t.Fatalf("source after every justified epoch the beacon node reported: %v, want ErrInvalidDecided", err)
	}
}
