package node

import (
	"fmt"
	"time"

	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// SlotAt returns the slot at time t and whether the chain has started by then.
func (c *Chain) SlotAt(t time.Time) (phase0.Slot, bool) {
	if t.Before(c.GenesisTime) {
		return 0, false
	}
	return phase0.Slot(t.Sub(c.GenesisTime) / c.SlotDuration), true
}

// SlotStart returns the time slot s begins.
func (c *Chain) SlotStart(s phase0.Slot) time.Time {
	return c.GenesisTime.Add(time.Duration(s) * c.SlotDuration)
}

// EpochOf returns the epoch of slot s.
func (c *Chain) EpochOf(s phase0.Slot) phase0.Epoch {
	return phase0.Epoch(uint64(s) / c.SlotsPerEpoch)
}

// FirstSlot returns the first slot of epoch e.
func (c *Chain) FirstSlot(e phase0.Epoch) phase0.Slot {
	return phase0.Slot(uint64(e) * c.SlotsPerEpoch)
}

// Domain returns the signing domain of domainType at epoch, from the fork schedule.
func (c *Chain) Domain(domainType phase0.DomainType, epoch phase0.Epoch) (phase0.Domain, error) {
	v, err := signing.ForkVersionAt(c.Forks, epoch)
	if err != nil {
		return phase0.Domain{}, err
	}
	return signing.ComputeDomain(domainType, v, c.GenesisValidatorsRoot)
}

// AttestationVersion returns the attestation container version at epoch. dvmesh signs
// Electra-style attestations only (every live network is past Electra).
func (c *Chain) AttestationVersion(epoch phase0.Epoch) (spec.DataVersion, error) {
	switch {
	case epoch >= c.FuluEpoch:
		return spec.DataVersionFulu, nil
	case epoch >= c.ElectraEpoch:
		return spec.DataVersionElectra, nil
	default:
		return spec.DataVersionUnknown, fmt.Errorf("epoch %d is before Electra (%d): pre-Electra attestations are not supported", epoch, c.ElectraEpoch)
	}
}
