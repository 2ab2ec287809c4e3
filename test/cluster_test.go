// Package test runs whole dvmesh clusters: four nodes in one process, each with its own
// libp2p host on 127.0.0.1, Raft group member, slashing DB and key shares, against the simulated
// beacon node, which verifies every submitted signature.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/slashingdb"
	"github.com/dvmesh/dvmesh/test/simbeacon"
)

const (
	testSlot          = 2 * time.Second
	testSlotsPerEpoch = 4
	testFeeRecipient  = "0x00000000000000000000000000000000000fee01"
)

// cluster is a test cluster of in-process nodes.
type cluster struct {
	t          *testing.T
	dir        string
	lock       *lock.Lock
	sim        *simbeacon.Sim
	url        string
	monitoring []string
	admin      []string
	wrap       func(node.Beacon) node.Beacon
	// doppelgangerEpochs is passed to every node (0: the default).
	doppelgangerEpochs int

	mu      sync.Mutex
	cancels map[int]context.CancelFunc
	done    map[int]chan struct{}
	errs    []error
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	// Ports below the kernel's ephemeral range (32768 and up): a port taken with :0 and closed
	// can be handed to an outgoing connection before the node binds it, these cannot.
	var out []string
	var lns []net.Listener
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free ports below 32768")
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(22000)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// newCluster creates a 3-of-4 cluster with the given number of validators and a simulated
// beacon node (genesis not yet set).
//
// The simulated network has focusNetworkSize validators, so that the cluster's few validators
// attest every epoch but rarely propose, aggregate or sit in the sync committee: the tests that
// use it are about the attestation path and its faults, and stay light under -race on two cores.
// TestCluster_EveryDutyLands uses a network of the cluster's validators only (every duty type).
func newCluster(t *testing.T, validators int) *cluster {
	return newClusterNet(t, validators, false, focusNetworkSize)
}

// focusNetworkSize: with 200,000 validators a committee has about 780 members (aggregator odds
// 1/48), the sync committee 512 seats and a slot one proposer.
const focusNetworkSize = 200_000

// newClusterNet is newCluster with the lock's builder setting and the simulated beacon node's
// blinded (builder) blocks both set to builder, on a network of networkSize validators (0: the
// cluster's only).
func newClusterNet(t *testing.T, validators int, builder bool, networkSize uint64) *cluster {
	t.Helper()
	dir := t.TempDir()
	var p2pAddrs []string
	for _, a := range freeAddrs(t, 4) {
		host, port, _ := net.SplitHostPort(a)
		p2pAddrs = append(p2pAddrs, fmt.Sprintf("/ip4/%s/tcp/%s", host, port))
	}
	l, err := node.CreateCluster(node.CreateOptions{
		Name: "test", Nodes: 4, Threshold: 3, Validators: validators, OutDir: filepath.Join(dir, "cluster"),
		P2PAddrs: p2pAddrs, Network: "devnet", GenesisForkVersion: "0x10000000", KDF: signing.KDFInsecure,
		Proposals: &lock.ProposalSettings{FeeRecipient: testFeeRecipient, GasLimit: 60_000_000, RegistrationTimestamp: 1700000000,
			Builder: builder, BuilderBoostFactor: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	vals := l.GroupPubkeys()
	sim, err := simbeacon.New(simbeacon.Config{SlotDuration: testSlot, SlotsPerEpoch: testSlotsPerEpoch, Validators: vals,
		GenesisForkVersion: phase0.Version{0x10}, BuilderBlocks: builder, NetworkSize: networkSize})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return &cluster{t: t, dir: dir, lock: l, sim: sim, url: srv.URL, monitoring: freeAddrs(t, 4), admin: freeAddrs(t, 4)}
}

func (c *cluster) nodeDir(i int) string {
	return filepath.Join(c.dir, "cluster", node.NodeDirName(i))
}

func (c *cluster) dataDir(i int) string { return filepath.Join(c.dir, "data", node.NodeDirName(i)) }

// start runs every node; wrap, if set, wraps each node's beacon client.
func (c *cluster) start(wrap func(node.Beacon) node.Beacon) {
	c.t.Helper()
	c.wrap = wrap
	for i := 1; i <= 4; i++ {
		c.startNode(i)
	}
	c.t.Cleanup(c.stop)
}

// startNode runs node i (1-based) until stopNode or stop.
func (c *cluster) startNode(i int) {
	c.t.Helper()
	if c.cancels == nil {
		c.cancels = map[int]context.CancelFunc{}
		c.done = map[int]chan struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	logOut := io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	cfg := node.Config{
		NodeDir: c.nodeDir(i), DataDir: c.dataDir(i), BeaconURLs: []string{c.url}, MonitoringAddr: c.monitoring[i-1],
		AdminAddr:          c.admin[i-1],
		DoppelgangerEpochs: c.doppelgangerEpochs,
		Logger:             slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", i),
	}
	if c.wrap != nil {
		b, err := node.DialBeacon(ctx, c.url, 5*time.Second)
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.Beacon = c.wrap(b)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.cancels[i], c.done[i] = cancel, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		if err := node.Run(ctx, cfg); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("node %d: %w", i, err))
			c.mu.Unlock()
		}
	}()
}

// stopNode stops node i and waits for it.
func (c *cluster) stopNode(i int) {
	c.mu.Lock()
	cancel, done := c.cancels[i], c.done[i]
	delete(c.cancels, i)
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (c *cluster) stop() {
	for i := 1; i <= 4; i++ {
		c.stopNode(i)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, err := range c.errs {
		c.t.Errorf("node failed: %v", err)
	}
	c.errs = nil
}

// waitReadyAndStart waits until every node reports ready, then sets genesis shortly after.
func (c *cluster) waitReadyAndStart() time.Time {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, m := range c.monitoring {
		for {
			resp, err := http.Get("http://" + m + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node at %s not ready: %v", m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	genesis := time.Unix(time.Now().Add(time.Second).Unix()+1, 0)
	c.sim.SetGenesis(genesis)
	return genesis
}

// waitSlotsEnded blocks until slot `slots-1` has ended.
func waitSlotsEnded(genesis time.Time, slots int) {
	time.Sleep(time.Until(genesis.Add(time.Duration(slots)*testSlot + testSlot/4)))
}

// epochCounts sums the simulator's verdicts over the slots of epoch.
func epochCounts(st simbeacon.Stats, epoch uint64) simbeacon.Counts {
	var c simbeacon.Counts
	for _, s := range st.Slots {
		if uint64(s.Slot)/testSlotsPerEpoch == epoch && s.Ended {
			c.Expected += s.Expected
			c.Correct += s.Correct
			c.Wrong += s.Wrong
			c.Missing += s.Missing
		}
	}
	return c
}

// TestCluster_EveryDutyLands runs a 3-of-4 cluster for three epochs: every duty (attestations,
// proposals, aggregations, sync committee messages and contributions, proposer preparations)
// must reach the simulated beacon node with a valid signature, and nothing wrong may arrive.
func TestCluster_EveryDutyLands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~25 s")
	}
	c := newClusterNet(t, 4, true, 0) // blinded blocks: the process-level run-local test covers full ones
	productions := &perSlot{n: map[phase0.Slot]int{}}
	c.start(func(b node.Beacon) node.Beacon {
		return &loadedBeacon{Beacon: b, productions: productions, dutyDelay: slowDuties}
	})
	genesis := c.waitReadyAndStart()
	const epochs = 3
	waitSlotsEnded(genesis, epochs*testSlotsPerEpoch)
	st := c.sim.Stats()
	var recs []node.DutyRecord
	for _, m := range c.monitoring {
		recs = append(recs, duties(t, m)...)
	}
	c.stop()
	// Only the Raft leader builds a block: four nodes asking one beacon node each would have it
	// build four, one after another (Prysm did, on the devnet). A leader change may add one.
	if twice := productions.over(1); len(twice) > 1 || st.Duties["proposer"].Valid == 0 {
		t.Errorf("block productions per slot %v (%d valid proposals): followers asked for blocks too", productions.snapshot(), st.Duties["proposer"].Valid)
	}
	// A proposal starts with its RANDAO reveal signed already (half a slot before): a threshold
	// round there takes milliseconds (a signature, a peer round trip, a pairing check).
	early, proposals := 0, 0
	for _, r := range recs {
		if r.Type == "proposer" && r.Result == "success" && r.Slot > 0 {
			proposals++
			start, _ := r.StepAt(node.StepStart)
			if reveal, ok := r.StepAt("randao"); ok && reveal-start <= 1 {
				early++
			}
		}
	}
	if proposals == 0 || early < proposals*3/4 {
		t.Errorf("%d of %d proposals had their RANDAO reveal at their start, want nearly all", early, proposals)
	}
	// The next epoch's duties are fetched after the slot's duties have started: in an epoch's
	// first slot, their slow beacon calls used to hold every duty of the slot back. A proposal
	// starts at once (the other duties wait for the head block or their time in the slot).
	for _, r := range recs {
		if r.Slot%testSlotsPerEpoch != 0 || r.Slot == 0 || r.Type != "proposer" {
			continue
		}
		if at, ok := r.StepAt(node.StepStart); !ok || time.Duration(at)*time.Millisecond >= slowDuties {
			t.Errorf("node %d's proposal of slot %d (an epoch's first) started %d ms into the slot, after the next epoch's duty calls", r.Node, r.Slot, at)
		}
	}
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions: %+v", st.Totals.Wrong, st.RecentFailures)
	}
	for e := uint64(0); e < epochs; e++ {
		got := epochCounts(st, e)
		if got.Expected != 4 || got.Correct != 4 {
			t.Errorf("epoch %d: %d of %d duties correct, %d missing", e, got.Correct, got.Expected, got.Missing)
		}
	}
	// Every other duty type: the simulated beacon node verified each submission against its
	// own domain and root; nothing invalid, nothing missed, and at least one of each.
	for _, typ := range []string{"proposer", "aggregator", "sync_message", "sync_contribution", "prepare_proposer"} {
		got := st.Duties[typ]
		t.Logf("%s: %+v", typ, got)
		if got.Invalid != 0 || got.Missed != 0 || got.Valid == 0 {
			t.Errorf("%s: %+v, want valid > 0 and no invalid or missed duty", typ, got)
		}
	}
	if r := st.Duties["registration"]; r.Invalid != 0 || r.Valid == 0 {
		t.Errorf("registration: %+v", r)
	}
}

// slowDuties is how long loadedBeacon takes to answer a duty request for a later epoch (three
// of them stay within ensureDuties' half-slot timeout).
const slowDuties = testSlot / 8

// perSlot counts calls per slot; safe for concurrent use.
type perSlot struct {
	mu sync.Mutex
	n  map[phase0.Slot]int
}

func (p *perSlot) add(slot phase0.Slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n[slot]++
}

func (p *perSlot) snapshot() map[phase0.Slot]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.n)
}

// over lists the slots with more than limit calls.
func (p *perSlot) over(limit int) []phase0.Slot {
	var out []phase0.Slot
	for slot, n := range p.snapshot() {
		if n > limit {
			out = append(out, slot)
		}
	}
	return out
}

// loadedBeacon is a busy beacon node: it counts block productions per slot, and duty requests
// for a later epoch than the current one take dutyDelay each.
type loadedBeacon struct {
	node.Beacon
	productions *perSlot
	dutyDelay   time.Duration
}

func (b *loadedBeacon) Proposal(ctx context.Context, slot phase0.Slot, randao phase0.BLSSignature, graffiti [32]byte, boost *uint64) (*api.VersionedProposal, error) {
	b.productions.add(slot)
	return b.Beacon.Proposal(ctx, slot, randao, graffiti, boost)
}

// slow waits dutyDelay when epoch is after the head's.
func (b *loadedBeacon) slow(ctx context.Context, epoch phase0.Epoch) {
	if head, err := b.HeadSlot(ctx); err == nil && uint64(epoch) > uint64(head)/testSlotsPerEpoch {
		select {
		case <-ctx.Done():
		case <-time.After(b.dutyDelay):
		}
	}
}

func (b *loadedBeacon) AttesterDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.AttesterDuty, error) {
	b.slow(ctx, epoch)
	return b.Beacon.AttesterDuties(ctx, epoch, indices)
}

func (b *loadedBeacon) ProposerDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.ProposerDuty, error) {
	b.slow(ctx, epoch)
	return b.Beacon.ProposerDuties(ctx, epoch, indices)
}

func (b *loadedBeacon) SyncCommitteeDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.SyncCommitteeDuty, error) {
	b.slow(ctx, epoch)
	return b.Beacon.SyncCommitteeDuties(ctx, epoch, indices)
}

