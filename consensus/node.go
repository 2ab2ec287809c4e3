// Package consensus agrees on one value per duty with a single Raft group
// spanning the cluster's nodes.
//
// Every node proposes its own value for a duty (or, with ProposeLazy, builds
// one only while it leads); only the current leader appends it to the Raft
// log, and the replicated state machine keeps the FIRST committed value per
// duty, ignoring later ones. Raft tolerates crashed
// nodes, not lying ones: callers must validate decided values before acting
// on them.
package consensus

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrShutdown is returned by Propose once the node is shut down.
var ErrShutdown = errors.New("consensus node shut down")

// Duty identifies one unit of agreement for the whole cluster.
type Duty struct {
	Slot uint64
	Type string // e.g. "attester"; 1..MaxTypeLen bytes
}

// String returns "slot/type".
func (d Duty) String() string { return fmt.Sprintf("%d/%s", d.Slot, d.Type) }

// DefaultRetainSlots is used when Config.RetainSlots is zero.
const DefaultRetainSlots = 256

// Config configures a Node.
type Config struct {
	// ID is this node's server ID (the libp2p peer ID string in production).
	ID raft.ServerID
	// Peers is the whole fixed cluster including this node. Every node must
	// be given the same set: it is bootstrapped on first start.
	Peers []raft.Server
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// Transport carries Raft RPCs. New takes ownership: it is closed by
	// Shutdown, or by New if New fails.
	Transport raft.Transport
	// SlotDuration scales the Raft timeouts (see raftConfig).
	SlotDuration time.Duration
	// RetainSlots is how many slots behind the newest decided duty values are
	// kept; older duties are trimmed and can no longer be decided. It must be
	// the same on every node. Zero means DefaultRetainSlots.
	RetainSlots uint64
	// Logger receives this package's and Raft's logs; nil means slog.Default().
	Logger *slog.Logger
}

// validate checks cfg, naming the offending field.
func (cfg *Config) validate() error {
	if cfg.ID == "" {
		return errors.New("ID is empty")
	}
	if len(cfg.Peers) == 0 {
		return errors.New("Peers is empty")
	}
	seen := make(map[raft.ServerID]bool, len(cfg.Peers))
	for i, p := range cfg.Peers {
		switch {
		case p.ID == "":
			return fmt.Errorf("Peers[%d].ID is empty", i)
		case p.Address == "":
			return fmt.Errorf("Peers[%d].Address is empty", i)
		case seen[p.ID]:
			return fmt.Errorf("Peers[%d].ID %q is duplicated", i, p.ID)
		}
		seen[p.ID] = true
	}
	if !seen[cfg.ID] {
		return fmt.Errorf("ID %q is not in Peers", cfg.ID)
	}
	if cfg.DataDir == "" {
		return errors.New("DataDir is empty")
	}
	if cfg.Transport == nil {
		return errors.New("Transport is nil")
	}
	if cfg.SlotDuration <= 0 {
		return fmt.Errorf("SlotDuration %s is not positive", cfg.SlotDuration)
	}
	return nil
}

// Node is one member of the consensus Raft group. Its methods are safe for
// concurrent use.
type Node struct {
	log          *slog.Logger
	raft         *raft.Raft
	fsm          *fsm
	store        *raftboltdb.BoltStore
	obs          *raft.Observer
	applyTimeout time.Duration
	recheck      time.Duration

	done chan struct{} // closed by Shutdown
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	changed chan struct{} // closed and replaced on every leadership/state change

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg, opens the stores in cfg.DataDir, bootstraps the fixed
// cluster if there is no existing state, and starts Raft. A node restarted on
// the same DataDir resumes from its log and snapshots.
func New(cfg Config) (n *Node, err error) {
	if err := cfg.validate(); err != nil {
		if cfg.Transport != nil {
			closeTransport(cfg.Transport)
		}
		return nil, fmt.Errorf("consensus config: %w", err)
	}
	var store *raftboltdb.BoltStore
	defer func() {
		if err != nil {
			closeTransport(cfg.Transport)
			if store != nil {
				_ = store.Close()
			}
		}
	}()
	if cfg.RetainSlots == 0 {
		cfg.RetainSlots = DefaultRetainSlots
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "consensus")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create consensus data dir: %w", err)
	}
	bopts := *bbolt.DefaultOptions
	bopts.Timeout = time.Second // file lock: a second process on DataDir fails instead of hanging
	store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db"), BoltOptions: &bopts})
	if err != nil {
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return nil, fmt.Errorf("create raft log cache: %w", err)
	}
	hlog := newHCLogger(log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("open raft snapshot store: %w", err)
	}
	rcfg := raftConfig(cfg, hlog)
	if err := raft.ValidateConfig(rcfg); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}
	peers := slices.Clone(cfg.Peers)
	slices.SortFunc(peers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	err = raft.BootstrapCluster(rcfg, logs, store, snaps, cfg.Transport, raft.Configuration{Servers: peers})
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return nil, fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	f := newFSM(cfg.RetainSlots, log)
	r, err := raft.NewRaft(rcfg, f, logs, store, snaps, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n = &Node{
		log:          log,
		raft:         r,
		fsm:          f,
		store:        store,
		applyTimeout: cfg.SlotDuration,
		recheck:      rcfg.HeartbeatTimeout,
		done:         make(chan struct{}),
		changed:      make(chan struct{}),
	}
	obsCh := make(chan raft.Observation, 64)
	n.obs = raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.obs)
	n.wg.Add(1)
	go n.watchLeader(obsCh)
	return n, nil
}

