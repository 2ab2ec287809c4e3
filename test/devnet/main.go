// Command devnet proves dvmesh on a real chain: it builds geth and Prysm from the Go module proxy
// (cached), starts a 64-validator proof-of-stake devnet on 127.0.0.1 where Prysm's own validator
// client runs interop validators 0..15, and runs validators 16..63 as a 4-node 3-of-4 dvmesh
// cluster (4 `dvmesh run` processes against Prysm's REST API). It then judges dvmesh from the
// chain itself: finality, per-epoch liveness, balances, proposals (accepted, canonical, arrival
// time in the slot), aggregations, sync-committee participation and the union of every node's
// slashing history; and it kills the Raft leader for two epochs and restarts it.
//
//	go run ./test/devnet -short          # Electra, 8-slot epochs, 4-s slots: about 7 minutes with cached clients
//	go run ./test/devnet                 # Fulu from genesis, 32-slot epochs, 4-s slots: about 21 minutes
//	go run ./test/devnet -subscribe-all-subnets=false
//
// It prints a table and exits 1 if any figure falls short, 0 when all hold. A machine that cannot
// build the clients prints SKIP and exits 0 (with -require-clients it exits 3 instead).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
)

const (
	dvFirst, dvLast = 16, 63 // the dvmesh cluster's validators
	numValidators   = 64
	feeRecipient    = "0x123463a4B065722E99115D6c222f267d9cABb524"
	minLive         = 0.95 // per-epoch liveness from the 2nd full epoch on
	minCanonical    = 0.95
	minSync         = 0.95
)

type options struct {
	short          bool
	epochs         int
	killEpoch      int
	downEpochs     int
	subscribeAll   bool
	cacheDir       string
	keep           bool
	requireClients bool
	genesisDelay   time.Duration
	secondsPerSlot int
}

