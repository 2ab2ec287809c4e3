package node

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Sizes: the duty ring keeps the validators' outcomes of the newest defaultDutyRingSize duties
// (one entry per slot and duty type) for the per-validator success rates; the page shows the
// newest dutyRowsPerType tracker records of each duty type.
const (
	defaultDutyRingSize = 64
	dutyRowsPerType     = 12
	maxOutcomeDetail    = 240 // bytes of an error kept per outcome and shown per duty
)

// outcomeState is where one validator's part of a duty stands. Later states win when outcomes
// are merged: a recovered signature the beacon node accepted is a success even if this node
// could not sign itself.
type outcomeState int

const (
	outcomePending outcomeState = iota // started, no outcome yet
	outcomeFailed
	outcomeSuccess
)

// validatorOutcome is one validator's outcome in one duty.
type validatorOutcome struct {
	state          outcomeState
	reason, detail string
}

// dutyEntry is one duty (slot and type) in the ring.
type dutyEntry struct {
	key      dutyKey
	deadline time.Time // end of the duty's slot; zero if unknown
	order    []phase0.BLSPubKey
	outcomes map[phase0.BLSPubKey]*validatorOutcome
}

// dutyRing is an in-memory record of each validator's outcome in the newest duties, for the
// status page's per-validator success rates (the duty tracker counts per duty, not per
// validator). Safe for concurrent use, nil-safe; memory is bounded by its size times the
// validators per duty.
type dutyRing struct {
	mu      sync.Mutex
	size    int
	entries []*dutyEntry // ordered by slot, then type
}

func newDutyRing(size int) *dutyRing { return &dutyRing{size: max(size, 1)} }

func dutyLess(a, b dutyKey) bool {
	if a.Slot != b.Slot {
		return a.Slot < b.Slot
	}
	return a.Type < b.Type
}

// record merges an outcome for pubkeys into key's entry, creating the entry (and evicting the
// oldest one when full) if needed. A state replaces a validator's earlier one only if it is
// later (pending < failed < success), so the first failure reason stays. deadline, if not zero,
// sets when a pending outcome counts as missed. An outcome for no validator creates no entry,
// and one for a duty older than every kept one while the ring is full is dropped.
func (r *dutyRing) record(key dutyKey, deadline time.Time, pubkeys []phase0.BLSPubKey, state outcomeState, reason, detail string) {
	if r == nil {
		return
	}
	detail = truncate(detail, maxOutcomeDetail)
	r.mu.Lock()
	defer r.mu.Unlock()
	i, found := slices.BinarySearchFunc(r.entries, key, func(e *dutyEntry, k dutyKey) int {
		switch {
		case dutyLess(e.key, k):
			return -1
		case dutyLess(k, e.key):
			return 1
		}
		return 0
	})
	if !found {
		if len(pubkeys) == 0 || (len(r.entries) >= r.size && i == 0) {
			return
		}
		r.entries = slices.Insert(r.entries, i, &dutyEntry{key: key, outcomes: map[phase0.BLSPubKey]*validatorOutcome{}})
		if len(r.entries) > r.size {
			r.entries[0] = nil
			r.entries = r.entries[1:]
			i--
		}
	}
	e := r.entries[i]
	if e.deadline.IsZero() {
		e.deadline = deadline
	}
	for _, pk := range pubkeys {
		o := e.outcomes[pk]
		if o == nil {
			o = &validatorOutcome{}
			e.outcomes[pk] = o
			e.order = append(e.order, pk)
		}
		if state > o.state {
			o.state, o.reason, o.detail = state, reason, detail
		}
	}
}

// validatorRate is one validator's record over the ring: Expected counts its finished duties
// (succeeded, failed, or missed: no outcome by the end of the slot); duties still in progress
// are not counted.
type validatorRate struct {
	Pubkey, Short, Index                string
	Expected, Succeeded, Failed, Missed int
	Rate, Class                         string
}

