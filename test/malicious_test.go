package test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	"github.com/attestantio/go-eth2-client/api"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/slashingdb"
	"github.com/dvmesh/dvmesh/test/simbeacon"
)

// A lie is what every node's beacon client answers, for one duty type at one slot, instead of
// the beacon node's honest answer. Every node lies identically, so whichever node leads has its
// lie decided; each must be caught by the followers' own checks.
type lie struct {
	name string
	// detail is the part of the tracker's failure detail that names the check that caught it.
	detail string
}

var (
	lieFeeRecipient  = lie{"block with another fee recipient", "fee recipient"}
	lieRandao        = lie{"block whose RANDAO reveal is not the combined one", "RANDAO reveal is not the cluster's combined reveal"}
	lieProposerIndex = lie{"block for another proposer index", "proposer index"}
	lieAggregateData = lie{"aggregate of other attestation data", "is not of the agreed attestation data"}
	lieCommitteeBit  = lie{"aggregate with another committee's bit", "not one of this duty's committees"}
	lieUnknownHead   = lie{"head root the beacon node does not know", "is unknown to this node's beacon node"}
	lieContribRoot   = lie{"contribution over another block root", "over block"}
)

// maliciousSchedule is the lie per duty type and slot. The simulated chain of a 4-validator
// cluster has, at every slot, exactly one attester (who also aggregates: committees of one),
// one proposer (from slot 1), all four validators in the sync committee, and on average two
// sync contribution aggregators (their selection proofs decide, hence four lying slots).
// Contributions are not lied about while the sync head is: they need an honest agreed head.
// Every lie is told at two slots or more: a lie is tested where a node fetched it (on a loaded
// machine a fetch may fail), and each must be tested somewhere.
var maliciousSchedule = map[string]map[phase0.Slot]lie{
	"proposer":          {2: lieFeeRecipient, 3: lieRandao, 4: lieProposerIndex, 5: lieFeeRecipient, 6: lieRandao, 7: lieProposerIndex},
	"aggregator":        {2: lieAggregateData, 3: lieCommitteeBit, 4: lieAggregateData, 5: lieCommitteeBit},
	"sync_message":      {4: lieUnknownHead, 7: lieUnknownHead},
	"sync_contribution": {5: lieContribRoot, 6: lieContribRoot, 8: lieContribRoot, 9: lieContribRoot},
}

// maliciousSlots is how many slots the run lasts: the lies end at slot 9, slots 10-12 are
// honest.
const (
	maliciousSlots      = 13
	maliciousHonestFrom = 10
)

// timingErrorf reports a failure of a check that depends on the duties keeping to their slots
// (honest duties performed in time): an error, but under the race detector, which makes them
// miss their slots, only a log line. Checks of what must never happen are errors always.
func timingErrorf(t *testing.T, format string, a ...any) {
	t.Helper()
	if maliciousRaceBuild {
		t.Logf("not asserted under -race: "+format, a...)
		return
	}
	t.Errorf(format, a...)
}

func lieAt(typ string, slot phase0.Slot) (lie, bool) {
	l, ok := maliciousSchedule[typ][slot]
	return l, ok
}

// submissionLog records, across the cluster, the lies told and every submission made, per duty
// type and slot.
type submissionLog struct {
	mu        sync.Mutex
	told      map[string]map[phase0.Slot]int
	submitted map[string]map[phase0.Slot]int
	errs      []string
}

func newSubmissionLog() *submissionLog {
	return &submissionLog{told: map[string]map[phase0.Slot]int{}, submitted: map[string]map[phase0.Slot]int{}}
}

func (l *submissionLog) add(m map[string]map[phase0.Slot]int, typ string, slot phase0.Slot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m[typ] == nil {
		m[typ] = map[phase0.Slot]int{}
	}
	m[typ][slot]++
}

func (l *submissionLog) fail(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, a...))
}

