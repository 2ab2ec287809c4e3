package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/consensus"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// Duty types. A duty is one (slot, type) of the whole cluster: one Raft entry (where the value
// must be agreed), one slashing-DB transaction (where the message is slashable), one partial
// signature message per peer and one submission call, covering every validator of the duty.
const (
	dutyAttester      = "attester"
	dutyProposer      = "proposer"
	dutyRandao        = "randao"
	dutyRandaoLate    = "randao_late" // a proposer not known when the slot's reveals were signed ahead
	dutySelection     = "selection"   // attestation aggregation selection proofs
	dutyAggregator    = "aggregator"  // aggregate-and-proofs
	dutySyncMessage   = "sync_message"
	dutySyncSelection = "sync_selection" // one duty per subcommittee: "sync_selection/<k>"
	dutySyncContrib   = "sync_contribution"
	dutyRegistration  = "registration"
	dutyExit          = "exit"
)

// maxSyncSubcommittees is SYNC_COMMITTEE_SUBNET_COUNT.
const maxSyncSubcommittees = 4

// syncSelectionType is the duty type of the sync aggregator selection proofs of subcommittee k.
func syncSelectionType(k uint64) string { return fmt.Sprintf("%s/%d", dutySyncSelection, k) }

// knownDutyType tells duty types this node signs for from anything a peer may send.
func knownDutyType(t string) bool {
	switch t {
	case dutyAttester, dutyProposer, dutyRandao, dutyRandaoLate, dutySelection, dutyAggregator, dutySyncMessage, dutySyncContrib, dutyRegistration:
		return true
	}
	for _, prefix := range []string{dutySyncSelection + "/", dutySyncContrib + "/"} {
		if rest, ok := strings.CutPrefix(t, prefix); ok {
			return len(rest) == 1 && rest[0] >= '0' && rest[0] < '0'+maxSyncSubcommittees
		}
	}
	return false
}

// dutyLabels labels a duty's CPU work for profiles with its metric type (no sync subcommittee
// suffix), so a profile splits by duty type: go tool pprof -tagfocus duty=attester.
func dutyLabels(dutyType string) pprof.LabelSet {
	return pprof.Labels("duty", metricType(dutyType))
}

// sigRun collects the recovered, verified group signatures of one duty.
type sigRun struct {
	want   int
	mu     sync.Mutex
	got    map[phase0.BLSPubKey]phase0.BLSSignature
	fresh  []fullSig
	notify chan struct{}
}

func newSigRun(want int) *sigRun {
	return &sigRun{want: want, got: map[phase0.BLSPubKey]phase0.BLSSignature{}, notify: make(chan struct{}, 1)}
}

