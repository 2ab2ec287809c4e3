package simbeacon

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"sort"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// The simulated network.
//
// The chain has Config.NetworkSize validators (len(Config.Validators) when zero). Indices
// 0..len(Validators)-1 are the configured validators, whose keys the simulator knows; the rest are
// virtual: they have deterministic fake public keys (see virtualPubkey), are active with 32 ETH like
// every validator, hold duties like every validator, but never sign (no key exists for them), so any
// submission in their name fails verification.
//
// Nothing is stored per virtual validator: duties are computed on demand from a per-epoch
// pseudo-random permutation of the validator indices (a keyed Feistel network with cycle walking,
// see feistel), which maps a committee position to a validator and back in constant time.
//
// Attester committees follow the spec's layout on top of that permutation:
// committees_per_slot = max(1, min(MAX_COMMITTEES_PER_SLOT, N / SLOTS_PER_EPOCH /
// TARGET_COMMITTEE_SIZE)); the epoch's slots*committees committees partition the shuffled indices
// as compute_committee does (committee k holds shuffled positions [N*k/count, N*(k+1)/count)), k =
// slot_offset*committees_per_slot + committee_index. Every validator therefore has exactly one
// attester duty per epoch, and committee sizes (hence aggregator odds) are those of a real
// network of N validators.
//
// Proposers and sync committees depend on whether the network is small (N <= smallNetwork):
//   - large network: the proposer of slot s is a uniformly pseudo-random validator of the whole
//     network (derived from the epoch's seed and s); the sync committee of a period has
//     SYNC_COMMITTEE_SIZE seats, seat i held by a uniformly pseudo-random validator (sampling with
//     replacement, as the spec's does), so a configured validator rarely proposes or sits.
//   - small network, at least one configured validator: proposals and sync seats go to the
//     configured validators only, so that short local runs exercise every duty. The proposer of
//     slot s (s > 0) in epoch e is configured validator (s + reorgs(e)) mod len(Validators), where
//     reorgs(e) counts the Reorg calls that reshuffled epoch e; seat i of period p is held by
//     configured validator (i + p) mod len(Validators), so with at most 128 configured validators
//     each sits in every one of the 4 subcommittees, several times over (the spec, too, gives a
//     validator several seats when there are fewer than 512 validators).
//
// Slot 0 has no proposer (it holds the genesis block).
//
// SYNC_COMMITTEE_SIZE is the mainnet preset's 512 (4 subcommittees of 128) whatever the network
// size, not a smaller preset for tiny networks: go-eth2-client's static SSZ types (the
// SyncAggregate's Bitvector512 in every block, the contribution's Bitvector128) have the mainnet
// sizes, and a client without custom-spec support, like dvmesh's, would encode other sizes wrongly.
// A tiny network fills the 512 seats by repetition instead, as the spec's committee selection does
// when there are fewer than 512 validators; a validator with several seats in a subcommittee has a
// bit for each in contributions, and its signature counts once per bit.

// smallNetwork is the largest network size whose proposals and sync seats go to the configured
// validators only: SYNC_COMMITTEE_SIZE.
const smallNetwork = syncCommitteeSize

// Spec constants of the simulated chain (mainnet preset).
const (
	targetCommitteeSize             = 128
	targetAggregatorsPerCommittee   = 16
	syncCommitteeSize               = 512
	syncCommitteeSubnetCount        = 4
	syncSubcommitteeSize            = syncCommitteeSize / syncCommitteeSubnetCount
	targetAggregatorsPerSyncSubcomm = 16
	epochsPerSyncCommitteePeriod    = 256
	syncAggregatorModulo            = max(1, syncCommitteeSize/syncCommitteeSubnetCount/targetAggregatorsPerSyncSubcomm)
	maxCommitteesPerSlot            = 64
)

// virtualMagic starts the public key of every virtual validator.
var virtualMagic = []byte("\xb5dvmesh-virtual\x00")

// virtualPubkey is the fake public key of virtual validator index: virtualMagic (16 bytes), the
// index (8 bytes, big endian), then the first 24 bytes of sha256(virtualMagic || index). It is not
// a valid BLS public key.
func virtualPubkey(index phase0.ValidatorIndex) phase0.BLSPubKey {
	var pk phase0.BLSPubKey
	copy(pk[:16], virtualMagic)
	binary.BigEndian.PutUint64(pk[16:24], uint64(index))
	h := sha256.Sum256(pk[:24])
	copy(pk[24:], h[:24])
	return pk
}

