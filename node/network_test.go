package node

import (
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/signing"
)

// TestCheckForkSchedule: a mainnet lock accepts mainnet's schedule (and forks beyond the
// built-in ones: the next fork needs no new lock), refuses a changed fork naming both
// networks' values, and devnets are not checked.
func TestCheckForkSchedule(t *testing.T) {
	cfg, err := network.ByName(network.Mainnet)
	if err != nil {
		t.Fatal(err)
	}
	chain := &Chain{Forks: append([]signing.Fork(nil), cfg.Forks...)}
	if err := checkForkSchedule("mainnet", chain, "bn"); err != nil {
		t.Fatalf("mainnet schedule refused: %v", err)
	}
	chain.Forks = append(chain.Forks, signing.Fork{Epoch: 999_999, Version: phase0.Version{0x07}})
	if err := checkForkSchedule("mainnet", chain, "bn"); err != nil {
		t.Fatalf("a later fork refused: %v", err)
	}
	chain.Forks[6].Version = phase0.Version{0x90, 0, 0, 0x74}
	err = checkForkSchedule("mainnet", chain, "bn")
	if err == nil || !strings.Contains(err.Error(), "0x90000074") || !strings.Contains(err.Error(), "0x06000000") {
		t.Fatalf("changed fork: %v", err)
	}
	if err := checkForkSchedule("mainnet", &Chain{Forks: cfg.Forks[:3]}, "bn"); err == nil {
		t.Fatal("a schedule missing forks accepted")
	}
	if err := checkForkSchedule("devnet", chain, "bn"); err != nil {
		t.Fatalf("devnet checked: %v", err)
	}
}