func (l *submissionLog) count(m map[string]map[phase0.Slot]int, typ string, slot phase0.Slot) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return m[typ][slot]
}

// maliciousBeacon lies as maliciousSchedule says and records every submission. Block roots asked
// for by root or slot stay honest: that is the followers' own view of the chain (the known-parent
// and known-head checks); only "head", what a leader fetches to propose, lies.
type maliciousBeacon struct {
	node.Beacon
	sim *simbeacon.Sim
	log *submissionLog
}

// currentSlot is the chain's slot now, from the simulator's genesis.
func (b *maliciousBeacon) currentSlot() (phase0.Slot, bool) {
	g, ok := b.sim.Genesis()
	if !ok || time.Now().Before(g) {
		return 0, false
	}
	return phase0.Slot(time.Since(g) / testSlot), true
}

// knownOtherRoot is the root of the block two slots before slot: a block the beacon node knows,
// but not the one the slot's duties are about (the block before it may be: an epoch's first
// block comes late, and the duties of its slot may then vote for the previous one).
func (b *maliciousBeacon) knownOtherRoot(ctx context.Context, slot phase0.Slot) (phase0.Root, error) {
	return b.Beacon.BeaconBlockRoot(ctx, strconv.FormatUint(uint64(slot)-2, 10))
}

func (b *maliciousBeacon) Proposal(ctx context.Context, slot phase0.Slot, randao phase0.BLSSignature, graffiti [32]byte, boost *uint64) (*api.VersionedProposal, error) {
	p, err := b.Beacon.Proposal(ctx, slot, randao, graffiti, boost)
	l, ok := lieAt("proposer", slot)
	if err != nil || !ok {
		return p, err
	}
	var (
		proposer *phase0.ValidatorIndex
		reveal   *phase0.BLSSignature
		fee      *bellatrix.ExecutionAddress
	)
	switch {
	case p.Version == spec.DataVersionFulu && !p.Blinded && p.Fulu != nil:
		blk := p.Fulu.Block
		proposer, reveal, fee = &blk.ProposerIndex, &blk.Body.RANDAOReveal, &blk.Body.ExecutionPayload.FeeRecipient
	case p.Version == spec.DataVersionFulu && p.Blinded && p.FuluBlinded != nil:
		blk := p.FuluBlinded
		proposer, reveal, fee = &blk.ProposerIndex, &blk.Body.RANDAOReveal, &blk.Body.ExecutionPayloadHeader.FeeRecipient
	default:
		b.log.fail("proposal of slot %d: version %s (blinded %v) not handled by the lying beacon", slot, p.Version, p.Blinded)
		return p, nil
	}
	switch l {
	case lieFeeRecipient:
		*fee = bellatrix.ExecutionAddress{0xba, 0xd0}
	case lieRandao:
		*reveal = phase0.BLSSignature{0xc0} // the point at infinity: a well-formed reveal, not the cluster's
	case lieProposerIndex:
		*proposer = (*proposer + 1) % 4
	}
	b.log.add(b.log.told, "proposer", slot)
	return p, nil
}

func (b *maliciousBeacon) AggregateAttestation(ctx context.Context, slot phase0.Slot, dataRoot phase0.Root, committee phase0.CommitteeIndex) (*spec.VersionedAttestation, error) {
	va, err := b.Beacon.AggregateAttestation(ctx, slot, dataRoot, committee)
	l, ok := lieAt("aggregator", slot)
	if err != nil || !ok {
		return va, err
	}
	var att *electra.Attestation
	switch {
	case va.Version == spec.DataVersionFulu && va.Fulu != nil:
		att = va.Fulu
	case va.Version == spec.DataVersionElectra && va.Electra != nil:
		att = va.Electra
	default:
		b.log.fail("aggregate of slot %d: version %s not handled by the lying beacon", slot, va.Version)
		return va, nil
	}
	switch l {
	case lieAggregateData:
		other, err := b.knownOtherRoot(ctx, slot)
		if err != nil {
			return nil, err
		}
		d := *att.Data
		d.BeaconBlockRoot = other
		att.Data = &d
	case lieCommitteeBit:
		bits := bitfield.NewBitvector64()
		bits.SetBitAt(uint64(committee)+1, true)
		att.CommitteeBits = bits
	}
	b.log.add(b.log.told, "aggregator", slot)
	return va, nil
}