// lyingBeacon returns attestation data with a far-future target in epoch 1 and a source beyond
// the justified checkpoint in epoch 2: whichever node leads proposes it, and every node must
// refuse it before its slashing DB sees it.
type lyingBeacon struct {
	node.Beacon
}

func (b lyingBeacon) AttestationData(ctx context.Context, slot phase0.Slot) (*phase0.AttestationData, error) {
	d, err := b.Beacon.AttestationData(ctx, slot)
	if err != nil {
		return nil, err
	}
	switch uint64(slot) / testSlotsPerEpoch {
	case 1:
		d.Target = &phase0.Checkpoint{Epoch: 1_000_000, Root: d.Target.Root}
	case 2:
		d.Source = &phase0.Checkpoint{Epoch: d.Target.Epoch, Root: d.Source.Root}
	}
	return d, nil
}

// TestCluster_InvalidDecidedValueNeverRecorded makes every leader propose bad attestation data in
// epochs 1 and 2: nothing of it is recorded or signed, and the honest duties of epoch 3 succeed.
func TestCluster_InvalidDecidedValueNeverRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~30 s")
	}
	c := newCluster(t, 4)
	c.start(func(b node.Beacon) node.Beacon { return lyingBeacon{b} })
	genesis := c.waitReadyAndStart()
	waitSlotsEnded(genesis, 4*testSlotsPerEpoch)
	time.Sleep(time.Second) // records are shared with the peers after each duty's deadline
	st := c.sim.Stats()
	checkTrackerReasons(t, c.monitoring[0])
	c.stop()
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions: %+v", st.Totals.Wrong, st.RecentFailures)
	}
	for e, wantCorrect := range []uint64{4, 0, 0, 4} {
		if got := epochCounts(st, uint64(e)); got.Correct != wantCorrect || got.Expected != 4 {
			t.Errorf("epoch %d: %d of %d correct, want %d", e, got.Correct, got.Expected, wantCorrect)
		}
	}
	// No node recorded the lies: every recorded target is an epoch the run reached, and every
	// source the justified one (the simulated chain justifies epoch e-1 during epoch e).
	for i := 1; i <= 4; i++ {
		for _, a := range exportAttestations(t, filepath.Join(c.dataDir(i), "slashing.db"), c.sim.GenesisValidatorsRoot()) {
			if a.target > 4 || a.source != max(a.target, 1)-1 {
				t.Errorf("node %d recorded attestation source %d target %d", i, a.source, a.target)
			}
			if a.target == 1 || a.target == 2 {
				t.Errorf("node %d recorded an attestation for epoch %d, whose decided data was invalid", i, a.target)
			}
		}
	}
}

