package node

import (
	"errors"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func TestValidateAttestationData(t *testing.T) {
	good := func() *phase0.AttestationData {
		return &phase0.AttestationData{Slot: 17, Index: 0, Source: &phase0.Checkpoint{Epoch: 1}, Target: &phase0.Checkpoint{Epoch: 2}}
	}
	cases := map[string]struct {
		mutate    func(d *phase0.AttestationData)
		current   phase0.Slot
		justified phase0.Epoch
		ok        bool
	}{
		"honest":                 {func(*phase0.AttestationData) {}, 17, 1, true},
		"far-future target":      {func(d *phase0.AttestationData) { d.Target.Epoch = 1 << 40 }, 17, 1, false},
		"past target":            {func(d *phase0.AttestationData) { d.Target.Epoch = 1 }, 17, 1, false},
		"source after justified": {func(d *phase0.AttestationData) { d.Source.Epoch = 2 }, 17, 1, false},
		"source after target":    {func(d *phase0.AttestationData) { d.Source.Epoch = 3 }, 17, 5, false},
		"other slot":             {func(d *phase0.AttestationData) { d.Slot = 18 }, 17, 1, false},
		"not the current slot":   {func(*phase0.AttestationData) {}, 19, 1, false},
		"non-zero committee":     {func(d *phase0.AttestationData) { d.Index = 3 }, 17, 1, false},
		"missing checkpoints":    {func(d *phase0.AttestationData) { d.Source = nil }, 17, 1, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := good()
			c.mutate(d)
			err := validateAttestationData(d, 17, c.current, 2, c.justified)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidDecided) {
				t.Fatalf("err %v is not ErrInvalidDecided", err)
			}
		})
	}
}