// virtualIndex decodes a virtual validator's public key; ok is false for any other key.
func virtualIndex(pk phase0.BLSPubKey) (phase0.ValidatorIndex, bool) {
	if !bytes.Equal(pk[:16], virtualMagic) {
		return 0, false
	}
	idx := phase0.ValidatorIndex(binary.BigEndian.Uint64(pk[16:24]))
	return idx, virtualPubkey(idx) == pk
}

// pubkeyOf returns the public key of validator index, which must be below the network size.
func (s *Sim) pubkeyOf(index phase0.ValidatorIndex) phase0.BLSPubKey {
	if uint64(index) < uint64(len(s.cfg.Validators)) {
		return s.cfg.Validators[index]
	}
	return virtualPubkey(index)
}

// indexOf returns the index of the validator with public key pk, if the network has one.
func (s *Sim) indexOf(pk phase0.BLSPubKey) (phase0.ValidatorIndex, bool) {
	if idx, ok := s.pubkey[pk]; ok {
		return idx, true
	}
	if idx, ok := virtualIndex(pk); ok && uint64(idx) >= uint64(len(s.cfg.Validators)) && uint64(idx) < s.n {
		return idx, true
	}
	return 0, false
}

// configured reports whether index is one of the configured validators.
func (s *Sim) configured(index phase0.ValidatorIndex) bool {
	return uint64(index) < uint64(len(s.cfg.Validators))
}

// committeesPerSlot is the spec's get_committee_count_per_slot for n active validators.
func committeesPerSlot(n, slotsPerEpoch uint64) uint64 {
	return max(1, min(maxCommitteesPerSlot, n/slotsPerEpoch/targetCommitteeSize))
}

// aggregatorModulo is the spec's is_aggregator modulo for a committee of length n.
func aggregatorModulo(n uint64) uint64 {
	return max(1, n/targetAggregatorsPerCommittee)
}

// isAggregatorProof is the spec's is_aggregator / is_sync_committee_aggregator test of a
// selection proof: bytes_to_uint64(hash(proof)[0:8]) % modulo == 0.
func isAggregatorProof(proof phase0.BLSSignature, modulo uint64) bool {
	h := sha256.Sum256(proof[:])
	return binary.LittleEndian.Uint64(h[:8])%modulo == 0
}

// feistel is a keyed pseudo-random permutation of [0, n): a 4-round balanced Feistel network on
// the smallest even number of bits covering n, restricted to [0, n) by cycle walking.
type feistel struct {
	n    uint64
	half uint   // bits per half
	mask uint64 // (1 << half) - 1
	key  uint64
}

func newFeistel(n, key uint64) feistel {
	half := uint(1)
	for uint64(1)<<(2*half) < n {
		half++
	}
	return feistel{n: n, half: half, mask: 1<<half - 1, key: key}
}

// splitmix64 is the SplitMix64 finaliser, the round function's mixer.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func (f feistel) round(r, v uint64) uint64 {
	return splitmix64(f.key^splitmix64(r<<32^v)) & f.mask
}

func (f feistel) step(x uint64) uint64 {
	l, r := x>>f.half, x&f.mask
	for i := range uint64(4) {
		l, r = r, l^f.round(i, r)
	}
	return l<<f.half | r
}

func (f feistel) unstep(x uint64) uint64 {
	l, r := x>>f.half, x&f.mask
	for i := uint64(4); i > 0; i-- {
		l, r = r^f.round(i-1, l), l
	}
	return l<<f.half | r
}

// forward maps x in [0, n) to its image in [0, n).
func (f feistel) forward(x uint64) uint64 {
	for {
		x = f.step(x)
		if x < f.n {
			return x
		}
	}
}

// inverse is forward's inverse.
func (f feistel) inverse(x uint64) uint64 {
	for {
		x = f.unstep(x)
		if x < f.n {
			return x
		}
	}
}

// shuffling is the attester committee layout of one epoch (see the package notes above).
type shuffling struct {
	start phase0.Slot
	n     uint64 // network size
	spe   uint64 // slots per epoch
	cps   uint64 // committees per slot
	count uint64 // committees in the epoch: cps * spe
	perm  feistel
}

