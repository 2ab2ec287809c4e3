package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
	"github.com/dvmesh/dvmesh/test/simbeacon"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

type benchOpts struct {
	nodes, validators int
	slots             uint64
	slotSeconds       float64
	slotsPerEpoch     uint64
	networkSize       uint64
	dir               string
	monitoringBase    int
	p2pBase           int
	cpuProfile        string
	heapProfiles      string
	keepEpochs        uint64
}

func newBenchCmd() *cobra.Command {
	var o benchOpts
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a real local cluster: per-duty latency, CPU, memory, success",
		Long: `bench creates a cluster of --validators validators (insecure fast keystores: a benchmark
only), starts a simulated beacon node with a mainnet-like network of --network-size validators
(so committee sizes, aggregator odds and sync committee seats are realistic) and --nodes
'dvmesh run' processes on 127.0.0.1 (real BLS, real Raft and slashing-DB fsyncs), runs --slots
slots and prints per duty type: duties, success rate (as the simulated beacon node verified
them), latency from the duty's start (after its planned wait) to the first submission call in
the cluster (p50, p99, max; one sample per slot and duty type; the simulated beacon node's
answer time is not counted, the step table shows it), where that time goes per step, and per node: CPU seconds per slot,
peak RSS and the Go heap live after GC (first and last sample, and the maximum).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 4, "cluster nodes (threshold: ceil(2n/3))")
	f.IntVar(&o.validators, "validators", 100, "distributed validators")
	f.Uint64Var(&o.slots, "slots", 32, "slots to run")
	f.Float64Var(&o.slotSeconds, "slot-seconds", 12, "slot duration in seconds")
	f.Uint64Var(&o.slotsPerEpoch, "slots-per-epoch", 32, "slots per epoch")
	f.Uint64Var(&o.networkSize, "network-size", 500_000, "validators of the simulated network (the cluster's are part of it)")
	f.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary directory, removed afterwards)")
	f.IntVar(&o.monitoringBase, "monitoring-base-port", 3720, "monitoring port of node 1; node i uses base+i-1")
	f.IntVar(&o.p2pBase, "p2p-base-port", 3710, "libp2p port of node 1; node i uses base+i-1")
	f.Uint64Var(&o.keepEpochs, "slashing-keep-epochs", 0, "the nodes' --slashing-keep-epochs (0: their default); a small value makes pruning run during the bench (every keep/4 epochs)")
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of node 1 over the middle of the run to this file (go tool pprof -top FILE)")
	f.StringVar(&o.heapProfiles, "heap-profiles", "", "write every node's heap profile (after a GC) to this directory at each heap sample, as node<i>-slot<s>.pb.gz: go tool pprof -base an early one a late one shows what grew")
	return cmd
}

func runBench(ctx context.Context, out io.Writer, o benchOpts) error {
	if o.nodes < 3 || o.validators < 1 || o.slots < 2 || o.slotSeconds < 0.5 || o.slotsPerEpoch == 0 {
		return errors.New("need --nodes >= 3, --validators >= 1, --slots >= 2, --slot-seconds >= 0.5 and --slots-per-epoch > 0")
	}
	if o.networkSize < uint64(o.validators) {
		return fmt.Errorf("--network-size %d is below --validators %d", o.networkSize, o.validators)
	}
	dir := o.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "dvmesh-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	threshold := (2*o.nodes + 2) / 3
	clusterDir := filepath.Join(dir, "cluster")
	start := time.Now()
	fmt.Fprintf(out, "Creating a %d-of-%d cluster of %d validators in %s (insecure benchmark keystores)...\n", threshold, o.nodes, o.validators, clusterDir)
	l, err := node.CreateCluster(node.CreateOptions{Name: "dvmesh-bench", Nodes: o.nodes, Threshold: threshold, Validators: o.validators,
		OutDir: clusterDir, Host: "127.0.0.1", BasePort: o.p2pBase, Network: "devnet", GenesisForkVersion: "0x10000000",
		KDF: signing.KDFInsecure, Proposals: &lock.ProposalSettings{FeeRecipient: localFeeRecipient, GasLimit: 60_000_000,
			RegistrationTimestamp: uint64(time.Now().Unix())}})
	if err != nil {
		return fmt.Errorf("create cluster: %w", err)
	}
	fmt.Fprintf(out, "Cluster created in %s\n", time.Since(start).Round(time.Millisecond))
	slotDur := time.Duration(o.slotSeconds * float64(time.Second))
	lo := runLocalOpts{clusterDir: clusterDir, slots: o.slots, slotDuration: slotDur, slotsPerEpoch: o.slotsPerEpoch,
		monitoringBase: o.monitoringBase, adminBase: o.monitoringBase + 10, logLevel: "warn", readyTimeout: 5 * time.Minute, networkSize: o.networkSize}
	if o.keepEpochs > 0 {
		lo.nodeArgs = []string{"--slashing-keep-epochs", fmt.Sprint(o.keepEpochs)}
	}
	sim, beaconURL, stopSim, err := startSim(l, lo)
	if err != nil {
		return err
	}
	defer stopSim()
	runDir := filepath.Join(dir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	nodes, err := startNodes(l, lo, beaconURL, runDir)
	defer stopNodes(nodes)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, nodes, lo.readyTimeout); err != nil {
		return err
	}
	genesis, err := setGenesis(ctx, sim, nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d nodes ready; network of %d validators; genesis at %s; %d slots of %s\n", len(nodes), o.networkSize,
		genesis.Format(time.TimeOnly), o.slots, slotDur)
	time.Sleep(time.Until(genesis))
	cpu0 := make([]float64, len(nodes))
	for i, n := range nodes {
		cpu0[i], _ = procCPUSeconds(n.cmd.Process.Pid)
	}
	samples := &benchSamples{slots: o.slots, lat: map[string]map[uint64]float64{}, steps: map[string]map[uint64]map[string]float64{}}
	heaps := make([][]float64, len(nodes))
	end := genesis.Add(time.Duration(o.slots)*slotDur + slotDur)
	if o.cpuProfile != "" {
		// Profile the middle half of the run, away from start-up.
		go profileNode(out, nodes[0], genesis.Add(time.Duration(o.slots)*slotDur/4), time.Duration(o.slots)*slotDur/2, o.cpuProfile)
	}
	if o.heapProfiles != "" {
		if err := os.MkdirAll(o.heapProfiles, 0o755); err != nil {
			return fmt.Errorf("heap profile directory: %w", err)
		}
	}
	sample := func() {
		slot := uint64(max(0, time.Since(genesis)/slotDur))
		for i, n := range nodes {
			samples.collect(n)
			if h, err := scrapeGauge(n.monitoring, "dvmesh_go_heap_live_bytes"); err == nil {
				heaps[i] = append(heaps[i], h)
			}
			if o.heapProfiles != "" {
				path := filepath.Join(o.heapProfiles, fmt.Sprintf("node%d-slot%04d.pb.gz", n.index, slot))
				if err := fetchToFile(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", n.monitoring), path, 30*time.Second); err != nil {
					fmt.Fprintf(out, "heap profile: %v\n", err)
				}
			}
		}
	}
	// Sample in the middle of a slot, between the attestations (after its start) and the
	// aggregations (at two thirds): scraping at a slot's start would compete with its duties.
	next := genesis.Add(slotDur * 9 / 20)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Until(next), time.Until(end))):
		}
		// The trackers keep 64 slots: collect well within that.
		next = next.Add(heapEverySlots * slotDur)
		sample()
	}
	sample()
	cpu1 := make([]float64, len(nodes))
	rss := make([]float64, len(nodes))
	for i, n := range nodes {
		cpu1[i], _ = procCPUSeconds(n.cmd.Process.Pid)
		rss[i], _ = procPeakRSS(n.cmd.Process.Pid)
	}
	st := sim.Stats()
	stopNodes(nodes)
	return benchReport(out, o, st, samples, cpu0, cpu1, rss, heaps, slotDur)
}

// heapEverySlots is how often the bench samples the tracker records and the heap (the trackers
// keep 64 slots).
const heapEverySlots = 16

// benchSamples are per duty type and slot the cluster's fastest start-to-submission latency,
// and that record's step times (ms after its start), which show where the latency goes.
type benchSamples struct {
	slots uint64                                   // only slots before this count
	lat   map[string]map[uint64]float64            // type -> slot -> ms
	steps map[string]map[uint64]map[string]float64 // type -> slot -> step -> ms after start
}

func (b *benchSamples) collect(n *localNode) {
	var recs []node.DutyRecord
	if err := getJSON("http://"+n.monitoring+"/duties", &recs); err != nil {
		return
	}
	for _, r := range recs {
		if r.Node != uint64(n.index) || r.Slot >= b.slots {
			continue
		}
		var start, sub int64 = -1, -1
		for _, s := range r.Steps {
			switch s.Step {
			case node.StepStart:
				start = s.AtMs
			case node.StepSubmitting:
				if sub < 0 { // the first submission call of the duty
					sub = s.AtMs
				}
			}
		}
		if start < 0 || sub < 0 {
			continue
		}
		m := b.lat[r.Type]
		if m == nil {
			m = map[uint64]float64{}
			b.lat[r.Type] = m
		}
		ms := float64(sub - start)
		if old, ok := m[r.Slot]; !ok || ms < old {
			m[r.Slot] = ms
			if b.steps[r.Type] == nil {
				b.steps[r.Type] = map[uint64]map[string]float64{}
			}
			at := map[string]float64{}
			for _, s := range r.Steps {
				if _, seen := at[s.Step]; !seen && s.AtMs >= start {
					at[s.Step] = float64(s.AtMs - start)
				}
			}
			b.steps[r.Type][r.Slot] = at
		}
	}
}

// printSteps prints per duty type the median time after the duty's start at which the fastest
// node's record reached each step: where the latency of the table above goes.
func (b *benchSamples) printSteps(out io.Writer, types []string) {
	fmt.Fprintln(out, "\nwhere the time goes: median ms after the duty's start at which the fastest node reached each step")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "duty\t"+strings.Join(benchStepOrder, "\t")+"\t")
	for _, t := range types {
		if len(b.steps[t]) == 0 {
			continue
		}
		row := []string{t}
		for _, step := range benchStepOrder {
			var v []float64
			for _, at := range b.steps[t] {
				if ms, ok := at[step]; ok {
					v = append(v, ms)
				}
			}
			sort.Float64s(v)
			if len(v) == 0 {
				row = append(row, "-")
			} else {
				row = append(row, fmt.Sprintf("%.0f", percentile(v, 0.5)))
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

// benchStepOrder is the order of a duty's tracker steps in the bench's tables.
var benchStepOrder = []string{node.StepFetch, node.StepConsensus, node.StepValidate, node.StepRecorded, node.StepSent, node.StepSubmitting, node.StepSubmitted}

// printSlowest prints the n slowest samples of duty type t with their slot's place in the epoch
// and their step times: what the tail (p99) is made of.
func (b *benchSamples) printSlowest(out io.Writer, t string, n int, slotsPerEpoch uint64) {
	slots := make([]uint64, 0, len(b.lat[t]))
	for slot := range b.lat[t] {
		slots = append(slots, slot)
	}
	if len(slots) == 0 {
		return
	}
	sort.Slice(slots, func(i, j int) bool { return b.lat[t][slots[i]] > b.lat[t][slots[j]] })
	fmt.Fprintf(out, "\nslowest %s samples: ms after the duty's start at which the fastest node reached each step\n", t)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "slot\tin epoch\tlatency\t"+strings.Join(benchStepOrder, "\t")+"\t")
	for _, slot := range slots[:min(n, len(slots))] {
		row := []string{fmt.Sprint(slot), fmt.Sprint(slot % max(slotsPerEpoch, 1)), fmt.Sprintf("%.0f", b.lat[t][slot])}
		for _, step := range benchStepOrder {
			if ms, ok := b.steps[t][slot][step]; ok {
				row = append(row, fmt.Sprintf("%.0f", ms))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func benchReport(out io.Writer, o benchOpts, st simbeacon.Stats, s *benchSamples, cpu0, cpu1, rss []float64, heaps [][]float64, slotDur time.Duration) error {
	fmt.Fprintf(out, "\ndvmesh bench --nodes %d --validators %d --slots %d --slot-seconds %g --network-size %d\n",
		o.nodes, o.validators, o.slots, o.slotSeconds, o.networkSize)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "duty\tvalid\tinvalid\tmissed\tsuccess\tsamples\tp50 ms\tp99 ms\tmax ms\t")
	types := []string{"attester", "aggregator", "proposer", "sync_message", "sync_contribution"}
	var failures []string
	for _, t := range types {
		c := st.Duties[t]
		lat := make([]float64, 0, len(s.lat[t]))
		for _, v := range s.lat[t] {
			lat = append(lat, v)
		}
		sort.Float64s(lat)
		// Success over the duties whose slot ended (missed duties are counted then).
		rate := "-"
		if ended := c.Valid + c.Missed; ended > 0 {
			rate = fmt.Sprintf("%.1f%%", 100*float64(c.Valid)/float64(ended))
		}
		mx := math.NaN()
		if len(lat) > 0 {
			mx = lat[len(lat)-1]
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%.0f\t%.0f\t%.0f\t\n", t, c.Valid, c.Invalid, c.Missed, rate, len(lat),
			percentile(lat, 0.5), percentile(lat, 0.99), mx)
		if c.Invalid > 0 {
			failures = append(failures, fmt.Sprintf("%d invalid %s submission(s)", c.Invalid, t))
		}
	}
	tw.Flush()
	s.printSteps(out, types)
	s.printSlowest(out, "attester", 6, o.slotsPerEpoch)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tCPU s/slot\tCPU % of slot\tpeak RSS MiB\theap live MiB first\tlast\tmax\t")
	for i := range cpu0 {
		perSlot := (cpu1[i] - cpu0[i]) / float64(o.slots)
		h := heaps[i]
		first, last, mx := math.NaN(), math.NaN(), math.NaN()
		if len(h) > 0 {
			first, last, mx = h[0], h[len(h)-1], slices.Max(h)
		}
		fmt.Fprintf(tw, "%d\t%.3f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t\n", i+1, perSlot, 100*perSlot/slotDur.Seconds(), rss[i]/(1<<20),
			first/(1<<20), last/(1<<20), mx/(1<<20))
	}
	tw.Flush()
	// The series shows whether the heap is flat over the run, not just its ends.
	fmt.Fprintf(out, "\nGo heap live after GC, MiB, every %d slots:\n", heapEverySlots)
	for i, h := range heaps {
		parts := make([]string, len(h))
		for j, v := range h {
			parts[j] = fmt.Sprintf("%.1f", v/(1<<20))
		}
		fmt.Fprintf(out, "  node %d: %s\n", i+1, strings.Join(parts, " "))
	}
	if len(failures) > 0 {
		return fmt.Errorf("bench failed: %s", strings.Join(failures, "; "))
	}
	return nil
}

// procCPUSeconds is a process's user+system CPU time from /proc/PID/stat.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clockTicks = 100 // USER_HZ on Linux
	return (ut + st) / clockTicks, nil
}

// procPeakRSS is a process's peak resident set size in bytes (VmHWM).
func procPeakRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// scrapeGauge reads one unlabelled metric from a node's /metrics.
func scrapeGauge(monitoring, name string) (float64, error) {
	var v float64
	found := false
	err := scrapeMetrics(monitoring, func(line string) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				v, found = f, true
			}
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("metric %s not found", name)
	}
	return v, err
}

// profileNode writes a CPU profile of n taken from at for d.
func profileNode(out io.Writer, n *localNode, at time.Time, d time.Duration, path string) {
	time.Sleep(time.Until(at))
	secs := max(1, int(d.Seconds()))
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.monitoring, secs)
	if err := fetchToFile(url, path, d+30*time.Second); err != nil {
		fmt.Fprintf(out, "CPU profile: %v\n", err)
		return
	}
	fmt.Fprintf(out, "CPU profile of node %d over %ds written to %s\n", n.index, secs, path)
}

// fetchToFile writes the body of a GET of url to path.
func fetchToFile(url, path string, timeout time.Duration) error {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
