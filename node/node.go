// Package node runs one dvmesh cluster node: it schedules duties from its beacon node, agrees on
// each duty's value with its peers (consensus), checks and records it in its slashing-protection
// DB, signs with its key share, exchanges partial signatures, and submits recovered signatures.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/slashingdb"
)

// Config is one node's configuration. Paths left empty default to files in NodeDir.
type Config struct {
	NodeDir    string // folder written by create-cluster for this node
	LockFile   string
	P2PKeyFile string
	KeysDir    string
	DataDir    string // Raft log, slashing DB; locked against a second process
	// BeaconURLs are this node's beacon nodes, ideally of different clients: reads go to the
	// healthiest with a hedged request to the next, submissions to all (see MultiBeacon).
	BeaconURLs     []string
	P2PListen      string // multiaddr; default: this operator's address in the lock
	MonitoringAddr string // host:port for /metrics, /readyz, /status; empty disables
	// AdminAddr is the loopback host:port of the admin endpoint `dvmesh exit` talks to; empty
	// disables it.
	AdminAddr     string
	BeaconTimeout time.Duration
	// DoppelgangerEpochs is how many epochs a cold start watches for another signer before
	// signing; 0 means DefaultDoppelgangerEpochs, negative disables the check.
	DoppelgangerEpochs int
	// SlashingKeepEpochs is how many epochs of signing history the slashing DB keeps in full;
	// older records are pruned (watermarks raised first). 0 means DefaultSlashingKeepEpochs.
	SlashingKeepEpochs uint64
	Logger             *slog.Logger
	// Beacon replaces the HTTP beacon client when set (tests, fault injection).
	Beacon Beacon
}