// epochSeed is the seed of epoch after gen reorgs: independent of the genesis validators root,
// so the duties of a configuration are the same on every run.
func epochSeed(epoch phase0.Epoch, gen uint64) uint64 {
	var b [24]byte
	copy(b[:8], "dvmseed\x00")
	binary.LittleEndian.PutUint64(b[8:16], uint64(epoch))
	binary.LittleEndian.PutUint64(b[16:], gen)
	h := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(h[:8])
}

// shuffleLocked returns the layout of epoch. s.mu must be held.
func (s *Sim) shuffleLocked(epoch phase0.Epoch) shuffling {
	cps := committeesPerSlot(s.n, s.cfg.SlotsPerEpoch)
	return shuffling{
		start: s.startSlot(epoch),
		n:     s.n,
		spe:   s.cfg.SlotsPerEpoch,
		cps:   cps,
		count: cps * s.cfg.SlotsPerEpoch,
		perm:  newFeistel(s.n, epochSeed(epoch, s.genLocked(epoch))),
	}
}

// shuffle returns the layout of epoch.
func (s *Sim) shuffle(epoch phase0.Epoch) shuffling {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuffleLocked(epoch)
}

// bounds returns the shuffled positions [start, end) of committee k of the epoch.
func (sh shuffling) bounds(k uint64) (uint64, uint64) {
	return sh.n * k / sh.count, sh.n * (k + 1) / sh.count
}

// duty is one validator's attester duty.
type duty struct {
	slot            phase0.Slot
	committeeIndex  phase0.CommitteeIndex
	position        uint64
	committeeLength uint64
}

// dutyOf returns the attester duty of validator index (below the network size) in the epoch.
func (sh shuffling) dutyOf(index phase0.ValidatorIndex) duty {
	p := sh.perm.inverse(uint64(index))
	k := p * sh.count / sh.n
	for {
		start, end := sh.bounds(k)
		switch {
		case p < start:
			k--
		case p >= end:
			k++
		default:
			return duty{
				slot:            sh.start + phase0.Slot(k/sh.cps),
				committeeIndex:  phase0.CommitteeIndex(k % sh.cps),
				position:        p - start,
				committeeLength: end - start,
			}
		}
	}
}

// committee returns the members of committee index at slot (a slot of the epoch), in committee
// order; nil if index is out of range.
func (sh shuffling) committee(slot phase0.Slot, index phase0.CommitteeIndex) []phase0.ValidatorIndex {
	if uint64(index) >= sh.cps || slot < sh.start || uint64(slot-sh.start) >= sh.spe {
		return nil
	}
	start, end := sh.bounds(uint64(slot-sh.start)*sh.cps + uint64(index))
	out := make([]phase0.ValidatorIndex, 0, end-start)
	for p := start; p < end; p++ {
		out = append(out, phase0.ValidatorIndex(sh.perm.forward(p)))
	}
	return out
}

// committeeLength returns the length of committee index at slot, or 0 if out of range.
func (sh shuffling) committeeLength(slot phase0.Slot, index phase0.CommitteeIndex) uint64 {
	if uint64(index) >= sh.cps || slot < sh.start || uint64(slot-sh.start) >= sh.spe {
		return 0
	}
	start, end := sh.bounds(uint64(slot-sh.start)*sh.cps + uint64(index))
	return end - start
}

// genLocked is the number of reorgs that reshuffled epoch. s.mu must be held.
func (s *Sim) genLocked(epoch phase0.Epoch) uint64 {
	return uint64(sort.Search(len(s.reorgs), func(i int) bool { return s.reorgs[i] > epoch }))
}

// dutyOf returns validator's attester duty in epoch; the index must be below the network size.
func (s *Sim) dutyOf(epoch phase0.Epoch, index phase0.ValidatorIndex) duty {
	return s.shuffle(epoch).dutyOf(index)
}