func (b *maliciousBeacon) BeaconBlockRoot(ctx context.Context, blockID string) (phase0.Root, error) {
	root, err := b.Beacon.BeaconBlockRoot(ctx, blockID)
	if err != nil || blockID != "head" {
		return root, err
	}
	slot, ok := b.currentSlot()
	if !ok {
		return root, nil
	}
	if _, ok := lieAt("sync_message", slot); !ok {
		return root, nil
	}
	b.log.add(b.log.told, "sync_message", slot)
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(slot))
	return sha256.Sum256(append([]byte("no such block"), buf[:]...)), nil
}

func (b *maliciousBeacon) SyncCommitteeContribution(ctx context.Context, slot phase0.Slot, sub uint64, root phase0.Root) (*altair.SyncCommitteeContribution, error) {
	c, err := b.Beacon.SyncCommitteeContribution(ctx, slot, sub, root)
	if _, ok := lieAt("sync_contribution", slot); err != nil || !ok || c == nil {
		return c, err
	}
	other, err := b.knownOtherRoot(ctx, slot)
	if err != nil {
		return nil, err
	}
	c.BeaconBlockRoot = other
	b.log.add(b.log.told, "sync_contribution", slot)
	return c, nil
}

func (b *maliciousBeacon) SubmitProposal(ctx context.Context, p *api.VersionedSignedProposal) error {
	if slot, err := p.Slot(); err == nil {
		b.log.add(b.log.submitted, "proposer", slot)
	}
	return b.Beacon.SubmitProposal(ctx, p)
}

func (b *maliciousBeacon) SubmitBlindedProposal(ctx context.Context, p *api.VersionedSignedBlindedProposal) error {
	if slot, err := p.Slot(); err == nil {
		b.log.add(b.log.submitted, "proposer", slot)
	}
	return b.Beacon.SubmitBlindedProposal(ctx, p)
}

func (b *maliciousBeacon) SubmitAggregateAttestations(ctx context.Context, aggs []*spec.VersionedSignedAggregateAndProof) error {
	for _, a := range aggs {
		if slot, err := a.Slot(); err == nil {
			b.log.add(b.log.submitted, "aggregator", slot)
		}
	}
	return b.Beacon.SubmitAggregateAttestations(ctx, aggs)
}

func (b *maliciousBeacon) SubmitSyncCommitteeMessages(ctx context.Context, msgs []*altair.SyncCommitteeMessage) error {
	for _, m := range msgs {
		b.log.add(b.log.submitted, "sync_message", m.Slot)
	}
	return b.Beacon.SubmitSyncCommitteeMessages(ctx, msgs)
}

func (b *maliciousBeacon) SubmitSyncCommitteeContributions(ctx context.Context, cs []*altair.SignedContributionAndProof) error {
	for _, c := range cs {
		if c.Message != nil && c.Message.Contribution != nil {
			b.log.add(b.log.submitted, "sync_contribution", c.Message.Contribution.Slot)
		}
	}
	return b.Beacon.SubmitSyncCommitteeContributions(ctx, cs)
}