func main() {
	var o options
	home, _ := os.UserHomeDir()
	flag.BoolVar(&o.short, "short", false, "Electra genesis with 8-slot epochs (16 s): the CI variant")
	flag.IntVar(&o.epochs, "epochs", 0, "epochs to run (default 9, or 12 with -short)")
	flag.IntVar(&o.killEpoch, "kill-leader-at", -2, "epoch in which the Raft leader is SIGKILLed (a quarter into it); -1: no fault (default 3, or 4 with -short)")
	flag.IntVar(&o.downEpochs, "down-epochs", 2, "epochs the killed leader stays down before it restarts on its data dir")
	flag.BoolVar(&o.subscribeAll, "subscribe-all-subnets", true, "run Prysm's beacon node with --subscribe-all-subnets (false: dvmesh's subscriptions must do it)")
	flag.StringVar(&o.cacheDir, "cache", filepath.Join(home, ".cache", "dvmesh-devnet"), "client binaries and run directories")
	flag.BoolVar(&o.keep, "keep", false, "keep the chain data of the run (logs, cluster and slashing exports are always kept)")
	flag.BoolVar(&o.requireClients, "require-clients", false, "exit 3 instead of skipping when the clients cannot be built")
	flag.DurationVar(&o.genesisDelay, "genesis-delay", 40*time.Second, "time from writing the genesis to slot 0 (dvmesh starts within it)")
	// Not 2: Prysm v7 takes a block as early only when it arrives within
	// SECONDS_PER_SLOT/INTERVALS_PER_SLOT whole seconds, 0 at 2-s slots, so it counts every block
	// late. With a proposer of its own in the next slot (here always) it then holds back its head
	// update (shouldOverrideFCU), the slot's attesters vote for the parent, and the next proposer
	// builds on the parent: blocks are orphaned whoever signs them (Prysm's own validator
	// client's too). 3 s passes every check; 4 s is the default CI has run since the harness began.
	flag.IntVar(&o.secondsPerSlot, "seconds-per-slot", 4, "SECONDS_PER_SLOT of the devnet (at least 3 with Prysm v7; 2 shows Prysm's late-block reorgs, see the README)")
	flag.Parse()
	if o.secondsPerSlot < 3 {
		logf("WARNING: at %d-s slots Prysm v7 counts every block as late (SECONDS_PER_SLOT/3 rounds to 0 s) and reorgs blocks out whoever signs them; expect the canonical and liveness checks to fall short", o.secondsPerSlot)
	}
	if o.epochs == 0 {
		o.epochs = map[bool]int{false: 9, true: 10}[o.short]
	}
	if o.killEpoch == -2 {
		o.killEpoch = map[bool]int{false: 3, true: 4}[o.short]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// epochRow is what the harness saw of one epoch.
type epochRow struct {
	live, liveKnown       int // dvmesh validators live / answered
	prysmLive             int
	justified, finalized  uint64 // at the epoch's last slot
	proposals, imported   int    // dvmesh proposer duties / blocks imported for them
	syncSet, syncPos      int    // dvmesh sync-committee bits set / positions, over the epoch's blocks
	events                []string
	signed                map[int]float64 // per node: partials signed in the epoch
	received              map[int]float64 // per node: partials received in the epoch
	restartedRecords      int             // restarted node's successful duty records in the epoch
	restartedRecordsTotal int
}

func run(ctx context.Context, o options) (int, error) {
	binDir, err := ensureClients(o.cacheDir, logf)
	if errors.Is(err, errCannotBuild) {
		fmt.Printf("SKIP: %v\nSKIP: the devnet run did not happen; nothing was checked.\n", err)
		if o.requireClients {
			return 3, nil
		}
		return 0, nil
	}
	if err != nil {
		return 1, err
	}
	exe, err := buildDvmesh(binDir)
	if err != nil {
		return 1, err
	}
	spe, sps, fork := 32, o.secondsPerSlot, "fulu"
	if o.short {
		spe, fork = 8, "electra"
	}
	killSlot, restartSlot := -1, -1
	if o.killEpoch >= 0 {
		killSlot = o.killEpoch*spe + spe/4
		restartSlot = killSlot + o.downEpochs*spe
		if (restartSlot/spe)+2 >= o.epochs {
			return 1, fmt.Errorf("-epochs %d is too short to see the restarted node back (restart in epoch %d): use at least %d", o.epochs, restartSlot/spe, restartSlot/spe+3)
		}
	}
	pt, err := freePorts()
	if err != nil {
		return 1, err
	}
	runDir := filepath.Join(o.cacheDir, "runs", time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(filepath.Join(runDir, "logs"), 0o755); err != nil {
		return 1, err
	}
	logf("run directory %s (logs in logs/)", runDir)
	out, err := createCluster(exe, filepath.Join(runDir, "cluster"), dvFirst, dvLast, feeRecipient, pt.DvmeshP2P)
	if err != nil {
		return 1, err
	}
	logf("dvmesh create-cluster: %s", firstLine(out))
	l, err := lock.Load(filepath.Join(runDir, "cluster", node.LockFileName))
	if err != nil {
		return 1, err
	}

	cp := chainParams{fork: fork, slotsPerEpoch: spe, secondsPerSlot: sps, validators: numValidators, localValidators: dvFirst,
		genesisDelay: o.genesisDelay, subscribeAll: o.subscribeAll, feeRecipient: feeRecipient}
	d, err := startDevnet(binDir, filepath.Join(runDir, "chain"), cp, pt)
	var nodes []*dnode
	defer func() {
		for _, n := range nodes {
			n.p.stop(15 * time.Second)
		}
		if d != nil {
			d.stop()
			if !o.keep {
				for _, sub := range []string{"geth", "beacon", "validator"} {
					_ = os.RemoveAll(filepath.Join(d.dir, sub))
				}
			}
		}
	}()
	if err != nil {
		return 1, err
	}
	logf("devnet: %s genesis at %s (%d validators, %d-s slots, %d slots per epoch); Prysm VC runs 0..%d; beacon %s; --subscribe-all-subnets=%v",
		fork, d.genesis.Format("15:04:05"), numValidators, sps, spe, dvFirst-1, d.beaconURL, o.subscribeAll)
	nodes, err = startNodes(exe, filepath.Join(runDir, "cluster"), runDir, d.beaconURL, pt)
	if err != nil {
		return 1, err
	}
	logf("started 4 dvmesh nodes (validators %d..%d, 3-of-4), monitoring %s..%d", dvFirst, dvLast, nodes[0].monitoring, pt.DvmeshMon+3)

	a := &api{base: d.beaconURL, c: http10s()}
	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }

	// All nodes ready before genesis?
	readyBy := map[int]time.Duration{}
	for time.Now().Before(d.genesis) && len(readyBy) < 4 {
		if err := ctx.Err(); err != nil {
			return 1, err
		}
		if msg := d.died(); msg != "" {
			return 1, errors.New(msg)
		}
		for _, n := range nodes {
			if st, err := n.status(); err == nil && st.Ready && readyBy[n.index] == 0 {
				readyBy[n.index] = time.Until(d.genesis)
			}
			if !n.p.alive() {
				return 1, fmt.Errorf("dvmesh node %d exited during start-up; its log %s ends:\n%s", n.index, n.logPath, tailFile(n.logPath, 20))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, n := range nodes {
		if t, ok := readyBy[n.index]; ok {
			logf("node %d ready %.1f s before genesis", n.index, t.Seconds())
		} else {
			st, _ := n.status()
			fail("node %d not ready at genesis (%v)", n.index, st)
		}
	}
	events := followBlocks(ctx, a, d, logf)

	// The chain's interop keys are the lock's group keys.
	if err := sleepUntil(ctx, d.slotStart(1)); err != nil {
		return 1, err
	}
	dvIDs, prysmIDs := idList(dvFirst, dvLast), idList(0, dvFirst-1)
	chainKeys, err := a.pubkeys(dvIDs)
	if err != nil {
		return 1, err
	}
	mismatch := 0
	for i, v := range l.Validators {
		if chainKeys[uint64(dvFirst+i)] != strings.ToLower(v.GroupPubkey) {
			mismatch++
		}
	}
	logf("interop keys: %d of %d lock group keys equal the chain's validators %d..%d", len(l.Validators)-mismatch, len(l.Validators), dvFirst, dvLast)
	if mismatch > 0 || len(l.Validators) != dvLast-dvFirst+1 {
		fail("%d lock group keys differ from the chain's interop validators", mismatch)
	}
	startBal, err := a.balances("genesis", dvIDs)
	if err != nil {
		return 1, err
	}
	sc, err := a.syncCommittee()
	if err != nil {
		return 1, err
	}
	var dvPositions []int
	for pos, vi := range sc {
		if vi >= dvFirst && vi <= dvLast {
			dvPositions = append(dvPositions, pos)
		}
	}
	logf("sync committee: %d positions, %d of them dvmesh validators'", len(sc), len(dvPositions))

	// Follow the chain slot by slot.
	rows := make([]*epochRow, o.epochs)
	for i := range rows {
		rows[i] = &epochRow{signed: map[int]float64{}, received: map[int]float64{}}
	}
	duties := map[uint64]uint64{} // slot -> proposer index
	records := map[string]node.DutyRecord{}
	var recMu sync.Mutex
	lastMetrics := map[int]map[string]float64{}
	killed := (*dnode)(nil)
	var pendingLive []uint64
	leaderLossSlots := map[uint64]bool{}
	endSlot := uint64(o.epochs*spe - 1)
	for slot := uint64(1); slot <= endSlot; slot++ {
		if err := sleepUntil(ctx, d.slotStart(slot).Add(d.slotLength/2)); err != nil {
			return 1, err
		}
		if msg := d.died(); msg != "" {
			return 1, errors.New(msg)
		}
		for _, n := range nodes {
			if n != killed && !n.p.alive() {
				return 1, fmt.Errorf("dvmesh node %d exited; its log %s ends:\n%s", n.index, n.logPath, tailFile(n.logPath, 20))
			}
		}
		epoch := slot / uint64(spe)
		row := rows[epoch]
		if slot%uint64(spe) == 0 || slot == 1 {
			pd, err := a.proposerDuties(epoch)
			if err != nil {
				fail("proposer duties of epoch %d: %v", epoch, err)
			}
			for s, v := range pd {
				duties[s] = v
			}
		}
		if int(slot) == killSlot {
			killed = killLeader(nodes, row, slot)
			if killed == nil {
				fail("no Raft leader found to kill at slot %d", slot)
			} else {
				leaderLossSlots[slot] = true
				logf("FAULT: SIGKILLed node %d, the Raft leader, at slot %d (epoch %d)", killed.index, slot, epoch)
			}
		}
		if int(slot) == restartSlot && killed != nil {
			if err := killed.start(); err != nil {
				return 1, err
			}
			lastMetrics[killed.index] = map[string]float64{} // a fresh process counts from zero
			row.events = append(row.events, fmt.Sprintf("node %d restarted @%d", killed.index, slot))
			logf("FAULT: restarted node %d on its data dir at slot %d (epoch %d)", killed.index, slot, epoch)
		}
		// Every half epoch: collect the tracker records of every live node (they keep 64 slots).
		if slot%uint64(max(1, spe/2)) == 0 {
			collectRecords(nodes, records, &recMu)
		}
		// Last slot of the epoch: finality, liveness of the previous epoch, metrics deltas.
		if slot%uint64(spe) == uint64(spe-1) {
			row.justified, row.finalized, _ = a.finality()
			if epoch >= 1 {
				pendingLive = append(pendingLive, epoch-1)
			}
		}
		// Liveness of epoch e is asked for in the last slot of epoch e+1: Prysm answers it from its
		// head state's previous-epoch participation only while its head is in epoch e+1 (later it
		// reads the state at e's last slot, which lacks the attestations included in e+1's blocks,
		// such as all of e's last slot), and by then nearly every attestation of e is included.
		var stillPending []uint64
		for _, e := range pendingLive {
			head, err := a.headSlot()
			switch {
			case err == nil && head/uint64(spe) == e+1:
				if err = fillLiveness(a, rows[e], e, dvIDs, prysmIDs); err == nil {
					logf("epoch %d liveness: dvmesh %s, Prysm VC %d/%d", e, liveStr(rows[e]), rows[e].prysmLive, dvFirst)
					continue
				}
			case err == nil && head/uint64(spe) > e+1:
				err = fmt.Errorf("the beacon node's head (slot %d) left epoch %d before it was asked", head, e+1)
			case err == nil:
				err = fmt.Errorf("the beacon node's head (slot %d) is not in epoch %d yet", head, e+1)
			}
			if slot/uint64(spe) > e+1 {
				fail("liveness of epoch %d: %v", e, err)
			} else {
				stillPending = append(stillPending, e)
			}
		}
		pendingLive = stillPending
		if slot%uint64(spe) == uint64(spe-1) {
			for _, n := range nodes {
				if !n.p.alive() {
					continue
				}
				m, err := n.metrics()
				if err != nil {
					continue
				}
				if last, ok := lastMetrics[n.index]; ok {
					row.signed[n.index] = m["dvmesh_partials_signed_total"] - last["dvmesh_partials_signed_total"]
					row.received[n.index] = m[`dvmesh_partials_received_total{result="received"}`] - last[`dvmesh_partials_received_total{result="received"}`]
				}
				lastMetrics[n.index] = m
			}
			logf("epoch %d done: justified %d finalized %d", epoch, row.justified, row.finalized)
		}
	}
	for _, e := range pendingLive {
		if err := fillLiveness(a, rows[e], e, dvIDs, prysmIDs); err != nil {
			fail("liveness of epoch %d: %v", e, err)
		}
	}
	collectRecords(nodes, records, &recMu)
	endBal, err := a.balances("head", dvIDs)
	if err != nil {
		fail("balances: %v", err)
	}
	finalJust, finalFin, _ := a.finality()

	// Proposals and sync aggregates from the canonical chain.
	isDV := func(v uint64) bool { return v >= dvFirst && v <= dvLast }
	var arrivals []string
	propExpected, propImported, propCanonical, propOtherGraffiti := 0, 0, 0, 0
	syncSetPrysm, syncPosPrysm := 0, 0
	// Blocks whose aggregate holds Prysm VC members: the slot's block came before the sync
	// messages were signed, so every member signing in time is in it. dvmesh's share of its
	// positions in those blocks is what dvmesh controls; the rest is the chain's timing.
	pairedBlocks, pairedSet, pairedPos := 0, 0, 0
	votes := map[uint64][]string{} // slot -> the attestations of it in canonical blocks
	for slot := uint64(1); slot <= endSlot; slot++ {
		row := rows[slot/uint64(spe)]
		b, err := a.block(fmt.Sprint(slot))
		if err != nil {
			fail("block %d: %v", slot, err)
			continue
		}
		if b != nil {
			for _, v := range b.Votes {
				votes[v.Slot] = append(votes[v.Slot], fmt.Sprintf("in %d: head %s, %d bits", slot, v.Head, v.Bits))
			}
		}
		if v, ok := duties[slot]; ok && isDV(v) {
			propExpected++
			row.proposals++
			imported := false
			for _, s := range events.at(slot) {
				if s.Block.Proposer == v {
					imported = true
					arrivals = append(arrivals, fmt.Sprintf("slot %d validator %d %q +%dms%s", slot, v, s.Block.Graffiti, s.Arrival.Milliseconds(), proposalSteps(records, slot)))
					if !strings.HasPrefix(s.Block.Graffiti, "dvmesh") {
						propOtherGraffiti++
					}
				}
			}
			if imported {
				propImported++
				row.imported++
			}
			if b != nil && b.Proposer == v && strings.HasPrefix(b.Graffiti, "dvmesh") {
				propCanonical++
			}
		}
		// Sync aggregate in block s covers slot s-1's messages; judged from the 2nd full epoch on.
		if b != nil && slot > uint64(spe) {
			for _, pos := range dvPositions {
				row.syncPos++
				if bit(b.SyncBits, pos) {
					row.syncSet++
				}
			}
			prysmIn := false
			for pos, vi := range sc {
				if !isDV(vi) {
					syncPosPrysm++
					if bit(b.SyncBits, pos) {
						syncSetPrysm++
						prysmIn = true
					}
				}
			}
			if prysmIn {
				pairedBlocks++
				for _, pos := range dvPositions {
					pairedPos++
					if bit(b.SyncBits, pos) {
						pairedSet++
					}
				}
			}
		}
	}

	// Stop the cluster, export every node's slashing history and check the union.
	final := map[int]map[string]float64{}
	for _, n := range nodes {
		if m, err := n.metrics(); err == nil {
			final[n.index] = m
		}
	}
	for _, n := range nodes {
		n.p.stop(15 * time.Second)
	}
	var files []string
	for _, n := range nodes {
		f := filepath.Join(runDir, fmt.Sprintf("slashing-node%d.json", n.index))
		if err := exportSlashing(exe, n, f); err != nil {
			fail("%v", err)
			continue
		}
		files = append(files, f)
	}
	union, err := slashingUnion(files)
	if err != nil {
		fail("slashing union: %v", err)
	}

	// ---- Report ----
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "epoch\tdvmesh live\tprysm live\tjust\tfin\tdv proposals\timported\tsync bits (dv)\tpartials signed/received per node\tevents\t")
	for e, r := range rows {
		var parts []string
		for i := 1; i <= 4; i++ {
			if s, ok := r.signed[i]; ok {
				parts = append(parts, fmt.Sprintf("%d:%.0f/%.0f", i, s, r.received[i]))
			} else {
				parts = append(parts, fmt.Sprintf("%d:-", i))
			}
		}
		live := "-"
		if r.liveKnown > 0 {
			live = fmt.Sprintf("%d/%d", r.live, r.liveKnown)
		}
		prysm := "-"
		if r.liveKnown > 0 {
			prysm = fmt.Sprintf("%d/%d", r.prysmLive, dvFirst)
		}
		syncs := "-"
		if r.syncPos > 0 {
			syncs = fmt.Sprintf("%d/%d", r.syncSet, r.syncPos)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", e, live, prysm, r.justified, r.finalized, r.proposals, r.imported, syncs,
			strings.Join(parts, " "), strings.Join(r.events, "; "))
	}
	tw.Flush()
	// Where liveness fell short: what the chain included for each slot of the epoch (two head
	// votes for one slot mean the validators split; a slot without votes lost its attestations).
	for e, r := range rows {
		if e == 0 || r.liveKnown == 0 || float64(r.live) >= minLive*float64(r.liveKnown) {
			continue
		}
		fmt.Printf("epoch %d (%d/%d live) attestations included per slot:\n", e, r.live, r.liveKnown)
		for slot := uint64(e) * uint64(spe); slot < uint64(e+1)*uint64(spe); slot++ {
			fmt.Printf("  slot %d: %s\n", slot, strings.Join(votes[slot], "; "))
		}
	}
	fmt.Println("\ndvmesh blocks (arrival at the beacon node after slot start):")
	for _, s := range arrivals {
		fmt.Println("  " + s)
	}

	// ---- Checks ----
	type check struct {
		name, figure string
		ok           bool
	}
	var checks []check
	add := func(name string, ok bool, format string, args ...any) {
		checks = append(checks, check{name, fmt.Sprintf(format, args...), ok})
	}
	// Leader loss budget: one slot's duties per leader lost.
	perSlot := (dvLast - dvFirst + 1 + spe - 1) / spe
	lossEpoch := -1
	if killSlot >= 0 {
		lossEpoch = killSlot / spe
	}
	add("finality advances >= 3 epochs while dvmesh runs", finalFin >= 3, "finalized epoch 0 -> %d (justified %d)", finalFin, finalJust)
	if killed != nil {
		finAtKill := rows[killSlot/spe].finalized
		add("finality advances across the fault", finalFin > finAtKill+1, "finalized %d at the kill's epoch end -> %d at the end", finAtKill, finalFin)
	}
	worst, worstEpoch, liveShort := 2.0, -1, false
	for e := 1; e < o.epochs-1; e++ {
		r := rows[e]
		n := dvLast - dvFirst + 1
		need := minLive * float64(n)
		if e == lossEpoch {
			need -= float64(perSlot)
		}
		frac := float64(r.live) / float64(n)
		if frac < worst {
			worst, worstEpoch = frac, e
		}
		if float64(r.live) < need {
			liveShort = true
			fail("epoch %d: %d/%d dvmesh validators live, need %.1f", e, r.live, n, need)
		}
	}
	add(">= 95% of dvmesh validators live per epoch (from epoch 1)", worstEpoch != -1 && !liveShort,
		"worst %.1f%% (epoch %d)", 100*worst, worstEpoch)
	rose := 0
	for vi, b := range startBal {
		if endBal[vi] > b {
			rose++
		}
	}
	add("balances rise", float64(rose) >= minLive*float64(len(startBal)), "%d/%d dvmesh validators' balances rose", rose, len(startBal))
	lossBudget := 0
	if killed != nil {
		lossBudget = 1
	}
	add("every dvmesh proposal accepted", propExpected > 0 && propImported >= propExpected-lossBudget && propOtherGraffiti == 0,
		"%d/%d proposer duties imported (budget %d for the leader loss), %d without dvmesh graffiti", propImported, propExpected, lossBudget, propOtherGraffiti)
	add(">= 95% of dvmesh proposals canonical", propImported > 0 && float64(propCanonical) >= minCanonical*float64(propImported),
		"%d/%d canonical", propCanonical, propImported)
	sub := func(typ, result string) float64 {
		var s float64
		for _, m := range final {
			s += m[fmt.Sprintf(`dvmesh_submissions_total{result=%q,type=%q}`, result, typ)]
		}
		return s
	}
	var subLines []string
	for _, typ := range []string{"attester", "proposer", "aggregator", "sync_message", "sync_contribution"} {
		subLines = append(subLines, fmt.Sprintf("%s %.0f ok/%.0f error", typ, sub(typ, "ok"), sub(typ, "error")))
	}
	// A submission that ran out of its slot is not a refusal; around the leader loss (its slot
	// is the fault budget) some may. Any answer other than a deadline is a refusal.
	// A call cut short by the harness's final stop is logged as abandoned, not failed, and is
	// printed but not judged.
	late, refused, abandoned := submissionFailures(nodes, "aggregator")
	add("aggregations accepted", sub("aggregator", "ok") > 0 && refused == 0 && late <= lossBudget*len(nodes),
		"%.0f aggregates accepted (HTTP 200), %d refused, %d submission calls past their slot (budget %d), %d cut short by the final stop, over all nodes",
		sub("aggregator", "ok"), refused, late, lossBudget*len(nodes), abandoned)
	syncSet, syncPos := 0, 0
	for e, r := range rows {
		if e >= 1 {
			syncSet += r.syncSet
			syncPos += r.syncPos
		}
	}
	// Judged where the chain let Prysm's own validator client in (see pairedBlocks), with the
	// leader loss's budget; overall participation is printed for comparison with Prysm's VC.
	syncNeed := minSync*float64(pairedPos) - float64(lossBudget*len(dvPositions))
	add("dvmesh sync-committee members in the sync aggregates", pairedBlocks > 0 && float64(pairedSet) >= syncNeed,
		"%d/%d dvmesh bits set in the %d blocks with Prysm VC's members (%.1f%%); over all blocks dvmesh %.1f%% (%d/%d), Prysm VC %.1f%%",
		pairedSet, pairedPos, pairedBlocks, pct(pairedSet, pairedPos), pct(syncSet, syncPos), syncSet, syncPos, pct(syncSetPrysm, syncPosPrysm))
	add("no slashable pair in the union of slashing histories", len(files) == 4 && union.attestations > 0 && len(union.conflicts) == 0 && len(union.gvrs) == 1,
		"%d nodes exported, %d validators, %d attestations and %d blocks (distinct), %d conflicts", len(files), union.validators, union.attestations, union.blocks, len(union.conflicts))
	for _, c := range union.conflicts {
		fmt.Println("  SLASHABLE:", c)
	}
	if killed != nil {
		back := restartSlot/spe + 1
		r := rows[back]
		var others, ratio []string
		okRatio := true
		for i := 1; i <= 4; i++ {
			if i == killed.index || r.signed[i] == 0 {
				continue
			}
			q := r.received[i] / r.signed[i]
			ratio = append(ratio, fmt.Sprintf("node %d %.2f", i, q))
			if q < 2.8 {
				okRatio = false
			}
		}
		ownOK, ownAll, peerAll := countRecords(records, killed.index, back, spe)
		others = append(others, fmt.Sprintf("its /duties records in epoch %d: %d of %d success with partials_sent (a peer has %d)", back, ownOK, ownAll, peerAll))
		add(fmt.Sprintf("restarted node %d's partials back in epoch %d", killed.index, back),
			r.signed[killed.index] > 0 && okRatio && ownAll > 0 && float64(ownOK) >= 0.9*float64(peerAll),
			"it signed %.0f partials; peers' received/signed %s (3 = all peers, 2 = one missing); %s",
			r.signed[killed.index], strings.Join(ratio, ", "), strings.Join(others, ""))
	}
	fmt.Println("\nsubmissions (all nodes):", strings.Join(subLines, "; "))
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "check\tresult\tfigure")
	for _, c := range checks {
		res := "PASS"
		if !c.ok {
			res = "FAIL"
			fail("%s: %s", c.name, c.figure)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.name, res, c.figure)
	}
	tw.Flush()
	if len(failures) > 0 {
		sort.Strings(failures)
		return 1, fmt.Errorf("%d figure(s) fell short:\n  %s\nlogs: %s", len(failures), strings.Join(failures, "\n  "), filepath.Join(runDir, "logs"))
	}
	fmt.Printf("PASS: dvmesh ran validators %d..%d on a real %s chain; logs in %s\n", dvFirst, dvLast, fork, filepath.Join(runDir, "logs"))
	return 0, nil
}

// submissionFailures counts, over the nodes' logs, the failed submission calls of duty type
// typ that ran out of time, those the beacon node answered with an error, and those the node's
// own shutdown abandoned.
func submissionFailures(nodes []*dnode, typ string) (late, refused, abandoned int) {
	for _, n := range nodes {
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			refused++ // cannot tell: count against
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, " duty="+typ+" ") {
				continue
			}
			switch {
			case strings.Contains(line, `msg="Submission abandoned: node stopping"`):
				abandoned++
			case !strings.Contains(line, `msg="Submission failed"`):
			case strings.Contains(line, "context deadline exceeded"):
				late++
			default:
				refused++
			}
		}
	}
	return late, refused, abandoned
}

// killLeader SIGKILLs the node whose /status says it is the Raft leader.
func killLeader(nodes []*dnode, row *epochRow, slot uint64) *dnode {
	for _, n := range nodes {
		st, err := n.status()
		if err != nil || st.RaftRole != consensus.RoleLeader {
			continue
		}
		n.p.kill()
		row.events = append(row.events, fmt.Sprintf("leader node %d SIGKILLed @%d", n.index, slot))
		return n
	}
	return nil
}

func collectRecords(nodes []*dnode, into map[string]node.DutyRecord, mu *sync.Mutex) {
	for _, n := range nodes {
		if !n.p.alive() {
			continue
		}
		rs, err := n.records()
		if err != nil {
			continue
		}
		mu.Lock()
		for _, r := range rs {
			if r.Result == "running" {
				continue
			}
			into[fmt.Sprintf("%d/%d/%s", r.Node, r.Slot, r.Type)] = r
		}
		mu.Unlock()
	}
}

// proposalSteps is the step timeline of the first node to submit slot's block (milliseconds
// after the slot's start), so that a late block's arrival line shows where its time went.
func proposalSteps(records map[string]node.DutyRecord, slot uint64) string {
	var (
		first   *node.DutyRecord
		firstAt int64
	)
	for _, r := range records {
		at, ok := r.StepAt(node.StepSubmitted)
		if r.Slot != slot || r.Type != "proposer" || !ok {
			continue
		}
		if first == nil || at < firstAt {
			first, firstAt = &r, at
		}
	}
	if first == nil {
		return ""
	}
	steps := make([]string, 0, len(first.Steps))
	for _, st := range first.Steps {
		if st.Step != node.StepStart {
			steps = append(steps, fmt.Sprintf("%s %d", st.Step, st.AtMs))
		}
	}
	return fmt.Sprintf(" (node %d: %s)", first.Node, strings.Join(steps, ", "))
}

// countRecords counts node idx's attester records in epoch: successful ones that sent partials,
// all of them, and the most any other node has.
func countRecords(records map[string]node.DutyRecord, idx, epoch, spe int) (ok, all, peer int) {
	per := map[uint64]int{}
	for _, r := range records {
		if r.Type != "attester" || int(r.Slot)/spe != epoch {
			continue
		}
		if int(r.Node) != idx {
			per[r.Node]++
			continue
		}
		all++
		if _, sent := r.StepAt(node.StepSent); r.Result == "success" && sent {
			ok++
		}
	}
	for _, c := range per {
		peer = max(peer, c)
	}
	return ok, all, peer
}

func fillLiveness(a *api, row *epochRow, epoch uint64, dvIDs, prysmIDs []string) error {
	lv, err := a.liveness(epoch, dvIDs)
	if err != nil {
		return err
	}
	pl, err := a.liveness(epoch, prysmIDs)
	if err != nil {
		return err
	}
	row.live, row.prysmLive, row.liveKnown = 0, 0, len(lv)
	for _, live := range lv {
		if live {
			row.live++
		}
	}
	for _, live := range pl {
		if live {
			row.prysmLive++
		}
	}
	return nil
}

func liveStr(r *epochRow) string {
	if r.liveKnown == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", r.live, r.liveKnown)
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func firstLine(s string) string { l, _, _ := strings.Cut(strings.TrimSpace(s), "\n"); return l }

func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t)):
		return nil
	}
}