func (c *Config) setDefaults() error {
	if c.LockFile == "" && c.NodeDir != "" {
		c.LockFile = filepath.Join(c.NodeDir, LockFileName)
	}
	if c.P2PKeyFile == "" && c.NodeDir != "" {
		c.P2PKeyFile = filepath.Join(c.NodeDir, P2PKeyFileName)
	}
	if c.KeysDir == "" && c.NodeDir != "" {
		c.KeysDir = filepath.Join(c.NodeDir, KeysDirName)
	}
	if c.DataDir == "" && c.NodeDir != "" {
		c.DataDir = filepath.Join(c.NodeDir, "data")
	}
	if c.BeaconTimeout == 0 {
		c.BeaconTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SlashingKeepEpochs == 0 {
		c.SlashingKeepEpochs = DefaultSlashingKeepEpochs
	}
	if c.DoppelgangerEpochs == 0 {
		c.DoppelgangerEpochs = DefaultDoppelgangerEpochs
	}
	for _, p := range []struct{ name, value, fix string }{
		{"lock-file", c.LockFile, "point it at the cluster-lock.json of this cluster"},
		{"p2p-key", c.P2PKeyFile, "point it at this operator's p2p-key"},
		{"keys-dir", c.KeysDir, "point it at the folder with keystore-N.json and password.txt"},
	} {
		if p.value == "" {
			return fmt.Errorf("setting %s is not set: %s (or set node-dir)", p.name, p.fix)
		}
		if _, err := os.Stat(p.value); err != nil {
			return fmt.Errorf("setting %s: %v: %s", p.name, err, p.fix)
		}
	}
	if c.DataDir == "" {
		return errors.New("setting data-dir is not set: give the folder for the Raft log and slashing DB (or set node-dir)")
	}
	if c.Beacon == nil {
		if len(c.BeaconURLs) == 0 {
			return errors.New("setting beacon-url is not set: give the beacon node's REST API URL, e.g. http://127.0.0.1:5052 (repeat it, or comma-separate, for redundant beacon nodes)")
		}
		for _, raw := range c.BeaconURLs {
			if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("setting beacon-url %q is not an http(s) URL: use e.g. http://127.0.0.1:5052", displayURL(raw))
			}
		}
	}
	if c.P2PListen != "" {
		if _, err := ma.NewMultiaddr(c.P2PListen); err != nil {
			return fmt.Errorf("setting p2p-listen %q: %v: use a multiaddr such as /ip4/0.0.0.0/tcp/3610", c.P2PListen, err)
		}
	}
	if c.MonitoringAddr != "" {
		if _, _, err := net.SplitHostPort(c.MonitoringAddr); err != nil {
			return fmt.Errorf("setting monitoring-addr %q: %v: use host:port such as 127.0.0.1:3620, or empty to disable", c.MonitoringAddr, err)
		}
	}
	if c.AdminAddr != "" {
		host, _, err := net.SplitHostPort(c.AdminAddr)
		if err != nil {
			return fmt.Errorf("setting admin-addr %q: %v: use host:port such as 127.0.0.1:3630, or empty to disable", c.AdminAddr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("setting admin-addr %q: the admin endpoint has no authentication and must listen on a loopback address such as 127.0.0.1", c.AdminAddr)
		}
	}
	if c.BeaconTimeout < 0 {
		return fmt.Errorf("setting beacon-timeout %s is negative", c.BeaconTimeout)
	}
	return nil
}

// DefaultSlashingKeepEpochs keeps about 27 hours of mainnet history in full; watermarks cover
// everything older. Pruning runs every pruneEveryEpochs epochs, or every quarter of the kept
// history when that is shorter (so the history never exceeds 1.25 times what is kept).
const (
	DefaultSlashingKeepEpochs = 256
	pruneEveryEpochs          = 64
)

// pruneDue reports whether the slashing DB is pruned in epoch.
func pruneDue(epoch phase0.Epoch, keepEpochs uint64) bool {
	every := max(1, min(pruneEveryEpochs, keepEpochs/4))
	return epoch > 0 && uint64(epoch)%every == 0
}

// Node is a running cluster node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      *Identity
	host    host.Host
	cons    *consensus.Node
	ex      *p2p.Exchange
	agg     *aggregator
	metrics *metrics
	peers   []peer.ID
	ready   chan struct{} // closed when the chain and slashing DB are ready

	mu            sync.Mutex
	beacon        Beacon
	chain         *Chain
	db            *slashingdb.DB
	indices       map[phase0.BLSPubKey]phase0.ValidatorIndex
	duties        map[phase0.Epoch]*epochDuties
	depRoots      map[phase0.Epoch][2]phase0.Root // first (previous, current) duty dependent roots seen per epoch
	heads         *headTracker
	runs          map[dutyKey]*sigRun
	selections    map[dutyKey]map[phase0.BLSPubKey]selection
	reveals       map[phase0.Slot]*randaoReveals
	started       map[dutyKey]bool
	registrations []*api.VersionedSignedValidatorRegistration // combined once, submitted every epoch
	firstSlot     atomic.Bool
	justified     atomic.Uint64 // highest justified epoch the beacon node reported

	gate          *signGate
	doppelgangers map[phase0.BLSPubKey]bool
	fatal         chan error // errors that stop the node
	dgState       string     // doppelganger decision, for /status

	tracker *tracker
	ring    *dutyRing // per-validator outcomes of recent duties, for the status page

	beacons *MultiBeacon // the HTTP beacon nodes, unless Config.Beacon replaced them
	dialled Beacon       // the beacon client from start-up on; n.beacon is set once the chain is connected

	exits  *exitBook // voluntary exits being consented to
	guard  *p2p.InstanceGuard
	halted atomic.Pointer[string] // why this node stopped signing, if it did
}

