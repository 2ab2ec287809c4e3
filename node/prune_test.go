package node

import (
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

func TestPruneDue(t *testing.T) {
	cases := []struct {
		epoch phase0.Epoch
		keep  uint64
		want  bool
	}{
		{0, 256, false}, {64, 256, true}, {65, 256, false}, {128, 1024, true}, {96, 1024, false},
		{2, 8, true}, {3, 8, false}, {1, 2, true}, {1, 1, true}, {0, 1, false},
	}
	for _, c := range cases {
		if got := pruneDue(c.epoch, c.keep); got != c.want {
			t.Errorf("pruneDue(%d, keep %d) = %v, want %v", c.epoch, c.keep, got, c.want)
		}
	}
}