// TestCluster_MaliciousLeaderPerDutyType makes whichever node leads propose a bad value for each
// duty type beyond attestations (maliciousSchedule): blocks with another fee recipient, another
// RANDAO reveal, another proposer index; aggregates of other data or of another committee; an
// unknown sync head; contributions over another block. Every node must refuse each decided lie at
// validation, before its slashing DB or its key share sees it: no block record at the lying
// slots, nothing submitted for a lie and nothing invalid at the simulated beacon node, the lying
// duties missed, and the tracker naming invalid_decided at step validate with the check that
// caught it. Every other duty, and every duty after the lies, succeeds.
func TestCluster_MaliciousLeaderPerDutyType(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~35 s")
	}
	c := newClusterNet(t, 4, false, 0) // every duty type; full blocks (the lying beacon handles blinded ones too)
	book := newSubmissionLog()
	c.start(func(b node.Beacon) node.Beacon { return &maliciousBeacon{Beacon: b, sim: c.sim, log: book} })
	genesis := c.waitReadyAndStart()
	waitSlotsEnded(genesis, maliciousSlots)
	time.Sleep(time.Second) // records are shared with the peers after each duty's deadline
	st := c.sim.Stats()
	recs := duties(t, c.monitoring[0])
	c.stop()

	for _, e := range book.errs {
		t.Error(e)
	}
	// 1. The simulated beacon node, which verifies every signature, saw nothing invalid, and
	// exactly the lying duties missed.
	if st.Totals.Wrong != 0 {
		t.Errorf("%d wrong attestations: %+v", st.Totals.Wrong, st.RecentFailures)
	}
	for _, typ := range simbeacon.DutyTypes {
		if d := st.Duties[typ]; d.Invalid != 0 {
			t.Errorf("%s: %d invalid submissions: %+v", typ, d.Invalid, st.RecentFailures)
		}
	}
	// One aggregator per slot (committees of one) and four sync committee members; sync
	// contributions are expected by the simulator only once submitted, so none are missed there:
	// the log and the records below show them.
	wantMissed := map[string]uint64{"attester": 0, "randao": 0,
		"proposer": uint64(len(maliciousSchedule["proposer"])), "aggregator": uint64(len(maliciousSchedule["aggregator"])),
		"sync_message": 4 * uint64(len(maliciousSchedule["sync_message"])), "sync_contribution": 0}
	for typ, want := range wantMissed {
		d := st.Duties[typ]
		t.Logf("%s: %+v", typ, d)
		switch {
		case d.Missed < want:
			t.Errorf("%s: %d duties missed, but the %d lying ones cannot have been performed: %+v", typ, d.Missed, want, d)
		case d.Missed != want:
			timingErrorf(t, "%s: %d duties missed, want %d (the lying slots'): %+v", typ, d.Missed, want, d)
		}
	}
	for slot := phase0.Slot(1); slot < maliciousSlots; slot++ {
		_, proposed := c.sim.ProposedBlock(slot)
		_, lying := lieAt("proposer", slot)
		switch {
		case lying && proposed:
			t.Errorf("slot %d: the beacon node got a valid block, though the decided block lied", slot)
		case !lying && !proposed:
			timingErrorf(t, "slot %d: no valid block at an honest slot", slot)
		}
	}
	for e := uint64(0); e < maliciousSlots/testSlotsPerEpoch; e++ {
		if got := epochCounts(st, e); got.Expected != 4 || got.Correct != 4 {
			timingErrorf(t, "epoch %d: %d of %d attestations correct", e, got.Correct, got.Expected)
		}
	}

	// 2. Nothing was submitted for a lie; something was for every honest duty after the lies.
	for typ, bySlot := range maliciousSchedule {
		for slot := range bySlot {
			if n := book.count(book.submitted, typ, slot); n != 0 {
				t.Errorf("%s at slot %d: %d submissions of a lie", typ, slot, n)
			}
		}
		for slot := phase0.Slot(maliciousHonestFrom); slot < maliciousSlots; slot++ {
			if typ != "sync_contribution" && book.count(book.submitted, typ, slot) == 0 {
				timingErrorf(t, "%s at slot %d, after the lies: nothing submitted", typ, slot)
			}
		}
	}

	// 3. The cluster-wide duty records (node 1's view): every node refused every lie at
	// validation, with the check that caught it named; every other duty succeeded.
	checkMaliciousRecords(t, recs, book)

	// 4. No node's slashing DB saw a lying block; every block the beacon node accepted was
	// recorded by at least the threshold of nodes (each records before it signs its share).
	recorded := map[phase0.Slot]int{}
	for i := 1; i <= 4; i++ {
		for slot := range exportBlockSlots(t, filepath.Join(c.dataDir(i), "slashing.db"), c.sim.GenesisValidatorsRoot()) {
			if l, lying := lieAt("proposer", phase0.Slot(slot)); lying {
				t.Errorf("node %d recorded a block at slot %d, whose decided block was a lie (%s)", i, slot, l.name)
			}
			recorded[phase0.Slot(slot)]++
		}
	}
	for slot := phase0.Slot(1); slot < maliciousSlots; slot++ {
		if _, proposed := c.sim.ProposedBlock(slot); proposed && recorded[slot] < 3 {
			t.Errorf("slot %d: the proposed block is recorded in %d slashing DBs, want at least 3 (each records before it signs)", slot, recorded[slot])
		}
	}
}

