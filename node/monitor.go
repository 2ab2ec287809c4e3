package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dvmesh/dvmesh/consensus"
)

// Status is the node's state as /status reports it. Ready and NotReady are /readyz's verdict.
type Status struct {
	PeerID         string `json:"peer_id"`
	ShareIndex     uint64 `json:"share_index"`
	RaftRole       string `json:"raft_role"`
	RaftTerm       uint64 `json:"raft_term"`
	RaftLeader     string `json:"raft_leader"`
	PeersConnected int    `json:"peers_connected"`
	ChainConnected bool   `json:"chain_connected"`
	Ready          bool   `json:"ready"`
	Halted         string `json:"halted,omitempty"`
	Doppelganger   string `json:"doppelganger,omitempty"`
	// NotReady holds one line per unmet readiness condition; empty when Ready.
	NotReady []string `json:"not_ready,omitempty"`
	Instance string   `json:"instance,omitempty"` // this process's instance id (duplicate-instance guard)
	Version  string   `json:"version,omitempty"`  // build version of the binary, if known
}

// Probe timing: a readiness check asks the beacon node at most once per beaconProbeCache and
// waits at most beaconProbeTimeout for it.
const (
	beaconProbeCache   = time.Second
	beaconProbeTimeout = time.Second
)

// nodeView is one consistent-enough snapshot of everything the monitoring endpoints report.
// Its fields are exported for the status page template only.
type nodeView struct {
	PeerID     string
	ShareIndex uint64
	Instance   string
	Version    string
	Threshold  int
	Operators  int
	Peers      []peerView // every lock operator, this node included, in share-index order
	// PeersConnected counts the other operators with an open connection.
	PeersConnected int

	RaftRole, RaftLeader string
	RaftTerm             uint64
	RaftLeaderIndex      uint64 // share index of RaftLeader; 0 if none or unknown

	// ChainConnected: the chain's parameters are known and the slashing DB is open.
	ChainConnected bool
	Beacons        []beaconView
	Beacon         beaconProbe // the last probe of the beacon node
	ClockSlot      phase0.Slot // this machine's current slot; valid when ChainConnected and ClockStarted
	ClockStarted   bool
	SlotsPerEpoch  uint64

	Doppelganger string
	Halted       string

	Duties     []dutyTypeView
	Validators []validatorRate

	Now time.Time
}

// peerView is one cluster operator as the lock names it.
type peerView struct {
	ShareIndex uint64
	PeerID     string
	Address    string
	Self       bool
	Connected  bool
}

// beaconView is one configured beacon node; URL has credentials and query removed.
type beaconView struct {
	URL     string
	Healthy bool
	Reason  string
	Errors  uint64
	Latency time.Duration
	Known   bool // health is known (redundant beacon client)
}

// beaconProbe is the outcome of one cheap question to the beacon node: its head slot once the
// chain is connected, whether the chain has a genesis before.
type beaconProbe struct {
	At         time.Time
	Answered   bool
	PreGenesis bool        // the beacon node answered that the chain has no genesis yet
	HeadSlot   phase0.Slot // valid when Answered and not PreGenesis and the chain is connected
	HasHead    bool
	Err        string
}

// notReady returns one line per unmet readiness condition, in a fixed order; none means ready.
// Ready means: the slashing DB is open (chain connected) or the chain has no genesis yet (no
// duty can exist before genesis, and run-local and the cluster tests wait for /readyz before
// they set genesis); the beacon node answered within the last probe and its head is within an
// epoch of this machine's clock; threshold−1 peers are connected; Raft knows a leader; signing
// is not halted.
func (v *nodeView) notReady() []string {
	var out []string
	switch {
	case !v.Beacon.Answered:
		out = append(out, "beacon node not answering: "+v.Beacon.Err)
	case v.ChainConnected && v.Beacon.HasHead && v.ClockStarted:
		diff := int64(v.ClockSlot) - int64(v.Beacon.HeadSlot)
		if diff > int64(v.SlotsPerEpoch) || -diff > int64(v.SlotsPerEpoch) {
			out = append(out, fmt.Sprintf("beacon node not synced: its head is slot %d, this machine's clock says slot %d (%d slots apart, more than an epoch)",
				v.Beacon.HeadSlot, v.ClockSlot, diff))
		}
	}
	if !v.ChainConnected && !(v.Beacon.Answered && v.Beacon.PreGenesis) {
		out = append(out, "chain not connected: slashing DB not open yet (genesis, network, clock and validator indices are being checked)")
	}
	if need := v.Threshold - 1; v.PeersConnected < need {
		out = append(out, fmt.Sprintf("peers: %d of %d connected, %d needed for threshold %d", v.PeersConnected, v.Operators-1, need, v.Threshold))
	}
	if v.RaftLeader == "" {
		out = append(out, fmt.Sprintf("raft: no leader known (role %s, term %d)", v.RaftRole, v.RaftTerm))
	}
	if v.Halted != "" {
		out = append(out, "signing halted: "+v.Halted)
	}
	return out
}