// proposerLocked returns the proposer of slot; ok is false for slot 0 and an empty network. s.mu
// must be held.
func (s *Sim) proposerLocked(slot phase0.Slot) (phase0.ValidatorIndex, bool) {
	if slot == 0 || s.n == 0 {
		return 0, false
	}
	epoch := s.epoch(slot)
	gen := s.genLocked(epoch)
	if v := uint64(len(s.cfg.Validators)); s.n <= smallNetwork && v > 0 {
		return phase0.ValidatorIndex((uint64(slot) + gen) % v), true
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], epochSeed(epoch, gen))
	binary.LittleEndian.PutUint64(b[8:], uint64(slot))
	h := sha256.Sum256(b[:])
	return phase0.ValidatorIndex(binary.LittleEndian.Uint64(h[:8]) % s.n), true
}

// proposer returns the proposer of slot (see proposerLocked).
func (s *Sim) proposer(slot phase0.Slot) (phase0.ValidatorIndex, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proposerLocked(slot)
}

// syncPeriod is the sync committee period of epoch.
func syncPeriod(epoch phase0.Epoch) uint64 { return uint64(epoch) / epochsPerSyncCommitteePeriod }

// syncCommittee is the sync committee of one period.
type syncCommittee struct {
	seats      [syncCommitteeSize]phase0.ValidatorIndex
	members    map[phase0.ValidatorIndex][]uint64 // validator -> its seats, ascending
	configured []phase0.ValidatorIndex            // the configured members, ascending
}

// syncCommitteeOf returns the sync committee of period (see syncCommitteeLocked).
func (s *Sim) syncCommitteeOf(period uint64) *syncCommittee {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncCommitteeLocked(period)
}

// syncCommitteeLocked returns the sync committee of period (cached; sync committees do not
// change on reorgs). An empty network has an empty committee. s.mu must be held.
func (s *Sim) syncCommitteeLocked(period uint64) *syncCommittee {
	if sc, ok := s.syncCommittees[period]; ok {
		return sc
	}
	sc := &syncCommittee{members: map[phase0.ValidatorIndex][]uint64{}}
	if s.n > 0 {
		v := uint64(len(s.cfg.Validators))
		for i := range uint64(syncCommitteeSize) {
			var idx uint64
			if s.n <= smallNetwork && v > 0 {
				idx = (i + period) % v
			} else {
				var b [24]byte
				copy(b[:8], "dvmsync\x00")
				binary.LittleEndian.PutUint64(b[8:16], period)
				binary.LittleEndian.PutUint64(b[16:], i)
				h := sha256.Sum256(b[:])
				idx = binary.LittleEndian.Uint64(h[:8]) % s.n
			}
			sc.seats[i] = phase0.ValidatorIndex(idx)
			sc.members[phase0.ValidatorIndex(idx)] = append(sc.members[phase0.ValidatorIndex(idx)], i)
		}
	}
	for v := range sc.members {
		if s.configured(v) {
			sc.configured = append(sc.configured, v)
		}
	}
	sort.Slice(sc.configured, func(i, j int) bool { return sc.configured[i] < sc.configured[j] })
	if len(s.syncCommittees) >= 8 {
		for p := range s.syncCommittees {
			delete(s.syncCommittees, p)
			break
		}
	}
	s.syncCommittees[period] = sc
	return sc
}

// mixedRoot is root after gen reorgs: root itself when gen is 0.
func mixedRoot(root phase0.Root, gen uint64) phase0.Root {
	if gen == 0 {
		return root
	}
	h := sha256.New()
	h.Write([]byte("reorg"))
	h.Write(root[:])
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], gen)
	h.Write(b[:])
	var r phase0.Root
	copy(r[:], h.Sum(nil))
	return r
}

// attesterDependentRootLocked is the dependent root of attester duties for epoch: the block root
// at the last slot of epoch-2 (the genesis block root for epochs 0 and 1), changed by every reorg
// that reshuffled epoch. s.mu must be held.
func (s *Sim) attesterDependentRootLocked(epoch phase0.Epoch) phase0.Root {
	root := blockRoot(0)
	if epoch > 1 {
		root = blockRoot(s.startSlot(epoch-1) - 1)
	}
	return mixedRoot(root, s.genLocked(epoch))
}

// attesterDependentRoot is attesterDependentRootLocked with the lock taken.
func (s *Sim) attesterDependentRoot(epoch phase0.Epoch) phase0.Root {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attesterDependentRootLocked(epoch)
}