// checkMaliciousRecords checks the records of the slots up to maliciousSlots-1 against
// maliciousSchedule.
func checkMaliciousRecords(t *testing.T, recs []node.DutyRecord, book *submissionLog) {
	t.Helper()
	type dk struct {
		typ  string
		slot phase0.Slot
	}
	byDuty := map[dk][]node.DutyRecord{}
	nodes := map[uint64]bool{}
	for _, r := range recs {
		nodes[r.Node] = true
		if r.Slot < maliciousSlots {
			k := dk{r.Type, phase0.Slot(r.Slot)}
			byDuty[k] = append(byDuty[k], r)
		}
	}
	if len(nodes) != 4 {
		t.Errorf("cluster-wide view has records of %d nodes, want 4", len(nodes))
	}
	// A lie told (fetched by some node) is decided and must be refused by every node; one that no
	// node fetched (a slot without contribution aggregators, or a fetch that failed) decides
	// nothing, and must not succeed either. Each lie must be tested at one slot at least.
	caught := map[lie]bool{}  // refused at validation by every node that has the duty, at some slot
	refused := map[lie]bool{} // refused at validation by some node, at some slot
	for typ, bySlot := range maliciousSchedule {
		for slot, l := range bySlot {
			got := byDuty[dk{typ, slot}]
			if book.count(book.told, typ, slot) == 0 {
				for _, r := range got {
					if r.Result == "success" || r.Submitted != 0 {
						t.Errorf("%s at slot %d, node %d: %s, %d submitted, with no value fetched", typ, slot, r.Node, r.Result, r.Submitted)
					}
				}
				if typ != "sync_contribution" || len(got) != 0 {
					t.Logf("%s at slot %d: the lie (%s) was not told (no node fetched a value)", typ, slot, l.name)
				}
				continue
			}
			// Every node has the proposer and sync committee duties; an aggregation duty only a
			// node whose selection proofs combined in time (on a loaded machine, not always all).
			ok := len(got) == 4
			if !ok && len(got) > 0 && (typ == "aggregator" || typ == "sync_contribution") {
				ok = true
				t.Logf("%s at slot %d: records of %d nodes (the others' selection proofs did not combine in time)", typ, slot, len(got))
			}
			if !ok {
				timingErrorf(t, "%s at slot %d (%s): records of %d nodes, want 4", typ, slot, l.name, len(got))
			}
			for _, r := range got {
				refusedIt := r.Result == "failed" && r.Reason == node.ReasonInvalidDecided && r.FailedStep == node.StepValidate && strings.Contains(r.Detail, l.detail)
				// A node that never got the decided value (its deadline passed first) did not
				// refuse it, but did not act on it either: only a timing failure.
				undecided := r.Result == "failed" && r.Submitted == 0 && (r.FailedStep == node.StepFetch || r.FailedStep == node.StepConsensus)
				switch {
				case refusedIt:
					refused[l] = true
				case undecided:
					ok = false
					timingErrorf(t, "%s at slot %d (%s), node %d: %s at %s (%s) before validation, want failed/invalid_decided at validate",
						typ, slot, l.name, r.Node, r.Reason, r.FailedStep, r.Detail)
				default:
					ok = false
					t.Errorf("%s at slot %d (%s), node %d: %s/%s at %s (%s), want failed/invalid_decided at validate naming %q",
						typ, slot, l.name, r.Node, r.Result, r.Reason, r.FailedStep, r.Detail, l.detail)
				}
			}
			caught[l] = caught[l] || ok
		}
	}
	for _, l := range []lie{lieFeeRecipient, lieRandao, lieProposerIndex, lieAggregateData, lieCommitteeBit, lieUnknownHead, lieContribRoot} {
		switch {
		case !refused[l]:
			t.Errorf("lie %q: never told and refused at validation", l.name)
		case !caught[l]:
			timingErrorf(t, "lie %q: never told and refused by every node at validation", l.name)
		}
	}
	// Every other duty was performed by the cluster (one node's submission is enough: a node may
	// miss a deadline on a loaded machine) and refused by none, but the contributions over the
	// lying sync head (unknown to the beacon node: there is nothing to fetch). Slot 0, whose
	// duties start while the nodes are still starting, is only checked for refusals.
	for k, rs := range byDuty {
		if _, lying := lieAt(k.typ, k.slot); lying {
			continue
		}
		if k.slot == 0 {
			for _, r := range rs {
				if r.Reason == node.ReasonInvalidDecided {
					t.Errorf("%s at slot 0, node %d: honest value refused: %s", k.typ, r.Node, r.Detail)
				}
			}
			continue
		}
		if _, headLied := lieAt("sync_message", k.slot); headLied && k.typ == "sync_contribution" {
			for _, r := range rs {
				if r.Result == "success" || r.Submitted != 0 {
					t.Errorf("sync_contribution at slot %d over the lying head, node %d: %s, %d submitted", k.slot, r.Node, r.Result, r.Submitted)
				}
			}
			continue
		}
		succeeded := false
		for _, r := range rs {
			succeeded = succeeded || r.Result == "success"
			if r.Reason == node.ReasonInvalidDecided {
				t.Errorf("%s at slot %d, node %d: honest value refused: %s", k.typ, k.slot, r.Node, r.Detail)
			}
		}
		if !succeeded {
			for _, r := range rs {
				timingErrorf(t, "%s at slot %d, node %d: %s/%s at %s (%s), want a success on some node", k.typ, k.slot, r.Node, r.Result, r.Reason, r.FailedStep, r.Detail)
			}
		}
	}
	for _, typ := range []string{"attester", "proposer", "sync_message"} {
		for slot := phase0.Slot(maliciousHonestFrom); slot < maliciousSlots; slot++ {
			if len(byDuty[dk{typ, slot}]) != 4 {
				timingErrorf(t, "%s at slot %d, after the lies: records of %d nodes, want 4", typ, slot, len(byDuty[dk{typ, slot}]))
			}
		}
	}
}

// exportBlockSlots returns the slots of the blocks recorded in a slashing DB's interchange
// export, over every validator.
func exportBlockSlots(t *testing.T, path string, gvr phase0.Root) map[uint64]bool {
	t.Helper()
	db, err := slashingdb.Open(path, gvr)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(db.ExportInterchange(pw)) }()
	var doc struct {
		Data []struct {
			SignedBlocks []struct {
				Slot string `json:"slot"`
			} `json:"signed_blocks"`
		} `json:"data"`
	}
	if err := json.NewDecoder(pr).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]bool{}
	for _, d := range doc.Data {
		for _, b := range d.SignedBlocks {
			s, err := strconv.ParseUint(b.Slot, 10, 64)
			if err != nil {
				t.Fatalf("block slot %q: %v", b.Slot, err)
			}
			out[s] = true
		}
	}
	return out
}
