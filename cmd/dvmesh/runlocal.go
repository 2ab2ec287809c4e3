package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/test/simbeacon"
)

// startupGuardRule is the slashing-DB rule of the documented start-up guard: the only refusal
// run-local tolerates.
const startupGuardRule = "startup_guard"

// localFeeRecipient is the demo cluster's fee recipient (a test address nobody holds).
const localFeeRecipient = "0x00000000000000000000000000000000000fee01"

type runLocalOpts struct {
	clusterDir     string
	slots          uint64
	slotDuration   time.Duration
	slotsPerEpoch  uint64
	kill           string
	monitoringBase int
	adminBase      int
	logLevel       string
	readyTimeout   time.Duration
	networkSize    uint64   // validators of the simulated network; 0: the cluster's only
	builderBlocks  bool     // the simulated beacon node answers blinded (builder) blocks
	dkg            bool     // create a missing cluster with a DKG among local processes
	nodeArgs       []string // extra 'dvmesh run' flags for every node
}

func newRunLocalCmd() *cobra.Command {
	var o runLocalOpts
	cmd := &cobra.Command{
		Use:   "run-local",
		Short: "Run every node of a cluster as its own process against a simulated beacon node, and report",
		Long: `run-local starts a simulated beacon node on 127.0.0.1 and every node of the cluster as a
separate 'dvmesh run' process, sets the chain's genesis once all nodes are ready, runs --slots
slots, and prints what the simulated beacon node judged: correct, wrong and missing duties.

--kill injects a fault: 'leader@S' kills the Raft leader at slot S, 'follower@S' a follower,
'nodeN@S' node N. Each leader loss may cost at most one slot's duties, a follower loss none.
It exits non-zero on any invalid signature, any slashing refusal other than the start-up guard,
or missed duties beyond that budget.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLocal(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.clusterDir, "cluster", "./cluster", "cluster directory written by create-cluster (created with 4 nodes, threshold 3, 2 validators if it does not exist)")
	f.Uint64Var(&o.slots, "slots", 64, "slots to run")
	f.DurationVar(&o.slotDuration, "slot-duration", 2*time.Second, "slot duration of the simulated chain")
	f.Uint64Var(&o.slotsPerEpoch, "slots-per-epoch", 8, "slots per epoch of the simulated chain")
	f.StringVar(&o.kill, "kill", "", "fault to inject: leader@SLOT, follower@SLOT or nodeN@SLOT")
	f.IntVar(&o.monitoringBase, "monitoring-base-port", 3620, "monitoring port of node 1; node i uses base+i-1")
	f.IntVar(&o.adminBase, "admin-base-port", 3630, "admin port ('dvmesh exit --admin-addr') of node 1; node i uses base+i-1")
	f.StringVar(&o.logLevel, "log-level", "info", "log level of the nodes")
	f.BoolVar(&o.dkg, "dkg", false, "create a missing cluster with a distributed key generation among 4 local 'dvmesh dkg' processes (no process ever holds a validator key) instead of a trusted dealer")
	f.BoolVar(&o.builderBlocks, "builder-blocks", false, "the simulated beacon node produces blinded blocks, as from an MEV relay (the demo cluster uses builders)")
	f.DurationVar(&o.readyTimeout, "ready-timeout", 90*time.Second, "how long to wait for every node to be ready")
	return cmd
}

// killPlan is a parsed --kill.
type killPlan struct {
	target string // "leader", "follower" or "nodeN"
	slot   phase0.Slot
}

func parseKill(s string, nodes int) (*killPlan, error) {
	if s == "" {
		return nil, nil
	}
	target, slotStr, ok := strings.Cut(s, "@")
	slot, err := strconv.ParseUint(slotStr, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("--kill %q: want leader@SLOT, follower@SLOT or nodeN@SLOT", s)
	}
	if target != "leader" && target != "follower" {
		n, err := strconv.Atoi(strings.TrimPrefix(target, "node"))
		if !strings.HasPrefix(target, "node") || err != nil || n < 1 || n > nodes {
			return nil, fmt.Errorf("--kill %q: node must be node1..node%d", s, nodes)
		}
	}
	return &killPlan{target: target, slot: phase0.Slot(slot)}, nil
}

// localNode is one node process.
type localNode struct {
	index      int
	cmd        *exec.Cmd
	logPath    string
	monitoring string
	done       chan struct{}
	killed     bool
	refusals   map[string]float64 // last scraped slashing refusals by rule
}

func runLocal(ctx context.Context, out io.Writer, o runLocalOpts) error {
	if _, err := os.Stat(o.clusterDir); errors.Is(err, os.ErrNotExist) && o.dkg {
		if err := createClusterWithDKG(ctx, o.clusterDir, 4, 3, 2, "0x10000000", 3610); err != nil {
			return fmt.Errorf("create cluster with a DKG: %w", err)
		}
		fmt.Fprintf(out, "No cluster at %s: created one with a DKG among 4 local processes (4 nodes, threshold 3, 2 validators)\n", o.clusterDir)
	} else if errors.Is(err, os.ErrNotExist) {
		// A fresh machine: make the demo cluster instead of failing.
		if _, err := node.CreateCluster(node.CreateOptions{Name: "dvmesh-local", Nodes: 4, Threshold: 3, Validators: 2,
			OutDir: o.clusterDir, Host: "127.0.0.1", BasePort: 3610, Network: "devnet", GenesisForkVersion: "0x10000000",
			Proposals: &lock.ProposalSettings{FeeRecipient: localFeeRecipient, Builder: true, BuilderBoostFactor: 100, GasLimit: 60_000_000,
				RegistrationTimestamp: uint64(time.Now().Unix())}}); err != nil {
			return fmt.Errorf("create cluster: %w", err)
		}
		fmt.Fprintf(out, "No cluster at %s: created one (4 nodes, threshold 3, 2 validators)\n", o.clusterDir)
	}
	l, err := lock.Load(filepath.Join(o.clusterDir, node.LockFileName))
	if err != nil {
		return fmt.Errorf("%w (create one with: dvmesh create-cluster --out %s)", err, o.clusterDir)
	}
	plan, err := parseKill(o.kill, len(l.Operators))
	if err != nil {
		return err
	}
	if o.slots == 0 || o.slotsPerEpoch == 0 || o.slotDuration < 500*time.Millisecond {
		return errors.New("need --slots > 0, --slots-per-epoch > 0 and --slot-duration >= 500ms")
	}
	sim, beaconURL, stopSim, err := startSim(l, o)
	if err != nil {
		return err
	}
	defer stopSim()

	runDir := filepath.Join(o.clusterDir, "runs", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	fmt.Fprintf(out, "Simulated beacon node at %s; node logs and data in %s\n", beaconURL, runDir)
	nodes, err := startNodes(l, o, beaconURL, runDir)
	defer stopNodes(nodes)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, nodes, o.readyTimeout); err != nil {
		return err
	}
	genesis, err := setGenesis(ctx, sim, nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "All %d nodes ready; genesis at %s, %d slots of %s\n", len(nodes), genesis.Format(time.TimeOnly), o.slots, o.slotDuration)

	leaderLosses, err := drive(ctx, out, sim, nodes, genesis, o, plan)
	if err != nil {
		return err
	}
	scrapeRefusals(nodes)
	stopNodes(nodes)
	return report(out, sim.Stats(), nodes, o, leaderLosses, len(l.Validators))
}

func startSim(l *lock.Lock, o runLocalOpts) (*simbeacon.Sim, string, func(), error) {
	sim, err := newSim(l, o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, fmt.Errorf("simulated beacon node listener: %w", err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop := func() { _ = srv.Close(); sim.Close() }
	return sim, "http://" + ln.Addr().String(), stop, nil
}

func startNodes(l *lock.Lock, o runLocalOpts, beaconURL, runDir string) ([]*localNode, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	var nodes []*localNode
	for i := 1; i <= len(l.Operators); i++ {
		n := &localNode{
			index: i, logPath: filepath.Join(runDir, node.NodeDirName(i)+".log"),
			monitoring: fmt.Sprintf("127.0.0.1:%d", o.monitoringBase+i-1), done: make(chan struct{}),
		}
		logFile, err := os.Create(n.logPath)
		if err != nil {
			return nodes, fmt.Errorf("node log: %w", err)
		}
		n.cmd = exec.Command(exe, "run",
			"--node-dir", filepath.Join(o.clusterDir, node.NodeDirName(i)),
			"--data-dir", filepath.Join(runDir, node.NodeDirName(i)),
			"--beacon-url", beaconURL,
			"--monitoring-addr", n.monitoring,
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", o.adminBase+i-1),
			"--log-level", o.logLevel)
		n.cmd.Args = append(n.cmd.Args, o.nodeArgs...)
		n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
		if err := n.cmd.Start(); err != nil {
			logFile.Close()
			return nodes, fmt.Errorf("start node %d: %w", i, err)
		}
		go func() { _ = n.cmd.Wait(); logFile.Close(); close(n.done) }()
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// stopNodes asks every live node to stop and kills those that do not within 10 s. Idempotent.
func stopNodes(nodes []*localNode) {
	for _, n := range nodes {
		select {
		case <-n.done:
		default:
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// setGenesis sets the simulated chain's genesis a little after now, on a whole second (the API's
// genesis time is in seconds), and returns once every node has connected to the chain. A node
// connects only once the genesis is known, and its slashing DB may register the validators as
// never having signed only before genesis: a node still connecting at genesis would refuse to
// sign, so that is an error (moving the genesis would leave the connected nodes on the old one).
func setGenesis(ctx context.Context, sim *simbeacon.Sim, nodes []*localNode) (time.Time, error) {
	const lead = 8 * time.Second
	genesis := time.Unix(time.Now().Add(lead).Unix()+1, 0)
	sim.SetGenesis(genesis)
	for _, n := range nodes {
		for {
			var st node.Status
			if err := getJSON("http://"+n.monitoring+"/status", &st); err == nil && st.ChainConnected {
				break
			}
			if time.Until(genesis) < 500*time.Millisecond {
				return time.Time{}, fmt.Errorf("node %d had not connected to the chain %s after the genesis was set (is the machine overloaded?); its log %s ends:\n%s",
					n.index, lead, n.logPath, tail(n.logPath, 15))
			}
			select {
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return genesis, nil
}

func waitReady(ctx context.Context, nodes []*localNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range nodes {
		for {
			select {
			case <-n.done:
				return fmt.Errorf("node %d exited during start-up (%v); its log %s ends:\n%s", n.index, n.cmd.ProcessState, n.logPath, tail(n.logPath, 15))
			default:
			}
			err := getJSON("http://"+n.monitoring+"/readyz", nil)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %d not ready after %s: %v; its log %s ends:\n%s", n.index, timeout, err, n.logPath, tail(n.logPath, 15))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// drive follows the chain until the last slot has ended, prints a line per epoch, and injects
// the planned fault. It returns the number of Raft leaders lost.
func drive(ctx context.Context, out io.Writer, sim *simbeacon.Sim, nodes []*localNode, genesis time.Time, o runLocalOpts, plan *killPlan) (int, error) {
	end := genesis.Add(time.Duration(o.slots)*o.slotDuration + o.slotDuration/4)
	leaderLosses := 0
	lastEpochPrinted := -1
	for {
		now := time.Now()
		if now.After(end) {
			return leaderLosses, nil
		}
		if now.After(genesis) {
			slot := phase0.Slot(now.Sub(genesis) / o.slotDuration)
			if plan != nil && slot >= plan.slot {
				lost, err := kill(out, nodes, plan)
				if err != nil {
					return leaderLosses, err
				}
				leaderLosses += lost
				plan = nil
			}
			epoch := int(uint64(slot) / o.slotsPerEpoch)
			if epoch > lastEpochPrinted && slot%phase0.Slot(o.slotsPerEpoch) == 1 && epoch > 0 {
				printEpoch(out, sim.Stats(), uint64(epoch-1), o.slotsPerEpoch)
				scrapeRefusals(nodes)
				lastEpochPrinted = epoch
			}
		}
		select {
		case <-ctx.Done():
			return leaderLosses, ctx.Err()
		case <-time.After(o.slotDuration / 8):
		}
	}
}

// kill carries out plan and returns 1 if the killed node was the Raft leader.
func kill(out io.Writer, nodes []*localNode, plan *killPlan) (int, error) {
	var victim *localNode
	wasLeader := false
	for _, n := range nodes {
		var st node.Status
		if n.killed || getJSON("http://"+n.monitoring+"/status", &st) != nil {
			continue
		}
		isLeader := st.RaftRole == consensus.RoleLeader
		switch {
		case plan.target == "leader" && isLeader,
			plan.target == "follower" && !isLeader,
			plan.target == node.NodeDirName(n.index):
			victim, wasLeader = n, isLeader
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		return 0, fmt.Errorf("--kill %s@%d: no live node matches", plan.target, plan.slot)
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		return 0, fmt.Errorf("kill node %d: %w", victim.index, err)
	}
	victim.killed = true
	role := "follower"
	if wasLeader {
		role = "Raft leader"
	}
	fmt.Fprintf(out, "Fault injected: killed node %d (%s) at slot %d\n", victim.index, role, plan.slot)
	if wasLeader {
		return 1, nil
	}
	return 0, nil
}

// scrapeRefusals records each live node's slashing refusals counters.
func scrapeRefusals(nodes []*localNode) {
	for _, n := range nodes {
		if n.killed {
			continue
		}
		m := map[string]float64{}
		err := scrapeMetrics(n.monitoring, func(line string) {
			if !strings.HasPrefix(line, "dvmesh_slashing_refusals_total{") {
				return
			}
			_, rest, _ := strings.Cut(line, `rule="`)
			rule, rest, _ := strings.Cut(rest, `"}`)
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				m[rule] = v
			}
		})
		if err == nil {
			n.refusals = m
		}
	}
}