// rates returns the success rate of each validator over the ring at now: those of lockOrder
// first, in that order, then any other the ring holds.
func (r *dutyRing) rates(now time.Time, lockOrder []phase0.BLSPubKey, indices map[phase0.BLSPubKey]phase0.ValidatorIndex) []validatorRate {
	rates := map[phase0.BLSPubKey]*validatorRate{}
	order := slices.Clone(lockOrder)
	for _, pk := range lockOrder {
		rates[pk] = &validatorRate{}
	}
	if r != nil {
		r.mu.Lock()
		for _, e := range r.entries {
			for _, pk := range e.order {
				v := rates[pk]
				if v == nil {
					v = &validatorRate{}
					rates[pk] = v
					order = append(order, pk)
				}
				switch o := e.outcomes[pk]; {
				case o.state == outcomeSuccess:
					v.Succeeded++
					v.Expected++
				case o.state == outcomeFailed:
					v.Failed++
					v.Expected++
				case !e.deadline.IsZero() && now.After(e.deadline):
					v.Missed++
					v.Expected++
				}
			}
		}
		r.mu.Unlock()
	}
	out := make([]validatorRate, 0, len(order))
	for _, pk := range order {
		v := rates[pk]
		hex := fmt.Sprintf("%#x", pk)
		v.Pubkey, v.Short = hex, hex[:10]+"…"+hex[len(hex)-6:]
		if idx, ok := indices[pk]; ok {
			v.Index = fmt.Sprint(idx)
		}
		switch {
		case v.Expected == 0:
			v.Rate, v.Class = "–", "none"
		case v.Succeeded == v.Expected:
			v.Rate, v.Class = "100%", "ok"
		default:
			// Rounded down, so that anything short of every duty never shows as 100%.
			v.Rate, v.Class = fmt.Sprintf("%d%%", v.Succeeded*100/v.Expected), "partial"
			if v.Succeeded == 0 {
				v.Class = "failed"
			}
		}
		out = append(out, *v)
	}
	return out
}

// dutyTypeView is this node's newest duties of one type, newest first.
type dutyTypeView struct {
	Type string
	Rows []dutyRow
}

// dutyRow is one duty as the tracker recorded it on this node, with the results its peers
// shared for the same duty.
type dutyRow struct {
	Slot                  uint64
	Result, Class         string
	Validators, Submitted int
	FailedStep, Reason    string
	Detail                string
	Steps                 string // "fetch 120 ms · consensus 310 ms · ..."
	Peers                 []peerResult
}

// peerResult is a peer's result for a duty, as it shared it.
type peerResult struct {
	Node          uint64
	Result, Class string
}

// resultClass maps a tracker result to the page's CSS class.
func resultClass(result string) string {
	switch result {
	case "success":
		return "ok"
	case "partial", "failed":
		return result
	}
	return "pending"
}

// dutyViews groups the tracker's records: this node's (self) newest dutyRowsPerType per type,
// newest first, each with the peers' results for the same duty; types sorted by name. Records
// only peers hold are left out.
func dutyViews(recs []DutyRecord, self uint64) []dutyTypeView {
	peers := map[dutyKey][]peerResult{}
	for _, r := range recs {
		if r.Node != self {
			k := dutyKey{Slot: phase0.Slot(r.Slot), Type: r.Type}
			peers[k] = append(peers[k], peerResult{Node: r.Node, Result: r.Result, Class: resultClass(r.Result)})
		}
	}
	byType := map[string][]dutyRow{}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Node != self || len(byType[r.Type]) >= dutyRowsPerType {
			continue
		}
		row := dutyRow{
			Slot: r.Slot, Result: r.Result, Class: resultClass(r.Result), Validators: r.Validators, Submitted: r.Submitted,
			FailedStep: r.FailedStep, Reason: r.Reason, Detail: truncate(r.Detail, maxOutcomeDetail),
			Peers: peers[dutyKey{Slot: phase0.Slot(r.Slot), Type: r.Type}],
		}
		slices.SortFunc(row.Peers, func(a, b peerResult) int { return int(int64(a.Node) - int64(b.Node)) })
		var steps []string
		for _, st := range r.Steps {
			steps = append(steps, fmt.Sprintf("%s %d ms", st.Step, st.AtMs))
		}
		row.Steps = strings.Join(steps, " · ")
		byType[r.Type] = append(byType[r.Type], row)
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	out := make([]dutyTypeView, 0, len(types))
	for _, t := range types {
		out = append(out, dutyTypeView{Type: t, Rows: byType[t]})
	}
	return out
}

