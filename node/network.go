package node

import (
	"errors"
	"fmt"

	"github.com/dvmesh/dvmesh/network"
)

// checkForkSchedule refuses a beacon node whose fork schedule contradicts the built-in one of
// the lock's public network (the chain's forks are read from the beacon node at every start,
// never frozen in the lock, so a new fork needs no new lock; but a public network's known
// forks must match). Devnets and unknown local names are checked by genesis values only.
func checkForkSchedule(lockNetwork string, chain *Chain, beacon string) error {
	cfg, err := network.ByName(lockNetwork)
	if errors.Is(err, network.ErrUnknown) || (err == nil && !cfg.Public) {
		return nil
	}
	if err != nil {
		return err
	}
	for i, want := range cfg.Forks {
		if i >= len(chain.Forks) {
			return fmt.Errorf("beacon node %s reports %d forks; %s has %d (e.g. version %#x at epoch %d): it is not on %s or not up to date",
				beacon, len(chain.Forks), cfg.Name, len(cfg.Forks), want.Version[:], want.Epoch, cfg.Name)
		}
		got := chain.Forks[i]
		if got.Version != want.Version || got.Epoch != want.Epoch {
			return fmt.Errorf("beacon node %s's fork %d is version %#x at epoch %d, %s's is %#x at epoch %d: the beacon node is on another network than the cluster lock's (%s)",
				beacon, i, got.Version[:], got.Epoch, cfg.Name, want.Version[:], want.Epoch, cfg.Name)
		}
	}
	return nil
}