type recorded struct{ source, target uint64 }

func exportAttestations(t *testing.T, path string, gvr phase0.Root) []recorded {
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
			SignedAttestations []struct {
				Source string `json:"source_epoch"`
				Target string `json:"target_epoch"`
			} `json:"signed_attestations"`
		} `json:"data"`
	}
	if err := json.NewDecoder(pr).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var out []recorded
	for _, d := range doc.Data {
		for _, a := range d.SignedAttestations {
			var r recorded
			fmt.Sscan(a.Source, &r.source)
			fmt.Sscan(a.Target, &r.target)
			out = append(out, r)
		}
	}
	return out
}

// status reads a node's /status.
func status(t *testing.T, addr string) (node.Status, error) {
	t.Helper()
	var st node.Status
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestCluster_DuplicateInstanceHalts starts a second copy of node 2 (same identity and key
// shares, its own data directory and listen address) in a running cluster: both copies must be
// told and stop signing, and the three other nodes keep every duty going.
func TestCluster_DuplicateInstanceHalts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~45 s")
	}
	c := newCluster(t, 4)
	c.start(nil)
	genesis := c.waitReadyAndStart()
	time.Sleep(time.Until(genesis.Add(2 * testSlot)))

	addrs := freeAddrs(t, 2)
	dupMonitoring := addrs[1]
	host, port, _ := net.SplitHostPort(addrs[0])
	ctx, cancel := context.WithCancel(context.Background())
	dupDone := make(chan error, 1)
	go func() {
		dupDone <- node.Run(ctx, node.Config{
			NodeDir: c.nodeDir(2), DataDir: filepath.Join(c.dir, "duplicate"), BeaconURLs: []string{c.url},
			P2PListen: fmt.Sprintf("/ip4/%s/tcp/%s", host, port), MonitoringAddr: dupMonitoring,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	defer func() {
		cancel()
		if err := <-dupDone; err != nil {
			t.Errorf("duplicate node: %v", err)
		}
	}()

	haltedBy := genesis.Add(3 * testSlotsPerEpoch * testSlot)
	for {
		orig, err1 := status(t, c.monitoring[1])
		dup, err2 := status(t, dupMonitoring)
		if err1 == nil && err2 == nil && orig.Halted != "" && dup.Halted != "" {
			t.Logf("both copies halted: %s", orig.Halted)
			break
		}
		if time.Now().After(haltedBy) {
			t.Fatalf("duplicate not detected by end of epoch 2: original halted=%q (%v), copy halted=%q (%v)", orig.Halted, err1, dup.Halted, err2)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitSlotsEnded(genesis, 5*testSlotsPerEpoch)
	if got := reasonsOf(duties(t, c.monitoring[1]), 2); !got[node.ReasonDuplicateInstance] {
		t.Errorf("halted node's duty records give reasons %v, want duplicate_instance", got)
	}
	st := c.sim.Stats()
	if st.Totals.Wrong != 0 {
		t.Fatalf("%d wrong submissions: %+v", st.Totals.Wrong, st.RecentFailures)
	}
	for _, e := range []uint64{3, 4} {
		if got := epochCounts(st, e); got.Correct != 4 || got.Expected != 4 {
			t.Errorf("epoch %d after the halt: %d of %d correct", e, got.Correct, got.Expected)
		}
	}
}

// duties reads a node's duty records (its own and its peers').
func duties(t *testing.T, monitoring string) []node.DutyRecord {
	t.Helper()
	resp, err := http.Get("http://" + monitoring + "/duties")
	if err != nil {
		t.Fatalf("duties: %v", err)
	}
	defer resp.Body.Close()
	var recs []node.DutyRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

// reasonsOf returns the failure reasons node reported in its records.
func reasonsOf(recs []node.DutyRecord, nodeIdx uint64) map[string]bool {
	out := map[string]bool{}
	for _, r := range recs {
		if r.Node == nodeIdx && r.Reason != "" {
			out[r.Reason] = true
		}
	}
	return out
}

// checkTrackerReasons reads node 1's cluster-wide duty records: the duties of epochs 1 and 2
// failed at validation with reason invalid_decided on every node, and those of epoch 3 succeeded.
func checkTrackerReasons(t *testing.T, monitoring string) {
	t.Helper()
	recs := duties(t, monitoring)
	nodes := map[uint64]bool{}
	for _, r := range recs {
		nodes[r.Node] = true
		if r.Type != "attester" {
			continue // the aggregations of those slots fail for the same reason, at fetch
		}
		switch epoch := r.Slot / testSlotsPerEpoch; {
		case r.Result == "running":
		case epoch == 1 || epoch == 2:
			if r.Result != "failed" || r.Reason != node.ReasonInvalidDecided || r.FailedStep != node.StepValidate {
				t.Errorf("slot %d node %d: %s/%s at %s, want failed/invalid_decided at validate", r.Slot, r.Node, r.Result, r.Reason, r.FailedStep)
			}
		case epoch == 3:
			if r.Result != "success" {
				t.Errorf("slot %d node %d: %s (%s), want success", r.Slot, r.Node, r.Result, r.Reason)
			}
		}
	}
	if len(nodes) != 4 {
		t.Errorf("cluster-wide view has records of %d nodes, want 4", len(nodes))
	}
}