// truncate shortens s to at most n bytes (on a rune boundary) plus an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// dutyRing returns n's ring of recent per-validator outcomes (nil is a valid, inert ring).
func (n *Node) dutyRing() *dutyRing { return n.ring }

// dutyDeadline is the end of key's slot, or zero before the chain is known.
func (n *Node) dutyDeadline(key dutyKey) time.Time {
	if chain := n.currentChain(); chain != nil {
		return chain.SlotStart(key.Slot + 1)
	}
	return time.Time{}
}

func attesterPubkeys(duties []*attesterDuty) []phase0.BLSPubKey {
	out := make([]phase0.BLSPubKey, 0, len(duties))
	for _, d := range duties {
		out = append(out, d.Pubkey)
	}
	return out
}

// recordDutyStart notes that key's duty started for duties' validators: a validator with no
// outcome by the end of the slot shows as missed. Optional: without it, only duties with an
// outcome appear.
func (n *Node) recordDutyStart(key dutyKey, pubkeys []phase0.BLSPubKey) {
	if r := n.dutyRing(); r != nil {
		r.record(key, n.dutyDeadline(key), pubkeys, outcomePending, "", "")
	}
}

// recordDutyFailure notes that key's duty failed for duties' validators with the metric reason
// and its error.
func (n *Node) recordDutyFailure(key dutyKey, pubkeys []phase0.BLSPubKey, reason string, err error) {
	if r := n.dutyRing(); r != nil {
		detail := ""
		if err != nil {
			detail = err.Error()
		}
		r.record(key, n.dutyDeadline(key), pubkeys, outcomeFailed, reason, detail)
	}
}

// recordSubmission notes the beacon node's verdict on a submission of key's recovered
// signatures for pubkeys: success when err is nil, else a failure (beacon_error, or late).
func (n *Node) recordSubmission(key dutyKey, pubkeys []phase0.BLSPubKey, err error) {
	r := n.dutyRing()
	if r == nil {
		return
	}
	if err != nil {
		r.record(key, n.dutyDeadline(key), pubkeys, outcomeFailed, beaconReason(err), err.Error())
		return
	}
	r.record(key, n.dutyDeadline(key), pubkeys, outcomeSuccess, "submitted", "")
}

//go:embed statuspage.html
var statusPageSource string

// statusPage parses the page template once.
var statusPage = sync.OnceValues(func() (*template.Template, error) {
	return template.New("status").Funcs(template.FuncMap{
		"isLeader": raftLeaderRole,
		"ts":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	}).Parse(statusPageSource)
})

// statusPageData is what the template renders.
type statusPageData struct {
	V        *nodeView
	Others   int // operators other than this node
	RingSize int
	Ready    bool
	NotReady []string
}

// serveStatusPage renders v as the HTML status page; every value is escaped by html/template.
// A rendering error answers 500 and no partial page.
func serveStatusPage(w http.ResponseWriter, v *nodeView) {
	t, err := statusPage()
	if err != nil {
		http.Error(w, "status page template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	reasons := v.notReady()
	var buf bytes.Buffer
	if err := t.Execute(&buf, statusPageData{V: v, Others: max(v.Operators-1, 0), RingSize: defaultDutyRingSize, Ready: len(reasons) == 0, NotReady: reasons}); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(buf.Bytes())
}