// scrapeMetrics calls line for every line of a node's /metrics.
func scrapeMetrics(monitoring string, line func(string)) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + monitoring + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line(sc.Text())
	}
	return sc.Err()
}

func printEpoch(out io.Writer, st simbeacon.Stats, epoch, spe uint64) {
	var c simbeacon.Counts
	for _, s := range st.Slots {
		if uint64(s.Slot)/spe == epoch {
			c.Expected += s.Expected
			c.Correct += s.Correct
			c.Wrong += s.Wrong
			c.Missing += s.Missing
		}
	}
	fmt.Fprintf(out, "epoch %d: %d/%d attestations correct, %d wrong, %d missed\n", epoch, c.Correct, c.Expected, c.Wrong, c.Missing)
}

func report(out io.Writer, st simbeacon.Stats, nodes []*localNode, o runLocalOpts, leaderLosses, validators int) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "epoch\texpected\tcorrect\twrong\tlate\tmissed\t")
	var maxPerSlot uint64
	rows := map[uint64]*simbeacon.Counts{}
	for _, s := range st.Slots {
		if uint64(s.Slot) >= o.slots {
			continue
		}
		e := uint64(s.Slot) / o.slotsPerEpoch
		if rows[e] == nil {
			rows[e] = &simbeacon.Counts{}
		}
		r := rows[e]
		r.Expected += s.Expected
		r.Correct += s.Correct
		r.Wrong += s.Wrong
		r.Late += s.Late
		r.Missing += s.Missing
		maxPerSlot = max(maxPerSlot, s.Expected)
	}
	var total simbeacon.Counts
	for e := uint64(0); e*o.slotsPerEpoch < o.slots; e++ {
		r := rows[e]
		if r == nil {
			r = &simbeacon.Counts{}
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t\n", e, r.Expected, r.Correct, r.Wrong, r.Late, r.Missing)
		total.Expected += r.Expected
		total.Correct += r.Correct
		total.Wrong += r.Wrong
		total.Late += r.Late
		total.Missing += r.Missing
	}
	// Wrong submissions that name no slot of the run count too.
	total.Wrong = max(total.Wrong, st.Totals.Wrong)
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", total.Expected, total.Correct, total.Wrong, total.Late, total.Missing)
	tw.Flush()

	budget := uint64(leaderLosses) * maxPerSlot
	fmt.Fprintf(out, "missed attestations: %d (fault budget: %d = %d leader loss(es) x %d duties per slot)\n", total.Missing, budget, leaderLosses, maxPerSlot)
	// A leader loss may cost one slot's duties of each type: at most one per validator.
	failures := dutyTable(out, st, uint64(leaderLosses)*uint64(validators))
	for _, n := range nodes {
		var cpu time.Duration
		if ps := n.cmd.ProcessState; ps != nil {
			cpu = ps.UserTime() + ps.SystemTime()
		}
		status := "stopped"
		if n.killed {
			status = "killed"
		}
		var refused []string
		for rule, v := range n.refusals {
			refused = append(refused, fmt.Sprintf("%s=%g", rule, v))
			if rule != startupGuardRule && v > 0 {
				failures = append(failures, fmt.Sprintf("node %d: slashing protection refused %g signing(s) by rule %s", n.index, v, rule))
			}
		}
		fmt.Fprintf(out, "node %d: %s, CPU %.2fs (%.1f ms per slot), slashing refusals: %s, log %s\n", n.index, status,
			cpu.Seconds(), float64(cpu.Milliseconds())/float64(o.slots), orNone(refused), n.logPath)
	}
	if total.Wrong > 0 {
		failures = append(failures, fmt.Sprintf("%d invalid submission(s) reached the beacon node", total.Wrong))
		for _, f := range st.RecentFailures {
			fmt.Fprintf(out, "  wrong: slot %d validator %d: %s\n", f.Slot, f.ValidatorIndex, f.Reason)
		}
	}
	if total.Missing > budget {
		failures = append(failures, fmt.Sprintf("%d missed duties exceed the fault budget of %d", total.Missing, budget))
	}
	if len(failures) > 0 {
		return fmt.Errorf("run failed:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Fprintln(out, "PASS: every duty within the fault budget, no invalid signature, no slashing refusal")
	return nil
}

// dutyTable prints every duty type's outcomes as the simulated beacon node judged them, counted
// per validator, and returns the failures: any invalid submission, or missed duties of a type
// beyond budget.
func dutyTable(out io.Writer, st simbeacon.Stats, budget uint64) []string {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "duty type\texpected\tsubmitted\tvalid\tinvalid\tmissed\t")
	var failures []string
	for _, typ := range simbeacon.DutyTypes {
		c := st.Duties[typ]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", typ, c.Expected, c.Submitted, c.Valid, c.Invalid, c.Missed)
		if c.Invalid > 0 {
			failures = append(failures, fmt.Sprintf("%d invalid %s submission(s) reached the beacon node", c.Invalid, typ))
		}
		if typ != simbeacon.DutyAttester && c.Missed > budget {
			failures = append(failures, fmt.Sprintf("%d missed %s duties exceed the fault budget of %d", c.Missed, typ, budget))
		}
	}
	tw.Flush()
	return failures
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// newSim makes a simulated beacon node whose validators are the lock's.
func newSim(l *lock.Lock, o runLocalOpts, log *slog.Logger) (*simbeacon.Sim, error) {
	vals := l.GroupPubkeys()
	gfv, err := lock.DecodeHex(l.GenesisForkVersion, 4)
	if err != nil {
		return nil, fmt.Errorf("lock genesis fork version: %w", err)
	}
	var version phase0.Version
	copy(version[:], gfv)
	sim, err := simbeacon.New(simbeacon.Config{
		SlotDuration: o.slotDuration, SlotsPerEpoch: o.slotsPerEpoch, Validators: vals, GenesisForkVersion: version, Logger: log,
		NetworkSize: o.networkSize, BuilderBlocks: o.builderBlocks,
	})
	if err != nil {
		return nil, fmt.Errorf("simulated beacon node: %w", err)
	}
	return sim, nil
}