// Run loads the node's identity, joins the cluster and performs duties until ctx ends. It
// returns nil after a clean shutdown.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	id, err := LoadIdentity(cfg.LockFile, cfg.P2PKeyFile, cfg.KeysDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, err := LockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	exits, err := openExitBook(cfg.DataDir)
	if err != nil {
		return err
	}

	n := &Node{
		cfg: cfg, id: id, metrics: newMetrics(), ready: make(chan struct{}),
		log:        cfg.Logger.With("node", id.ShareIndex),
		peers:      id.Lock.PeerIDs(),
		agg:        newAggregator(id.Lock.Threshold, id),
		duties:     map[phase0.Epoch]*epochDuties{},
		depRoots:   map[phase0.Epoch][2]phase0.Root{},
		heads:      newHeadTracker(),
		runs:       map[dutyKey]*sigRun{},
		selections: map[dutyKey]map[phase0.BLSPubKey]selection{},
		reveals:    map[phase0.Slot]*randaoReveals{},
		started:    map[dutyKey]bool{},
		tracker:    newTracker(id.ShareIndex), ring: newDutyRing(defaultDutyRingSize),
		exits: exits, gate: newSignGate(), doppelgangers: map[phase0.BLSPubKey]bool{}, fatal: make(chan error, 1),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		if n.beacons != nil {
			n.beacons.Wait()
		}
	}()
	b, slotDuration, err := n.dialBeacon(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	n.metrics.reg.MustRegister(newBeaconCollector(n.beaconStats))
	if err := n.startNetwork(slotDuration); err != nil {
		return err
	}
	defer n.ex.Wait() // after the host's close, which ends the streams still closing
	defer n.host.Close()
	defer func() {
		if err := n.cons.Shutdown(); err != nil {
			n.log.Warn("Raft shutdown", "err", err)
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait
	wg.Add(3)
	go func() { defer wg.Done(); p2p.KeepConnected(ctx, n.host, n.peers, time.Second, n.log) }()
	go func() { defer wg.Done(); n.observe(ctx) }()
	go func() { defer wg.Done(); n.guard.Run(ctx, 5*time.Second) }()
	if cfg.MonitoringAddr != "" {
		srv, err := n.serveMonitoring(cfg.MonitoringAddr)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if cfg.AdminAddr != "" {
		srv, err := n.serveAdmin(ctx, cfg.AdminAddr)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	n.log.Info("Node started", "peer", id.PeerID.String(), "share_index", id.ShareIndex, "instance", n.guard.ID(),
		"validators", len(id.Shares), "threshold", id.Lock.Threshold, "operators", len(id.Lock.Operators))

	if err := n.connectChain(ctx, b); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer n.db.Close()
	close(n.ready)
	n.startDoppelganger(ctx, &wg)
	err = n.schedule(ctx, &wg)
	n.log.Info("Node stopping", "err", err)
	return err
}

// startNetwork starts the libp2p host, the Raft group over it and the partial-signature exchange.
func (n *Node) startNetwork(slotDuration time.Duration) error {
	me := n.id.Lock.Operators[n.id.ShareIndex-1]
	listen := n.cfg.P2PListen
	if listen == "" {
		listen = me.Address
	}
	laddr, err := ma.NewMultiaddr(listen)
	if err != nil {
		return fmt.Errorf("config: p2p listen address %q: %w", listen, err)
	}
	var peers []p2p.Peer
	for i, op := range n.id.Lock.Operators {
		a, _ := ma.NewMultiaddr(op.Address) // validated on load
		peers = append(peers, p2p.Peer{ID: n.peers[i], Addr: a})
	}
	n.host, err = p2p.NewHost(n.id.P2PKey, laddr, peers)
	if err != nil {
		return err
	}
	trans, err := consensus.NewLibp2pTransport(n.host, 2*time.Second, n.log.With("component", "raft"))
	if err != nil {
		n.host.Close()
		return err
	}
	var servers []raft.Server
	for _, p := range n.peers {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.String()), Address: raft.ServerAddress(p.String())})
	}
	n.cons, err = consensus.New(consensus.Config{
		ID: raft.ServerID(n.id.PeerID.String()), Peers: servers, DataDir: filepath.Join(n.cfg.DataDir, "raft"),
		Transport: trans, SlotDuration: slotDuration, Logger: n.log.With("component", "raft"),
	})
	if err != nil {
		n.host.Close()
		return fmt.Errorf("start consensus: %w", err)
	}
	n.ex = p2p.NewExchange(n.host, n.peers, 2*time.Second, n.onPartials, n.log.With("component", "parsigex"))
	n.guard = p2p.NewInstanceGuard(n.host, 2*time.Second, n.onDuplicate, n.log.With("component", "instance"))
	n.serveDoppelganger()
	n.serveTracker()
	n.serveExits()
	return nil
}

// onDuplicate halts this node for good: another process runs with the same identity (and so the
// same key shares). Both copies are told and both stop signing and leave Raft; which one should
// keep running is the operator's call, not a race's.
func (n *Node) onDuplicate(d p2p.DuplicateNotice) {
	reason := fmt.Sprintf("another process runs this node's identity %s (instances %v, reported by peer %s): "+
		"this copy stopped signing and left Raft; stop one copy and restart the other", d.Peer, d.Instances, d.Reporter)
	if !n.halted.CompareAndSwap(nil, &reason) {
		return
	}
	n.metrics.halted.Set(1)
	n.log.Error("DUPLICATE INSTANCE: signing halted", "reason", reason, "instance", n.guard.ID())
	go func() {
		if err := n.cons.Shutdown(); err != nil {
			n.log.Warn("Raft shutdown after duplicate detection", "err", err)
		}
	}()
}

// haltedReason returns why signing is halted, or "".
func (n *Node) haltedReason() string {
	if r := n.halted.Load(); r != nil {
		return *r
	}
	return ""
}

// dialBeacon connects to the beacon node and reads the chain's slot duration, which the spec
// serves before genesis, so that Raft is scaled to the slot before the chain starts.
func (n *Node) dialBeacon(ctx context.Context) (Beacon, time.Duration, error) {
	b := n.cfg.Beacon
	if b == nil {
		mb, err := NewMultiBeacon(ctx, n.cfg.BeaconURLs, n.cfg.BeaconTimeout, n.log.With("component", "beacon"))
		if err != nil {
			return nil, 0, err
		}
		n.mu.Lock()
		n.beacons = mb
		n.mu.Unlock()
		b = mb
	}
	n.mu.Lock()
	n.dialled = b
	n.mu.Unlock()
	logged := false
	for {
		d, err := b.SlotDuration(ctx)
		if err == nil {
			return b, d, nil
		}
		if !logged {
			n.log.Info("Waiting for the beacon node", "beacon", n.beaconNames(), "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// beaconNames is the configured beacon nodes, without credentials, for logs and errors.
func (n *Node) beaconNames() string {
	if n.cfg.Beacon != nil && len(n.cfg.BeaconURLs) == 0 {
		return "(in-process beacon client)"
	}
	names := make([]string, len(n.cfg.BeaconURLs))
	for i, u := range n.cfg.BeaconURLs {
		names[i] = displayURL(u)
	}
	return strings.Join(names, ", ")
}

// connectChain waits for the chain's genesis, checks the network, opens the slashing DB bound to
// the chain and raises its start-up guard, and finds the validators' indices.
func (n *Node) connectChain(ctx context.Context, b Beacon) error {
	var chain *Chain
	logged := false
	for {
		var err error
		if chain, err = b.Chain(ctx); err == nil {
			break
		}
		if !logged {
			n.log.Info("Waiting for chain genesis", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if want := n.id.Lock.GenesisForkVersion; want != "" && want != fmt.Sprintf("%#x", chain.GenesisForkVersion[:]) {
		return fmt.Errorf("beacon node %s is on the network with genesis fork version %#x, the cluster lock's is %s",
			n.beaconNames(), chain.GenesisForkVersion[:], want)
	}
	if want := n.id.Lock.GenesisValidatorsRoot; want != "" && !strings.EqualFold(want, fmt.Sprintf("%#x", chain.GenesisValidatorsRoot[:])) {
		return fmt.Errorf("beacon node %s is on the chain with genesis validators root %#x, the cluster lock's (%s) is %s",
			n.beaconNames(), chain.GenesisValidatorsRoot[:], n.id.Lock.Network, want)
	}
	if err := checkForkSchedule(n.id.Lock.Network, chain, n.beaconNames()); err != nil {
		return err
	}
	if err := checkClock(ctx, b, chain, time.Now()); err != nil {
		return err
	}
	db, err := slashingdb.Open(filepath.Join(n.cfg.DataDir, SlashingDBFile), chain.GenesisValidatorsRoot)
	if err != nil {
		return fmt.Errorf("slashing DB: %w", err)
	}
	if _, started := chain.SlotAt(time.Now()); !started {
		// Before genesis nothing can have been signed: these validators start with an empty history.
		if err := db.Register(n.id.Pubkeys()); err != nil {
			db.Close()
			return fmt.Errorf("slashing DB: %w", err)
		}
	} else if unknown := db.Unknown(n.id.Pubkeys()); len(unknown) > 0 {
		n.log.Error("The slashing DB has never seen these validators: they will not be signed for until the operator runs "+
			"'dvmesh slashing init' (keys that never signed elsewhere) or imports their history with 'dvmesh slashing import'",
			"validators", len(unknown), "first", fmt.Sprintf("%#x", unknown[0]))
	}
	// Start-up guard: never sign at or below the current slot / current epoch's target, so
	// history lost with an old or wiped DB cannot turn into a double vote.
	if cur, started := chain.SlotAt(time.Now()); started {
		if err := db.RaiseStartupGuard(n.id.Pubkeys(), chain.EpochOf(cur), cur); err != nil {
			db.Close()
			return fmt.Errorf("slashing DB start-up guard: %w", err)
		}
		n.log.Info("Start-up guard raised: no signing at or below the current slot and epoch", "slot", cur, "epoch", chain.EpochOf(cur))
	}
	var indices map[phase0.BLSPubKey]phase0.ValidatorIndex
	for {
		indices, err = b.ValidatorIndices(ctx, n.id.Pubkeys())
		if err == nil {
			break
		}
		n.log.Warn("Validator indices not available yet", "err", err)
		select {
		case <-ctx.Done():
			db.Close()
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	for _, pk := range n.id.Pubkeys() {
		if _, ok := indices[pk]; !ok {
			n.log.Warn("Validator unknown to the beacon node; it gets no duties", "pubkey", fmt.Sprintf("%#x", pk))
		}
	}
	n.mu.Lock()
	n.beacon, n.chain, n.db, n.indices = b, chain, db, indices
	n.mu.Unlock()
	n.log.Info("Chain connected", "genesis", chain.GenesisTime.UTC().Format(time.RFC3339),
		"slot_duration", chain.SlotDuration, "slots_per_epoch", chain.SlotsPerEpoch, "validators_known", len(indices))
	return nil
}

// checkClock refuses to run when this machine's clock and the beacon node's head disagree by
// more than an epoch: one of them is wrong, and signing on a wrong clock either misses every
// duty or signs for slots that are not current.
func checkClock(ctx context.Context, b Beacon, chain *Chain, now time.Time) error {
	cur, started := chain.SlotAt(now)
	if !started {
		return nil
	}
	head, err := b.HeadSlot(ctx)
	if err != nil {
		return fmt.Errorf("clock check: %w", err)
	}
	diff := int64(cur) - int64(head)
	if diff > int64(chain.SlotsPerEpoch) || -diff > int64(chain.SlotsPerEpoch) {
		return fmt.Errorf("this machine's clock says slot %d but the beacon node's head is slot %d (%d slots apart, more than an epoch): "+
			"fix the clock (NTP) or wait until the beacon node is synced", cur, head, diff)
	}
	return nil
}

// InitSlashingDB opens (creating if needed) the slashing DB of a node's data directory for the
// chain with the given genesis validators root and marks the validators as known: the operator
// states that these keys have never signed elsewhere, or not that this node must care about.
func InitSlashingDB(dataDir string, gvr phase0.Root, pubkeys []phase0.BLSPubKey) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	db, err := slashingdb.Open(filepath.Join(dataDir, SlashingDBFile), gvr)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Register(pubkeys)
}

// observe refreshes gauges for peers and Raft, and pings every peer every few seconds, until
// ctx ends.
func (n *Node) observe(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastLeader raft.ServerID
	for tick := 0; ; tick++ {
		connected := 0
		for _, p := range n.peers {
			if p != n.host.ID() && n.host.Network().Connectedness(p) == network.Connected {
				connected++
			}
		}
		n.metrics.peersConnected.Set(float64(connected))
		role, term, leader := n.cons.State()
		n.metrics.raftTerm.Set(float64(term))
		n.metrics.raftRole.Set(map[bool]float64{true: 1}[role == consensus.RoleLeader])
		if leader != lastLeader && leader != "" {
			if lastLeader != "" {
				n.metrics.leaderChanges.Inc()
			}
			lastLeader = leader
		}
		n.metrics.applyLag.Set(float64(n.cons.ApplyLag()))
		if tick%5 == 0 {
			n.pingPeers(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pingPeers measures the round trip to every connected peer with libp2p's ping protocol.
func (n *Node) pingPeers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for i, p := range n.peers {
		if p == n.host.ID() || n.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		select {
		case res := <-ping.Ping(ctx, n.host, p):
			if res.Error == nil {
				n.metrics.peerRTT.WithLabelValues(fmt.Sprint(i + 1)).Set(res.RTT.Seconds())
			}
		case <-ctx.Done():
			return
		}
	}
}

// LockDataDir takes an exclusive lock on dir so that a second dvmesh process on the same data
// (a failover started by mistake) refuses to start instead of signing in parallel.
func LockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another dvmesh process (%v): refusing to start a second instance on the same keys", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
