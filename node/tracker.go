package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/dvmesh/dvmesh/p2p"
)

// Reasons a duty fails, the fixed list the tracker reports (documented in the README).
const (
	ReasonLate                 = "late"                  // the duty's deadline passed before a step finished
	ReasonBeaconError          = "beacon_error"          // the beacon node did not answer or refused a submission
	ReasonNoConsensus          = "no_consensus"          // Raft decided nothing before the deadline
	ReasonInvalidDecided       = "invalid_decided"       // the decided value failed this node's own checks
	ReasonSlashingRefusal      = "slashing_refusal"      // the slashing DB refused (a rule other than the start-up guard)
	ReasonStartupGuard         = "startup_guard"         // refused by the start-up guard (expected after a restart)
	ReasonUnknownValidator     = "unknown_validator"     // the slashing DB has never seen the validator
	ReasonDoppelganger         = "doppelganger"          // blocked by the doppelganger check
	ReasonDuplicateInstance    = "duplicate_instance"    // this node halted: its identity runs twice
	ReasonInsufficientPartials = "insufficient_partials" // fewer than threshold valid partials arrived in time
	ReasonInternal             = "internal"              // a bug or a local fault (see detail)
	ReasonStopping             = "stopping"              // the node was shutting down before the step finished
)

// Step names, in pipeline order.
const (
	// StepStart is when the duty's work begins, after its planned wait (the head block or a
	// third of the slot for attesters, two thirds for aggregations): latencies count from it.
	StepStart     = "start"
	StepFetch     = "fetch"
	StepConsensus = "consensus"
	StepValidate  = "validate"
	StepRecorded  = "slashing_recorded"
	StepSent      = "partials_sent"
	// StepSubmitting is when the submission call to the beacon node is made (its answer time,
	// up to StepSubmitted, is the beacon node's).
	StepSubmitting = "submitting"
	StepSubmitted  = "submitted"
)

// StepTime is when a step finished, in milliseconds after the duty's slot started.
type StepTime struct {
	Step string `json:"step"`
	AtMs int64  `json:"at_ms"`
}