// status converts the view to the /status document.
func (v *nodeView) status() Status {
	reasons := v.notReady()
	return Status{
		PeerID: v.PeerID, ShareIndex: v.ShareIndex,
		RaftRole: v.RaftRole, RaftTerm: v.RaftTerm, RaftLeader: v.RaftLeader,
		PeersConnected: v.PeersConnected, ChainConnected: v.ChainConnected,
		Ready: len(reasons) == 0, NotReady: reasons,
		Halted: v.Halted, Doppelganger: v.Doppelganger, Instance: v.Instance, Version: v.Version,
	}
}

// monitorSource is what the monitoring handlers read. *monitor implements it for a running
// node; tests use fakes.
type monitorSource interface {
	// view returns the current state; it may ask the beacon node (bounded, cached) and must be
	// safe for concurrent use.
	view(ctx context.Context) nodeView
}

// monitorHandler serves /livez, /readyz, /status and the status page at / from src.
//
//   - /livez answers 200 "ok" whenever the process serves HTTP.
//   - /readyz answers 200 "ok" when nodeView.notReady is empty, else 503 with "not ready" and one
//     line per unmet condition.
//   - /status answers the Status JSON (200 whether ready or not).
//   - / answers the HTML status page; any other unknown path is 404.
func monitorHandler(src monitorSource) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		v := src.view(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		reasons := v.notReady()
		if len(reasons) == 0 {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		var b strings.Builder
		b.WriteString("not ready\n")
		for _, r := range reasons {
			// One line per condition, whatever the reason text holds.
			b.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(r))
			b.WriteByte('\n')
		}
		_, _ = w.Write([]byte(b.String()))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		v := src.view(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(v.status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		v := src.view(r.Context())
		serveStatusPage(w, &v)
	})
	return mux
}

// monitor gathers a running node's state for the monitoring endpoints.
type monitor struct {
	n      *Node
	ring   *dutyRing
	client *http.Client // genesis probe before the chain is connected, without a Beacon client

	probeMu sync.Mutex
	probe   beaconProbe
}

// serveMonitoring serves /metrics, /debug/pprof/, /duties (the tracker's records, for
// "dvmesh duties"), /livez, /readyz, /status and the status page on addr until the returned
// server is closed.
func (n *Node) serveMonitoring(addr string) (*http.Server, error) {
	m := &monitor{n: n, ring: n.ring, client: &http.Client{Timeout: beaconProbeTimeout}}
	mux := monitorHandler(m)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/duties", n.handleDuties)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitoring address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("Monitoring server stopped", "err", err)
		}
	}()
	return srv, nil
}

// view implements monitorSource for a running node (host, Raft and identity set).
func (m *monitor) view(ctx context.Context) nodeView {
	n := m.n
	role, term, leader := n.cons.State()
	v := nodeView{
		PeerID: n.id.PeerID.String(), ShareIndex: n.id.ShareIndex, Instance: n.guard.ID(), Version: buildVersion(),
		Threshold: n.id.Lock.Threshold, Operators: len(n.id.Lock.Operators),
		RaftRole: role, RaftTerm: term, RaftLeader: string(leader),
		Halted: n.haltedReason(), Now: time.Now(),
	}
	for i, op := range n.id.Lock.Operators {
		p := peerView{ShareIndex: uint64(i + 1), PeerID: op.PeerID, Address: op.Address}
		if i < len(n.peers) {
			id := n.peers[i]
			p.Self = id == n.host.ID()
			p.Connected = !p.Self && n.host.Network().Connectedness(id) == network.Connected
			if string(leader) == id.String() {
				v.RaftLeaderIndex = p.ShareIndex
			}
		}
		if p.Connected {
			v.PeersConnected++
		}
		v.Peers = append(v.Peers, p)
	}
	v.Beacons = beaconViews(n.cfg, n.beaconStats())
	v.Beacon = m.probeBeacon(ctx)

	n.mu.Lock()
	chain, db := n.chain, n.db
	v.Doppelganger = n.dgState
	indices := make(map[phase0.BLSPubKey]phase0.ValidatorIndex, len(n.indices))
	for pk, idx := range n.indices {
		indices[pk] = idx
	}
	n.mu.Unlock()
	v.ChainConnected = chain != nil && db != nil
	if chain != nil {
		v.ClockSlot, v.ClockStarted = chain.SlotAt(v.Now)
		v.SlotsPerEpoch = chain.SlotsPerEpoch
	}
	v.Duties = dutyViews(n.tracker.Records(nil), n.id.ShareIndex)
	v.Validators = m.ring.rates(v.Now, n.id.Pubkeys(), indices)
	return v
}

