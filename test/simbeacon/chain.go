package simbeacon

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// forkInfo is one fork of the chain.
type forkInfo struct {
	name    string // lower case, as in Eth-Consensus-Version
	key     string // upper case prefix of the spec keys, e.g. ALTAIR
	epoch   phase0.Epoch
	version phase0.Version
}

// forkNames are the chain's forks in order. All activate at epoch 0.
var forkNames = []string{"phase0", "altair", "bellatrix", "capella", "deneb", "electra", "fulu"}

// consensusVersion is the fork the chain runs on, as sent in Eth-Consensus-Version.
const consensusVersion = "fulu"

// makeForks derives a distinct version for every fork from the genesis version: fork i has the
// genesis version with its first byte raised by 0x10*i (wrapping, still distinct for 7 forks).
func makeForks(genesis phase0.Version) []forkInfo {
	forks := make([]forkInfo, len(forkNames))
	for i, name := range forkNames {
		v := genesis
		v[0] += byte(0x10 * i)
		key := "GENESIS"
		if i > 0 {
			key = upper(name)
		}
		forks[i] = forkInfo{name: name, key: key, epoch: 0, version: v}
	}
	return forks
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// currentFork returns the fork the chain is on (the last one; all are at epoch 0) and the one
// before it, as the state's fork field reports them.
func (s *Sim) currentFork() phase0.Fork {
	last := s.forks[len(s.forks)-1]
	prev := s.forks[len(s.forks)-2]
	return phase0.Fork{PreviousVersion: prev.version, CurrentVersion: last.version, Epoch: last.epoch}
}

// clock is a snapshot of the chain's time.
type clock struct {
	genesisSet bool
	started    bool        // genesis is set and has passed: slot 0 or later is under way
	slot       phase0.Slot // the current slot; 0 before genesis
	now        time.Time
	genesis    time.Time
}

// clock reads the current time and slot.
func (s *Sim) clock() clock {
	s.mu.Lock()
	g, set := s.genesis, s.genesisSet
	s.mu.Unlock()
	now := s.now()
	c := clock{genesisSet: set, now: now, genesis: g}
	if set && !now.Before(g) {
		c.started = true
		c.slot = phase0.Slot(now.Sub(g) / s.cfg.SlotDuration)
	}
	return c
}

// headSlot is the slot of the head block: the current slot's once its block has arrived (see
// headArrival), else the one before.
func (s *Sim) headSlot() phase0.Slot {
	c := s.clock()
	if c.started && c.slot > 0 && c.now.Before(s.slotStart(c.genesis, c.slot).Add(s.headArrival(c.slot))) {
		return c.slot - 1
	}
	return c.slot
}

// epoch returns the epoch of slot.
func (s *Sim) epoch(slot phase0.Slot) phase0.Epoch {
	return phase0.Epoch(uint64(slot) / s.cfg.SlotsPerEpoch)
}

// startSlot returns the first slot of epoch.
func (s *Sim) startSlot(epoch phase0.Epoch) phase0.Slot {
	return phase0.Slot(uint64(epoch) * s.cfg.SlotsPerEpoch)
}

// slotStart returns when slot begins, given the genesis time.
func (s *Sim) slotStart(genesis time.Time, slot phase0.Slot) time.Time {
	return genesis.Add(time.Duration(slot) * s.cfg.SlotDuration)
}

// blockRoot is the root of the block at slot: sha256("block" || slot as 8 bytes little endian).
// Every slot has a block.
func blockRoot(slot phase0.Slot) phase0.Root { return taggedRoot("block", uint64(slot)) }

// stateRoot is the root of the post-state of the block at slot.
func stateRoot(slot phase0.Slot) phase0.Root { return taggedRoot("state", uint64(slot)) }

func taggedRoot(tag string, n uint64) phase0.Root {
	h := sha256.New()
	h.Write([]byte(tag))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	h.Write(b[:])
	var r phase0.Root
	copy(r[:], h.Sum(nil))
	return r
}

// checkpoint is the checkpoint of epoch: its start slot's block root.
func (s *Sim) checkpoint(epoch phase0.Epoch) *phase0.Checkpoint {
	return &phase0.Checkpoint{Epoch: epoch, Root: blockRoot(s.startSlot(epoch))}
}

// finality returns the checkpoints of the state at slot: current justified is the previous epoch,
// previous justified and finalized are two epochs back (all clamped at epoch 0).
func (s *Sim) finality(slot phase0.Slot) (finalized, justified, prevJustified *phase0.Checkpoint) {
	e := s.epoch(slot)
	back := func(n phase0.Epoch) phase0.Epoch {
		if e < n {
			return 0
		}
		return e - n
	}
	return s.checkpoint(back(2)), s.checkpoint(back(1)), s.checkpoint(back(2))
}

// attestationData is the data this chain's head at slot votes for: index 0 (Electra), the slot's
// block, source the current justified checkpoint, target the slot's epoch.
func (s *Sim) attestationData(slot phase0.Slot) *phase0.AttestationData {
	_, justified, _ := s.finality(slot)
	return &phase0.AttestationData{
		Slot:            slot,
		Index:           0,
		BeaconBlockRoot: blockRoot(slot),
		Source:          justified,
		Target:          s.checkpoint(s.epoch(slot)),
	}
}