// DutyRecord is how one duty went on one node.
type DutyRecord struct {
	Slot       uint64     `json:"slot"`
	Type       string     `json:"type"`
	Node       uint64     `json:"node"` // share index of the node that ran it
	Validators int        `json:"validators"`
	Submitted  int        `json:"submitted"` // signatures this node recovered and submitted
	Result     string     `json:"result"`    // "success", "partial", "failed" or "running"
	Reason     string     `json:"reason,omitempty"`
	FailedStep string     `json:"failed_step,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	Steps      []StepTime `json:"steps"`
}

// StepAt returns when step first finished, in milliseconds after the duty's slot started.
func (r *DutyRecord) StepAt(step string) (ms int64, ok bool) {
	for _, st := range r.Steps {
		if st.Step == step {
			return st.AtMs, true
		}
	}
	return 0, false
}

// trackerProtocol shares finished duty records with the peers for the cluster-wide view.
const trackerProtocol = "/dvmesh/tracker/1.0.0"

// trackerKeepSlots bounds what the tracker remembers.
const trackerKeepSlots = 64

// tracker observes every duty of this node and keeps the records its peers share. Safe for
// concurrent use.
type tracker struct {
	self uint64
	mu   sync.Mutex
	own  map[dutyKey]*DutyRecord
	peer map[dutyKey]map[uint64]DutyRecord
}

func newTracker(self uint64) *tracker {
	return &tracker{self: self, own: map[dutyKey]*DutyRecord{}, peer: map[dutyKey]map[uint64]DutyRecord{}}
}

func (t *tracker) record(k dutyKey) *DutyRecord {
	r, ok := t.own[k]
	if !ok {
		r = &DutyRecord{Slot: uint64(k.Slot), Type: k.Type, Node: t.self, Result: "running"}
		t.own[k] = r
	}
	return r
}

// Start opens the record of duty k for validators validators.
func (t *tracker) Start(k dutyKey, validators int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.record(k).Validators = validators
}

// Step notes that step finished at since after the slot start.
func (t *tracker) Step(k dutyKey, step string, since time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(k)
	r.Steps = append(r.Steps, StepTime{Step: step, AtMs: since.Milliseconds()})
}

// Submitted counts n signatures submitted for duty k.
func (t *tracker) Submitted(k dutyKey, n int, since time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(k)
	if r.Submitted == 0 {
		r.Steps = append(r.Steps, StepTime{Step: StepSubmitted, AtMs: since.Milliseconds()})
	}
	r.Submitted += n
}

// Fail records why duty k failed at step (the first failure wins).
func (t *tracker) Fail(k dutyKey, step, reason string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(k)
	if r.Reason != "" {
		return
	}
	r.FailedStep, r.Reason = step, reason
	if err != nil {
		r.Detail = err.Error()
	}
}

// Finish closes the record of duty k at its deadline and returns it.
func (t *tracker) Finish(k dutyKey) DutyRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(k)
	switch {
	case r.Validators > 0 && r.Submitted >= r.Validators:
		r.Result = "success"
	case r.Submitted > 0:
		r.Result = "partial"
	default:
		r.Result = "failed"
	}
	if r.Result != "success" && r.Reason == "" {
		r.FailedStep, r.Reason = StepSubmitted, ReasonInsufficientPartials
	}
	return *r
}

// AddPeer stores a record a peer shared.
func (t *tracker) AddPeer(r DutyRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := dutyKey{Slot: phase0.Slot(r.Slot), Type: r.Type}
	if t.peer[k] == nil {
		t.peer[k] = map[uint64]DutyRecord{}
	}
	t.peer[k][r.Node] = r
}

// Trim forgets records before slot.
func (t *tracker) Trim(before phase0.Slot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.own {
		if k.Slot < before {
			delete(t.own, k)
		}
	}
	for k := range t.peer {
		if k.Slot < before {
			delete(t.peer, k)
		}
	}
}

// Records returns this node's and the peers' records of slot (or of every remembered slot
// when slot is nil), ordered by slot, type and node.
func (t *tracker) Records(slot *uint64) []DutyRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []DutyRecord
	for k, r := range t.own {
		if slot == nil || uint64(k.Slot) == *slot {
			c := *r
			c.Steps = slices.Clone(r.Steps)
			out = append(out, c)
		}
	}
	for k, m := range t.peer {
		if slot == nil || uint64(k.Slot) == *slot {
			for _, r := range m {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b DutyRecord) int {
		switch {
		case a.Slot != b.Slot:
			return int(int64(a.Slot) - int64(b.Slot))
		case a.Type != b.Type:
			if a.Type < b.Type {
				return -1
			}
			return 1
		default:
			return int(int64(a.Node) - int64(b.Node))
		}
	})
	return out
}

// shareRecord sends a finished record to every peer (best effort) for the cluster-wide view.
func (n *Node) shareRecord(ctx context.Context, r DutyRecord) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	n.askPeers(ctx, trackerProtocol, b, func(peer.ID, []byte, error) {})
}

// askPeers sends req over proto to every other peer concurrently (2 s at most) and calls
// handle with each answer; handle may run concurrently with itself.
func (n *Node) askPeers(ctx context.Context, proto protocol.ID, req []byte, handle func(p peer.ID, resp []byte, err error)) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range n.peers {
		if p == n.host.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p2p.Request(ctx, n.host, p, proto, req)
			handle(p, resp, err)
		}()
	}
	wg.Wait()
}

// serveTracker stores the records peers share; a record must name its sender's share index.
func (n *Node) serveTracker() {
	p2p.Serve(n.host, trackerProtocol, 2*time.Second, func(from peer.ID, req []byte) []byte {
		idx, ok := n.id.Lock.ShareIndex(from)
		var r DutyRecord
		if !ok || json.Unmarshal(req, &r) != nil || r.Node != idx || len(r.Steps) > 32 || len(r.Detail) > 1024 {
			return []byte("refused")
		}
		if chain := n.currentChain(); chain != nil {
			if cur, ok := chain.SlotAt(time.Now()); ok && (r.Slot > uint64(cur)+1 || r.Slot+trackerKeepSlots < uint64(cur)) {
				return []byte("refused")
			}
		}
		n.tracker.AddPeer(r)
		return []byte("ok")
	})
}

// failureReason maps a duty error to the tracker's reason list.
func failureReason(err error) string {
	switch {
	case errors.Is(err, errStopped): // first: a stop also cancels the duty's context
		return ReasonStopping
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonLate
	case errors.Is(err, ErrHalted):
		return ReasonDuplicateInstance
	case errors.Is(err, ErrBlocked):
		return ReasonDoppelganger
	case errors.Is(err, ErrInvalidDecided):
		return ReasonInvalidDecided
	case errors.Is(err, ErrInsufficientPartials):
		return ReasonInsufficientPartials
	case errors.Is(err, ErrBeacon):
		return ReasonBeaconError
	}
	return ReasonInternal
}

// handleDuties serves this node's and its peers' duty records as JSON: ?slot=N for one slot,
// otherwise every remembered slot.
func (n *Node) handleDuties(w http.ResponseWriter, r *http.Request) {
	var slot *uint64
	if v := r.URL.Query().Get("slot"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "slot must be a decimal slot number", http.StatusBadRequest)
			return
		}
		slot = &s
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(n.tracker.Records(slot))
}