// raftConfig derives Raft's settings from the slot duration. Heartbeat and
// election timeouts are 15% of a slot (300 ms at 2 s slots), clamped to
// [50 ms, 1 s] so a lost leader is replaced within ~2 heartbeat timeouts,
// well inside the first third of a slot. The leader lease is half of that, and so is
// CommitTimeout (at least Raft's default 50 ms): the leader polls every follower at that interval
// when idle, which at 5 ms cost a leader about a quarter of a core over libp2p and at 50 ms still
// half of the idle CPU of a cluster with 12-s slots. Followers learn of a duty's commit at once
// all the same: the leader appends a barrier entry as soon as a duty it proposed is decided, and
// replicating that entry carries the new commit index (see Propose).
func raftConfig(cfg Config, hlog hclog.Logger) *raft.Config {
	hb := min(max(cfg.SlotDuration*3/20, 50*time.Millisecond), time.Second)
	c := raft.DefaultConfig()
	c.LocalID = cfg.ID
	c.HeartbeatTimeout = hb
	c.ElectionTimeout = hb
	c.LeaderLeaseTimeout = hb / 2
	c.CommitTimeout = max(hb/2, 50*time.Millisecond)
	c.SnapshotThreshold = 1024
	c.TrailingLogs = 1024
	c.SnapshotInterval = max(10*cfg.SlotDuration, time.Second)
	c.Logger = hlog
	return c
}

// watchLeader turns Raft observations into broadcasts on n.changed.
func (n *Node) watchLeader(obsCh <-chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case <-obsCh:
			n.mu.Lock()
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
		}
	}
}

// leaderChanged returns a channel closed at the next leadership/state change.
func (n *Node) leaderChanged() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// State reports this node's Raft role ("follower", "candidate", "leader" or
// "shutdown"), current term and the leader it knows of ("" if none).
// RoleLeader is the role State reports for the Raft leader.
const RoleLeader = "leader"

func (n *Node) State() (role string, term uint64, leader raft.ServerID) {
	_, leader = n.raft.LeaderWithID()
	return strings.ToLower(n.raft.State().String()), n.raft.CurrentTerm(), leader
}

// Shutdown stops Raft and every goroutine of the node, then closes the
// transport and stores. It is idempotent; later calls return the first
// call's result.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.done)
		n.raft.DeregisterObserver(n.obs)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil { // also closes the transport
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		n.wg.Wait()
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		_ = c.Close()
	}
}

// CaughtUp reports whether this node knows a leader and has applied every entry it knows to be
// committed: only then does its FSM reflect what the cluster decided.
func (n *Node) CaughtUp() bool {
	if _, leader := n.raft.LeaderWithID(); leader == "" {
		return false
	}
	commit, err := strconv.ParseUint(n.raft.Stats()["commit_index"], 10, 64)
	return err == nil && n.raft.AppliedIndex() >= commit
}

// ApplyLag is how many committed entries this node has not applied yet.
func (n *Node) ApplyLag() uint64 {
	commit, err := strconv.ParseUint(n.raft.Stats()["commit_index"], 10, 64)
	if applied := n.raft.AppliedIndex(); err == nil && commit > applied {
		return commit - applied
	}
	return 0
}