// proposerDependentRootLocked is the dependent root of proposer duties for epoch: the block root
// at the last slot of epoch-1 (genesis for epoch 0), changed by every reorg that reshuffled
// epoch. s.mu must be held.
func (s *Sim) proposerDependentRootLocked(epoch phase0.Epoch) phase0.Root {
	root := blockRoot(0)
	if epoch > 0 {
		root = blockRoot(s.startSlot(epoch) - 1)
	}
	return mixedRoot(root, s.genLocked(epoch))
}

// proposerDependentRoot is proposerDependentRootLocked with the lock taken.
func (s *Sim) proposerDependentRoot(epoch phase0.Epoch) phase0.Root {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proposerDependentRootLocked(epoch)
}

// ReorgResult describes what a Reorg changed.
type ReorgResult struct {
	// Epoch is the current epoch: its duties and those of every later epoch were reshuffled.
	Epoch phase0.Epoch `json:"epoch"`
	// The new dependent roots: attester duties of Epoch and Epoch+1, proposer duties of Epoch
	// (which head events now carry as previous_duty_dependent_root and
	// current_duty_dependent_root).
	AttesterDependentRoot     phase0.Root `json:"attester_dependent_root"`
	NextAttesterDependentRoot phase0.Root `json:"next_attester_dependent_root"`
	ProposerDependentRoot     phase0.Root `json:"proposer_dependent_root"`
}

// Reorg simulates a reorg deep enough to change the duties of the current and the next epoch:
// the dependent roots of both change (in duty responses and head events), and attester
// committees and proposers of both are reshuffled. Nodes are expected to notice the new dependent
// roots and fetch their duties again. Sync committees are not affected (they are fixed a period
// ahead), and neither are the blocks the simulator already served: attestation data, block roots
// and finality stay as they were. Expected attester counts of the current epoch are recomputed
// from the new shuffling, including its slots that already ended.
func (s *Sim) Reorg() ReorgResult {
	c := s.clock()
	epoch := s.epoch(c.slot)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reorgs = append(s.reorgs, epoch)
	for e := range s.assignments {
		if e >= epoch {
			delete(s.assignments, e)
		}
	}
	for e := range s.dutyCounts {
		if e >= epoch {
			delete(s.dutyCounts, e)
		}
	}
	s.log.Info("reorg", "epoch", uint64(epoch), "reorgs", len(s.reorgs))
	return ReorgResult{
		Epoch:                     epoch,
		AttesterDependentRoot:     s.attesterDependentRootLocked(epoch),
		NextAttesterDependentRoot: s.attesterDependentRootLocked(epoch + 1),
		ProposerDependentRoot:     s.proposerDependentRootLocked(epoch),
	}
}

// assignment is the attester duties of the configured validators in one epoch.
type assignment struct {
	duties  []duty   // per configured validator
	perSlot []uint64 // per slot of the epoch: configured validators with a duty there
}

// maxCachedEpochs bounds the assignment cache; the oldest epoch is evicted first.
const maxCachedEpochs = 16

// assignmentLocked returns the (cached) attester duties of the configured validators in epoch.
// s.mu must be held.
func (s *Sim) assignmentLocked(epoch phase0.Epoch) *assignment {
	if a, ok := s.assignments[epoch]; ok {
		return a
	}
	sh := s.shuffleLocked(epoch)
	a := &assignment{duties: make([]duty, len(s.cfg.Validators)), perSlot: make([]uint64, s.cfg.SlotsPerEpoch)}
	for i := range s.cfg.Validators {
		d := sh.dutyOf(phase0.ValidatorIndex(i))
		a.duties[i] = d
		a.perSlot[d.slot-sh.start]++
	}
	if len(s.assignments) >= maxCachedEpochs {
		first, oldest := true, phase0.Epoch(0)
		for e := range s.assignments {
			if first || e < oldest {
				first, oldest = false, e
			}
		}
		delete(s.assignments, oldest)
	}
	s.assignments[epoch] = a
	if _, ok := s.dutyCounts[epoch]; !ok {
		s.dutyCounts[epoch] = a.perSlot
	}
	return a
}

// expectedLocked returns the number of attester duties of configured validators at slot. s.mu
// must be held.
func (s *Sim) expectedLocked(slot phase0.Slot) uint64 {
	e := s.epoch(slot)
	counts, ok := s.dutyCounts[e]
	if !ok {
		counts = s.assignmentLocked(e).perSlot
	}
	return counts[uint64(slot)%s.cfg.SlotsPerEpoch]
}