// probeBeacon asks the beacon node a cheap question, at most once per beaconProbeCache: its head
// slot once the chain is connected, else whether the chain has a genesis. Concurrent callers
// share one probe; a caller's cancellation does not cut the shared probe short.
func (m *monitor) probeBeacon(ctx context.Context) beaconProbe {
	m.probeMu.Lock()
	defer m.probeMu.Unlock()
	if !m.probe.At.IsZero() && time.Since(m.probe.At) < beaconProbeCache {
		return m.probe
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), beaconProbeTimeout)
	defer cancel()
	m.n.mu.Lock()
	b := m.n.beacon
	m.n.mu.Unlock()
	var p beaconProbe
	if b != nil {
		head, err := b.HeadSlot(ctx)
		if err != nil {
			p.Err = err.Error()
		} else {
			p.Answered, p.HeadSlot, p.HasHead = true, head, true
		}
	} else {
		known, err := m.genesisKnown(ctx)
		if err != nil {
			p.Err = err.Error()
		} else {
			p.Answered, p.PreGenesis = true, !known
		}
	}
	p.At = time.Now()
	m.probe = p
	return p
}

// genesisKnown asks the beacon node, before the node has connected the chain, whether the
// chain has a genesis: through Config.Beacon when set, else with one GET of
// /eth/v1/beacon/genesis (404 means not yet, as the beacon API specifies).
func (m *monitor) genesisKnown(ctx context.Context) (bool, error) {
	cfg := m.n.cfg
	m.n.mu.Lock()
	dialled := m.n.dialled
	m.n.mu.Unlock()
	if dialled == nil {
		dialled = cfg.Beacon
	}
	if dialled != nil {
		_, err := dialled.Chain(ctx)
		switch {
		case err == nil:
			return true, nil
		case isNotFound(err):
			return false, nil
		default:
			return false, err
		}
	}
	if len(cfg.BeaconURLs) == 0 {
		return false, errors.New("no beacon node configured")
	}
	first := cfg.BeaconURLs[0]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(first, "/")+"/eth/v1/beacon/genesis", nil)
	if err != nil {
		return false, fmt.Errorf("beacon URL %s: %w", displayURL(first), err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		// The error names the URL; drop credentials it may carry.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return false, fmt.Errorf("genesis from %s: %w", displayURL(first), uerr.Err)
		}
		return false, fmt.Errorf("genesis from %s: %w", displayURL(first), err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("genesis from %s: HTTP %s", displayURL(first), resp.Status)
	}
}

// isNotFound reports whether err is a beacon API answer 404 (go-eth2-client's api.Error, by
// pointer or value).
func isNotFound(err error) bool {
	var p *api.Error
	if errors.As(err, &p) && p != nil {
		return p.StatusCode == http.StatusNotFound
	}
	var v api.Error
	return errors.As(err, &v) && v.StatusCode == http.StatusNotFound
}

// beaconViews lists the configured beacon node(s) for display, with their health when known.
func beaconViews(cfg Config, stats []BeaconStat) []beaconView {
	if len(stats) > 0 {
		out := make([]beaconView, len(stats))
		for i, s := range stats {
			out[i] = beaconView{URL: s.URL, Healthy: s.Healthy, Reason: s.Reason, Errors: s.Errors, Latency: s.LastLatency, Known: true}
		}
		return out
	}
	if len(cfg.BeaconURLs) == 0 {
		if cfg.Beacon != nil {
			return []beaconView{{URL: "(in-process beacon client)"}}
		}
		return nil
	}
	var out []beaconView
	for _, u := range cfg.BeaconURLs {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, beaconView{URL: displayURL(u)})
		}
	}
	return out
}

// beaconStats returns the redundant beacon client's per-node health, if there is one.
func (n *Node) beaconStats() []BeaconStat {
	n.mu.Lock()
	mb := n.beacons
	n.mu.Unlock()
	if mb == nil {
		return nil
	}
	return mb.Stats()
}

// displayURL returns raw without its password, query and fragment (which may carry API keys);
// a URL that does not parse is replaced entirely.
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	return u.String()
}

// buildVersion returns the binary's module version and VCS revision, as far as the build
// recorded them, or "".
var buildVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v = strings.TrimSpace(v + " " + rev + modified)
	}
	return v
})

// raftLeaderRole reports whether role is the leader's (for the status page).
func raftLeaderRole(role string) bool { return role == consensus.RoleLeader }