func (r *sigRun) add(sigs []fullSig) {
	r.mu.Lock()
	for _, s := range sigs {
		if _, ok := r.got[s.Pubkey]; !ok {
			r.got[s.Pubkey] = s.Signature
			r.fresh = append(r.fresh, s)
		}
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// take returns the signatures not taken before and whether every wanted one is in.
func (r *sigRun) take() ([]fullSig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.fresh
	r.fresh = nil
	return f, len(r.got) >= r.want
}

// collect hands the signatures to fn in as few batches as possible: all at once when every
// wanted signature is in, else whatever arrived within linger of the first one of a batch
// (a validator that never completes must not hold the others back). It returns when all are
// in or ctx ends.
func (r *sigRun) collect(ctx context.Context, linger time.Duration, fn func([]fullSig)) {
	var (
		pending []fullSig
		timer   *time.Timer
		fire    <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		batch, all := r.take()
		pending = append(pending, batch...)
		if all {
			if len(pending) > 0 {
				fn(pending)
			}
			return
		}
		if len(pending) > 0 && fire == nil {
			timer = time.NewTimer(linger)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.notify:
		case <-fire:
			fn(pending)
			pending, fire = nil, nil
		}
	}
}

// wait returns once every wanted signature is in, or with what is in when ctx ends.
func (r *sigRun) wait(ctx context.Context) (map[phase0.BLSPubKey]phase0.BLSSignature, error) {
	for {
		_, all := r.take()
		if all {
			break
		}
		select {
		case <-ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			return maps.Clone(r.got), fmt.Errorf("%w: %d of %d signatures recovered", ErrInsufficientPartials, len(r.got), r.want)
		case <-r.notify:
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.got), nil
}

// ErrInsufficientPartials is returned when fewer than threshold valid partials arrived in time.
var ErrInsufficientPartials = errors.New("not enough valid partial signatures")

// expect registers duty key with the signing root this node expects per validator and returns
// the run that receives its recovered signatures (partials that came early are processed now).
func (n *Node) expect(key dutyKey, roots map[phase0.BLSPubKey]phase0.Root) *sigRun {
	r := newSigRun(len(roots))
	n.mu.Lock()
	if old, ok := n.runs[key]; ok {
		n.mu.Unlock()
		return old
	}
	n.runs[key] = r
	n.mu.Unlock()
	sigs, errs := n.agg.Expect(key, roots)
	n.handleFull(key, sigs, errs)
	return r
}

// toSign is one message this node signs with one validator's share.
type toSign struct {
	pubkey phase0.BLSPubKey
	root   phase0.Root
}

// signable reports whether this node may sign for pk now, logging why not.
func (n *Node) signable(pk phase0.BLSPubKey, log *slog.Logger) bool {
	if reason := n.gate.Blocked(pk); reason != "" {
		log.Warn("Not signing", "pubkey", fmt.Sprintf("%#x", pk), "reason", reason)
		return false
	}
	return true
}

// sendPartials signs every item with this node's share, keeps its own partials and sends them to
// every peer in one message. The caller has passed every gate, and for slashable messages the
// slashing DB's commit, for each item.
func (n *Node) sendPartials(ctx context.Context, key dutyKey, items []toSign, log *slog.Logger) error {
	if reason := n.haltedReason(); reason != "" {
		return fmt.Errorf("%w: %s", ErrHalted, reason)
	}
	if len(items) == 0 {
		return nil
	}
	// Group by root: each group is hashed to G2 once and signed in parallel.
	byRoot := map[phase0.Root][]phase0.BLSPubKey{}
	var order []phase0.Root
	for _, it := range items {
		if _, ok := byRoot[it.root]; !ok {
			order = append(order, it.root)
		}
		byRoot[it.root] = append(byRoot[it.root], it.pubkey)
	}
	msg := p2p.Message{Slot: uint64(key.Slot), DutyType: key.Type}
	var (
		ownPks  []phase0.BLSPubKey
		ownSigs []*bls.Sign
	)
	for _, root := range order {
		pks := byRoot[root]
		keys := make([]*bls.SecretKey, len(pks))
		for i, pk := range pks {
			keys[i] = n.id.Shares[pk]
			if keys[i] == nil {
				return fmt.Errorf("no key share for %#x", pk)
			}
		}
		sigs := signing.SignSameMessageParsed(keys, root[:])
		for i, sig := range sigs {
			msg.Partials = append(msg.Partials, p2p.Partial{GroupPubkey: pks[i][:], SigningRoot: root[:], Signature: signing.SerializeForPeer(sig)})
		}
		ownPks, ownSigs = append(ownPks, pks...), append(ownSigs, sigs...)
	}
	n.metrics.partialsSent.Add(float64(len(msg.Partials)))
	// Send first and keep the own partials meanwhile: the peers' recoveries wait on the message,
	// this node's on theirs.
	sent := make(chan error, 1)
	go func() { sent <- n.ex.Broadcast(ctx, msg) }()
	sigs, errs := n.agg.AddOwn(key, ownPks, ownSigs)
	n.handleFull(key, sigs, errs)
	if err := <-sent; err != nil {
		// Peers that are down miss our partials; the others can still reach the threshold.
		log.Debug("Partials not delivered to every peer", "err", err)
	}
	return nil
}

// thresholdSign signs a non-slashable message per validator (one whose content every node
// computes alone: RANDAO reveals, selection proofs, registrations) and waits for the group
// signatures. Validators this node may not sign for are still expected: the peers may reach
// the threshold without it.
func (n *Node) thresholdSign(ctx context.Context, key dutyKey, roots map[phase0.BLSPubKey]phase0.Root, log *slog.Logger) (map[phase0.BLSPubKey]phase0.BLSSignature, error) {
	run := n.expect(key, roots)
	var items []toSign
	for pk, root := range roots {
		if n.signable(pk, log) {
			items = append(items, toSign{pubkey: pk, root: root})
		}
	}
	if err := n.sendPartials(ctx, key, items, log); err != nil {
		return nil, err
	}
	return run.wait(ctx)
}

// dutyExec is the bookkeeping of one running duty: tracker record, status page ring, metrics.
type dutyExec struct {
	n       *Node
	key     dutyKey
	start   time.Time
	pubkeys []phase0.BLSPubKey
	log     *slog.Logger
}

// beginDuty opens duty key for pubkeys; the caller must run finish (it waits for ctx's end).
func (n *Node) beginDuty(key dutyKey, pubkeys []phase0.BLSPubKey) *dutyExec {
	d := &dutyExec{n: n, key: key, start: n.chain.SlotStart(key.Slot), pubkeys: pubkeys,
		log: n.log.With("slot", key.Slot, "duty", key.Type, "validators", len(pubkeys))}
	n.tracker.Start(key, len(pubkeys))
	n.recordDutyStart(key, pubkeys)
	n.metrics.dutiesExpected.WithLabelValues(metricType(key.Type)).Add(float64(len(pubkeys)))
	return d
}

// metricType folds the per-subcommittee duty types into one label value.
func metricType(t string) string {
	if i := strings.IndexByte(t, '/'); i >= 0 {
		return t[:i]
	}
	return t
}

func (d *dutyExec) step(name string) {
	since := time.Since(d.start)
	d.n.metrics.stepSeconds.WithLabelValues(metricType(d.key.Type), name).Observe(since.Seconds())
	d.n.tracker.Step(d.key, name, since)
}

func (d *dutyExec) fail(step, reason string, err error) {
	d.n.metrics.duties.WithLabelValues(metricType(d.key.Type), "failed", reason).Add(float64(len(d.pubkeys)))
	d.n.tracker.Fail(d.key, step, reason, err)
	d.n.recordDutyFailure(d.key, d.pubkeys, reason, err)
	d.log.Warn("Duty failed", "step", step, "reason", reason, "err", err)
}

// submit makes the submission call for pubkeys and books it.
func (d *dutyExec) submit(pubkeys []phase0.BLSPubKey, call func() error) {
	d.step(StepSubmitting)
	d.submitted(pubkeys, call())
}

// submitted books a submission of count signatures for pubkeys, or its failure.
func (d *dutyExec) submitted(pubkeys []phase0.BLSPubKey, err error) {
	n, t := d.n, metricType(d.key.Type)
	n.recordSubmission(d.key, pubkeys, err)
	if err != nil {
		reason := beaconReason(err)
		n.metrics.submitted.WithLabelValues(t, "error").Add(float64(len(pubkeys)))
		n.metrics.duties.WithLabelValues(t, "failed", reason).Add(float64(len(pubkeys)))
		n.tracker.Fail(d.key, StepSubmitted, reason, err)
		if reason == ReasonStopping {
			// Not the beacon node's answer: this node's shutdown cut the call short.
			d.log.Info("Submission abandoned: node stopping", "count", len(pubkeys), "err", err)
		} else {
			d.log.Warn("Submission failed", "count", len(pubkeys), "reason", reason, "err", err)
		}
		return
	}
	since := time.Since(d.start)
	n.metrics.submitted.WithLabelValues(t, "ok").Add(float64(len(pubkeys)))
	n.tracker.Submitted(d.key, len(pubkeys), since)
	n.metrics.duties.WithLabelValues(t, "success", "").Add(float64(len(pubkeys)))
	n.metrics.stepSeconds.WithLabelValues(t, "submitted").Observe(since.Seconds())
	d.log.Info("Submitted", "count", len(pubkeys), "since_slot_start", since.Round(time.Millisecond))
}

// finish waits for the duty's deadline (ctx), closes its tracker record and shares it.
func (d *dutyExec) finish(ctx context.Context) { d.n.finishDuty(ctx, d.key, d.log) }

// pubkeysOf lists the validators of items.
func pubkeysOf(items []toSign) []phase0.BLSPubKey {
	out := make([]phase0.BLSPubKey, len(items))
	for i, it := range items {
		out[i] = it.pubkey
	}
	return out
}

// agree proposes this node's value for the duty through Raft, or, when its own fetch failed,
// follows the value the cluster decides: a node whose beacon node failed still signs what the
// others agreed on (after validating it like any decided value). ok is false when the duty failed
// (booked).
func (n *Node) agree(ctx context.Context, d *dutyExec, value []byte, fetchErr error) (decided []byte, ok bool) {
	duty := consensus.Duty{Slot: uint64(d.key.Slot), Type: d.key.Type}
	var err error
	if fetchErr != nil {
		d.log.Info("Own value not fetched; following the cluster's decision", "err", fetchErr)
		if decided, err = n.cons.Await(ctx, duty); err != nil {
			d.fail(StepFetch, beaconReason(fetchErr), errors.Join(fetchErr, err))
			return nil, false
		}
	} else {
		d.step(StepFetch)
		if decided, err = n.cons.Propose(ctx, duty, value); err != nil {
			d.fail(StepConsensus, ReasonNoConsensus, err)
			return nil, false
		}
	}
	d.step(StepConsensus)
	return decided, true
}

// agreeLazy is agree for a value only the leader builds (a block): fetch runs only while this
// node leads the Raft group (see consensus.ProposeLazy), and on a follower the fetch step is
// never recorded.
func (n *Node) agreeLazy(ctx context.Context, d *dutyExec, fetch func(context.Context) ([]byte, error)) (decided []byte, ok bool) {
	duty := consensus.Duty{Slot: uint64(d.key.Slot), Type: d.key.Type}
	var fetchErr error
	decided, err := n.cons.ProposeLazy(ctx, duty, func(ctx context.Context) ([]byte, error) {
		value, err := fetch(ctx)
		if fetchErr = err; err != nil {
			d.log.Info("Own value not fetched; waiting for the cluster's decision", "err", err)
			return nil, err
		}
		d.step(StepFetch)
		return value, nil
	})
	switch {
	case err != nil && fetchErr != nil:
		d.fail(StepFetch, beaconReason(fetchErr), err)
		return nil, false
	case err != nil:
		d.fail(StepConsensus, ReasonNoConsensus, err)
		return nil, false
	}
	d.step(StepConsensus)
	return decided, true
}
