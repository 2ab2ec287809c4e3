package simbeacon

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
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

// attesterDependentRoot is the dependent root of attester duties for epoch: the block root at the
// last slot of epoch-2, or the genesis block root for epochs 0 and 1.
func (s *Sim) attesterDependentRoot(epoch phase0.Epoch) phase0.Root {
	if epoch <= 1 {
		return blockRoot(0)
	}
	return blockRoot(s.startSlot(epoch-1) - 1)
}

// epochDuties is the attester assignment of one epoch.
type epochDuties struct {
	slot       []phase0.Slot             // per validator index: the slot of its duty
	position   []uint64                  // per validator index: its position in that slot's committee
	committees [][]phase0.ValidatorIndex // per slot of the epoch: the attesters, ascending by index
}

// dutySlotOffset is the deterministic pseudo-random slot offset within the epoch of validator's
// duty: the first 8 bytes (little endian) of sha256(epoch || index) modulo SLOTS_PER_EPOCH.
func dutySlotOffset(epoch phase0.Epoch, index phase0.ValidatorIndex, slotsPerEpoch uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(epoch))
	binary.LittleEndian.PutUint64(b[8:], uint64(index))
	h := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(h[:8]) % slotsPerEpoch
}

// computeDuties assigns every validator one attester duty in epoch; there is one committee
// (index 0) per slot, holding that slot's attesters in ascending index order.
func (s *Sim) computeDuties(epoch phase0.Epoch) *epochDuties {
	n := len(s.cfg.Validators)
	d := &epochDuties{
		slot:       make([]phase0.Slot, n),
		position:   make([]uint64, n),
		committees: make([][]phase0.ValidatorIndex, s.cfg.SlotsPerEpoch),
	}
	start := s.startSlot(epoch)
	for i := range n {
		off := dutySlotOffset(epoch, phase0.ValidatorIndex(i), s.cfg.SlotsPerEpoch)
		d.slot[i] = start + phase0.Slot(off)
		d.position[i] = uint64(len(d.committees[off]))
		d.committees[off] = append(d.committees[off], phase0.ValidatorIndex(i))
	}
	return d
}

// maxCachedEpochs bounds the duty cache; the oldest epoch is evicted first.
const maxCachedEpochs = 16

// dutiesLocked returns the (cached) duties of epoch. s.mu must be held.
func (s *Sim) dutiesLocked(epoch phase0.Epoch) *epochDuties {
	if d, ok := s.duties[epoch]; ok {
		return d
	}
	d := s.computeDuties(epoch)
	if len(s.duties) >= maxCachedEpochs {
		keys := make([]phase0.Epoch, 0, len(s.duties))
		for e := range s.duties {
			keys = append(keys, e)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		delete(s.duties, keys[0])
	}
	s.duties[epoch] = d
	if _, ok := s.dutyCounts[epoch]; !ok {
		s.dutyCounts[epoch] = committeeSizes(d)
	}
	return d
}

// expectedLocked returns the number of attester duties at slot. s.mu must be held.
func (s *Sim) expectedLocked(slot phase0.Slot) uint64 {
	e := s.epoch(slot)
	counts, ok := s.dutyCounts[e]
	if !ok {
		counts = committeeSizes(s.computeDuties(e))
		s.dutyCounts[e] = counts
	}
	return counts[uint64(slot)%s.cfg.SlotsPerEpoch]
}

func committeeSizes(d *epochDuties) []uint64 {
	c := make([]uint64, len(d.committees))
	for i, m := range d.committees {
		c[i] = uint64(len(m))
	}
	return c
}

// duty is one validator's attester duty.
type duty struct {
	slot            phase0.Slot
	position        uint64
	committeeLength uint64
}

// dutyOf returns validator's attester duty in epoch; the validator index must be known.
func (s *Sim) dutyOf(epoch phase0.Epoch, index phase0.ValidatorIndex) duty {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dutiesLocked(epoch)
	slot := d.slot[index]
	return duty{
		slot:            slot,
		position:        d.position[index],
		committeeLength: uint64(len(d.committees[uint64(slot)%s.cfg.SlotsPerEpoch])),
	}
}
