package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/lock"
)

type rootBeacon struct {
	Beacon
	gvr phase0.Root
}

func (b rootBeacon) Chain(context.Context) (*Chain, error) {
	return &Chain{GenesisValidatorsRoot: b.gvr, SlotDuration: 12e9, SlotsPerEpoch: 32}, nil
}

// TestConnectChain_RefusesOtherGenesisValidatorsRoot: a lock made for mainnet refuses a beacon
// node of another chain with the same genesis fork version (a mainnet shadow fork, say).
func TestConnectChain_RefusesOtherGenesisValidatorsRoot(t *testing.T) {
	l := &lock.Lock{Network: "mainnet", GenesisForkVersion: "0x00000000",
		GenesisValidatorsRoot: "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"}
	n := &Node{id: &Identity{Lock: l}, log: slog.Default(), cfg: Config{Beacon: rootBeacon{}}}
	err := n.connectChain(t.Context(), rootBeacon{gvr: phase0.Root{1}})
	if err == nil || !strings.Contains(err.Error(), "genesis validators root") {
		t.Fatalf("err = %v", err)
	}
}
