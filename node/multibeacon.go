package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	eth2http "github.com/attestantio/go-eth2-client/http"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/rs/zerolog"
)

// errStopped is returned by every MultiBeacon method once its context has ended.
var errStopped = errors.New("beacon nodes: stopped")

// errWrongChain marks a beacon node whose chain differs from the one the MultiBeacon adopted.
var errWrongChain = errors.New("beacon node is on another chain")

// MultiBeaconConfig tunes a MultiBeacon; zero fields take the defaults given.
type MultiBeaconConfig struct {
	// Timeout bounds every request to one beacon node (default 10 s).
	Timeout time.Duration
	// HedgeDelay is how long a read waits for a node before also asking the next one
	// (default min(100 ms, Timeout/4)).
	HedgeDelay time.Duration
	// CheckInterval is the period of the health check (default: one slot once the slot duration
	// is known, 2 s before).
	CheckInterval time.Duration
	// MaxBehind is how many slots a node's head may trail the best node's head and stay healthy
	// (default 2).
	MaxBehind phase0.Slot
}

// NamedBeacon is one beacon node of a MultiBeacon; Name labels it in logs and Stats.
type NamedBeacon struct {
	Name   string
	Beacon Beacon
}

// BeaconStat is one beacon node's state, for metrics and /status.
type BeaconStat struct {
	URL         string        `json:"url"` // the node's name: its URL without password, query and fragment
	Healthy     bool          `json:"healthy"`
	Reason      string        `json:"reason,omitempty"` // why the node is unhealthy
	Errors      uint64        `json:"errors"`           // failed requests and health probes so far
	LastLatency time.Duration `json:"last_latency_ns"`  // of the last successful request or probe
}

// MultiBeacon is a Beacon over several beacon nodes of one chain (ideally of different clients).
//
// Reads ask the healthiest node first and hedge: if it has not answered after HedgeDelay, or as
// soon as it fails, the next healthy node is asked too; the first good answer wins and the other
// requests are cancelled. An answer is always one node's: answers are never combined. Unhealthy
// nodes are asked only once every healthy node has failed. SubmitAttestations goes to every
// healthy node at once. A background check (every CheckInterval) probes each node's head and
// marks it unhealthy if the probe fails or takes over half the interval, if the head is ahead of
// the chain clock, trails the best head by more than MaxBehind slots or trails the clock by more
// than an epoch (syncing); a failed request (other than an HTTP 4xx refusal) marks a node
// unhealthy at once, and only the check makes it healthy again. Healthy nodes are tried fastest
// first (moving average of latency; a hedged-out request counts as at least as slow as it ran). A node that reports another chain (genesis, genesis
// validators root, fork version or slot timing) than the first Chain answer is never used again.
//
// Every goroutine a MultiBeacon starts stops when the context given to its constructor ends; Wait
// returns once they all have.
type MultiBeacon struct {
	cfg     MultiBeaconConfig
	log     *slog.Logger
	ctx     context.Context
	members []*member
	done    chan struct{}

	mu      sync.Mutex // guards the fields below and every member's state
	wg      sync.WaitGroup
	stopped bool
	chain   *Chain        // adopted from the first Chain answer
	slotDur time.Duration // from the first SlotDuration or Chain answer
}

// member is one beacon node and its health, guarded by MultiBeacon.mu.
type member struct {
	name       string
	b          Beacon
	healthy    bool
	wrongChain bool
	chainOK    bool // its Chain answer matched the adopted chain
	reason     string
	errors     uint64
	last, ewma time.Duration
}

// NewMultiBeacon connects to the beacon nodes at urls (in order of preference while latencies
// are unknown), each request bounded by timeout. A node that does not answer yet is not an error
// (it is marked unhealthy and retried); invalid or duplicate URLs are. See MultiBeacon.
func NewMultiBeacon(ctx context.Context, urls []string, timeout time.Duration, log *slog.Logger) (*MultiBeacon, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nodes := make([]NamedBeacon, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			nodes[i].Name = displayURL(u)
			svc, err := eth2http.New(ctx, eth2http.WithAddress(u), eth2http.WithTimeout(timeout),
				eth2http.WithLogLevel(zerolog.Disabled), eth2http.WithAllowDelayedStart(true))
			if err != nil {
				errs[i] = fmt.Errorf("beacon node %s: %w", nodes[i].Name, err)
				return
			}
			nodes[i].Beacon = &httpBeacon{svc: svc}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewMultiBeaconFrom(ctx, nodes, MultiBeaconConfig{Timeout: timeout}, log)
}

// NewMultiBeaconFrom builds a MultiBeacon over already-built beacon clients, in order of
// preference (used while latencies are unknown). Names must be unique and non-empty.
func NewMultiBeaconFrom(ctx context.Context, nodes []NamedBeacon, cfg MultiBeaconConfig, log *slog.Logger) (*MultiBeacon, error) {
	if len(nodes) == 0 {
		return nil, errors.New("beacon nodes: none given")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.HedgeDelay <= 0 {
		cfg.HedgeDelay = min(100*time.Millisecond, cfg.Timeout/4)
	}
	if cfg.MaxBehind == 0 {
		cfg.MaxBehind = 2
	}
	if log == nil {
		log = slog.Default()
	}
	m := &MultiBeacon{cfg: cfg, log: log.With("component", "beacons"), ctx: ctx, done: make(chan struct{})}
	seen := map[string]bool{}
	for _, n := range nodes {
		switch {
		case n.Name == "" || n.Beacon == nil:
			return nil, fmt.Errorf("beacon nodes: node %q has no name or no client", n.Name)
		case seen[n.Name]:
			return nil, fmt.Errorf("beacon nodes: %s given twice", n.Name)
		}
		seen[n.Name] = true
		m.members = append(m.members, &member{name: n.Name, b: n.Beacon, healthy: true})
	}
	m.spawn(m.checkLoop)
	go func() { // owner of m.wg: ends once ctx has and every spawned goroutine returned
		<-ctx.Done()
		m.mu.Lock()
		m.stopped = true
		m.mu.Unlock()
		m.wg.Wait()
		close(m.done)
	}()
	return m, nil
}

// Wait blocks until the constructor's context has ended and every goroutine of m has returned.
func (m *MultiBeacon) Wait() { <-m.done }

// Stats returns every node's state, in the order the nodes were given.
func (m *MultiBeacon) Stats() []BeaconStat {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]BeaconStat, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, BeaconStat{URL: mem.name, Healthy: mem.healthy, Reason: mem.reason, Errors: mem.errors, LastLatency: mem.last})
	}
	return out
}

// spawn runs f in a goroutine owned by m, unless m has stopped.
func (m *MultiBeacon) spawn(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false
	}
	m.wg.Go(f)
	return true
}

// ordered returns the usable nodes: healthy ones, then unhealthy ones, each by recent latency.
func (m *MultiBeacon) ordered() (healthy, unhealthy []*member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mem := range m.members {
		switch {
		case mem.wrongChain:
		case mem.healthy:
			healthy = append(healthy, mem)
		default:
			unhealthy = append(unhealthy, mem)
		}
	}
	byLatency := func(a, b *member) int { return cmp.Compare(a.ewma, b.ewma) }
	slices.SortStableFunc(healthy, byLatency)
	slices.SortStableFunc(unhealthy, byLatency)
	return healthy, unhealthy
}

// do runs f against one node within timeout, recovering a panic into an error, and books the
// outcome. A failure while ctx is done (hedge lost, caller gave up) is not the node's.
func (m *MultiBeacon) do(ctx context.Context, timeout time.Duration, mem *member, op string, f func(context.Context, Beacon) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := safely(func() error { return f(cctx, mem.b) })
	m.book(mem, op, time.Since(start), err, ctx.Err() != nil)
	return err
}

// book records one request's outcome: latency on success, a lower bound of it when cancelled,
// and on failure an error count and (unless the request itself was at fault) ill health.
func (m *MultiBeacon) book(mem *member, op string, lat time.Duration, err error, cancelled bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case err == nil:
		mem.last, mem.ewma = lat, ewma(mem.ewma, lat)
	case cancelled:
		if lat > mem.ewma {
			mem.ewma = ewma(mem.ewma, lat)
		}
	default:
		mem.errors++
		if errors.Is(err, errWrongChain) {
			mem.wrongChain = true
		}
		if !requestFault(err) {
			m.setHealthLocked(mem, op+": "+err.Error())
		}
	}
}

// setHealthLocked marks mem healthy (reason "") or not, logging changes. m.mu must be held.
func (m *MultiBeacon) setHealthLocked(mem *member, reason string) {
	if mem.wrongChain {
		reason = "on another chain: never used again"
	}
	was := mem.healthy
	mem.healthy, mem.reason = reason == "", reason
	switch {
	case was && !mem.healthy:
		m.log.Warn("Beacon node unhealthy; using the others", "beacon", mem.name, "reason", reason)
	case !was && mem.healthy:
		m.log.Info("Beacon node healthy again", "beacon", mem.name)
	}
}

// requestFault reports whether err is the node refusing the request (HTTP 4xx), which says
// nothing about its health.
func requestFault(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500
}

// safely runs f, turning a panic (a client choking on an answer) into an error.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: client panicked: %v", ErrBeacon, r)
		}
	}()
	return f()
}

func ewma(old, sample time.Duration) time.Duration {
	if old == 0 {
		return sample
	}
	return old + (sample-old)/4
}

// read asks for one answer: the healthy nodes in a hedged race, then, if all of them failed,
// the unhealthy ones likewise.
func read[T any](m *MultiBeacon, ctx context.Context, op string, f func(context.Context, Beacon) (T, error)) (T, error) {
	return tryGroups(m, ctx, op, false, f)
}

// tryGroups runs race over the healthy nodes, then, if none succeeded, over the unhealthy ones.
func tryGroups[T any](m *MultiBeacon, ctx context.Context, op string, all bool, f func(context.Context, Beacon) (T, error)) (T, error) {
	healthy, unhealthy := m.ordered()
	var errs []error
	for _, group := range [][]*member{healthy, unhealthy} {
		if len(group) == 0 || ctx.Err() != nil {
			continue
		}
		v, err := race(m, ctx, op, group, all, f)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, cmp.Or(ctx.Err(), errors.New("no usable beacon node")))
	}
	var zero T
	return zero, fmt.Errorf("%s: %w", op, errors.Join(errs...))
}

// race returns the first success of f over group. Unless all is set, it asks group[0], then the
// next node whenever HedgeDelay passes or a node fails, and cancels the requests still running
// when it returns. With all set it asks every node at once and lets the others finish after a
// success (until ctx's deadline or m stops: cancelling ctx does not stop them), logging refusals.
func race[T any](m *MultiBeacon, ctx context.Context, op string, group []*member, all bool, f func(context.Context, Beacon) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	var zero T
	rctx, cancel := requestContext(ctx, all)
	stop := context.AfterFunc(m.ctx, cancel)
	var running atomic.Int32 // once the last request ends, rctx is released
	release := func() {
		if running.Add(-1) == 0 {
			stop()
			cancel()
		}
	}
	running.Add(1) // held by race itself until it returns
	defer func() {
		if !all {
			cancel()
		}
		release()
	}()
	results := make(chan result, len(group)) // never blocks a request that lost
	next, pending := 0, 0
	launch := func() {
		for next < len(group) {
			mem := group[next]
			next++
			running.Add(1)
			if !m.spawn(func() {
				defer release()
				var v T
				err := m.do(rctx, m.cfg.Timeout, mem, op, func(c context.Context, b Beacon) (err error) { v, err = f(c, b); return err })
				if err != nil {
					if all {
						m.log.Warn("Beacon node refused", "op", op, "beacon", mem.name, "err", err)
					}
					err = fmt.Errorf("%s: %w", mem.name, err)
				}
				results <- result{v, err}
			}) {
				release()
				continue
			}
			if pending++; !all {
				return
			}
		}
	}
	launch()
	hedge := time.NewTimer(m.cfg.HedgeDelay)
	defer hedge.Stop()
	var errs []error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				return r.v, nil
			}
			errs = append(errs, r.err)
			launch()
			hedge.Reset(m.cfg.HedgeDelay)
		case <-hedge.C:
			launch()
			hedge.Reset(m.cfg.HedgeDelay)
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			pending = 0
		case <-m.ctx.Done():
			return zero, errStopped
		}
	}
	return zero, cmp.Or(errors.Join(errs...), errStopped)
}

// requestContext derives the context of race's requests from ctx: if detached, one with ctx's
// values and deadline that cancelling ctx does not end.
func requestContext(ctx context.Context, detached bool) (context.Context, context.CancelFunc) {
	if !detached {
		return context.WithCancel(ctx)
	}
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	return context.WithCancel(context.WithoutCancel(ctx))
}

// SlotDuration implements Beacon.
func (m *MultiBeacon) SlotDuration(ctx context.Context) (time.Duration, error) {
	d, err := read(m, ctx, "slot duration", func(ctx context.Context, b Beacon) (time.Duration, error) { return b.SlotDuration(ctx) })
	if err == nil {
		m.mu.Lock()
		m.slotDur = d
		m.mu.Unlock()
	}
	return d, err
}

// Chain implements Beacon. The first answer fixes the chain: a node that later names another one
// is never used again.
func (m *MultiBeacon) Chain(ctx context.Context) (*Chain, error) {
	return read(m, ctx, "chain", func(ctx context.Context, b Beacon) (*Chain, error) {
		c, err := b.Chain(ctx)
		if err == nil && c == nil {
			err = fmt.Errorf("%w: no chain", ErrBeacon)
		}
		if err != nil {
			return nil, err
		}
		return c, m.adoptChain(c)
	})
}

// adoptChain makes c the chain if none is yet, or checks that c is it.
func (m *MultiBeacon) adoptChain(c *Chain) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.SlotDuration <= 0 || c.SlotsPerEpoch == 0 {
		return fmt.Errorf("%w: slot duration %v, %d slots per epoch", ErrBeacon, c.SlotDuration, c.SlotsPerEpoch)
	}
	if m.chain == nil {
		m.chain, m.slotDur = c, c.SlotDuration
		return nil
	}
	a := m.chain
	if a.GenesisValidatorsRoot != c.GenesisValidatorsRoot || a.GenesisForkVersion != c.GenesisForkVersion ||
		!a.GenesisTime.Equal(c.GenesisTime) || a.SlotDuration != c.SlotDuration || a.SlotsPerEpoch != c.SlotsPerEpoch {
		return fmt.Errorf("%w: genesis validators root %#x, fork version %#x, genesis %s; the others' are %#x, %#x, %s",
			errWrongChain, c.GenesisValidatorsRoot, c.GenesisForkVersion, c.GenesisTime.UTC().Format(time.RFC3339),
			a.GenesisValidatorsRoot, a.GenesisForkVersion, a.GenesisTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// ValidatorIndices implements Beacon.
func (m *MultiBeacon) ValidatorIndices(ctx context.Context, pubkeys []phase0.BLSPubKey) (map[phase0.BLSPubKey]phase0.ValidatorIndex, error) {
	return read(m, ctx, "validator indices", func(ctx context.Context, b Beacon) (map[phase0.BLSPubKey]phase0.ValidatorIndex, error) {
		return b.ValidatorIndices(ctx, pubkeys)
	})
}

// AttesterDuties implements Beacon.
func (m *MultiBeacon) AttesterDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.AttesterDuty, error) {
	return read(m, ctx, "attester duties", func(ctx context.Context, b Beacon) ([]*apiv1.AttesterDuty, error) {
		d, err := b.AttesterDuties(ctx, epoch, indices)
		if err == nil && slices.Contains(d, nil) {
			return nil, fmt.Errorf("%w: nil attester duty", ErrBeacon)
		}
		return d, err
	})
}

// AttestationData implements Beacon.
func (m *MultiBeacon) AttestationData(ctx context.Context, slot phase0.Slot) (*phase0.AttestationData, error) {
	return read(m, ctx, "attestation data", func(ctx context.Context, b Beacon) (*phase0.AttestationData, error) {
		d, err := b.AttestationData(ctx, slot)
		if err == nil && (d == nil || d.Source == nil || d.Target == nil) {
			return nil, fmt.Errorf("%w: incomplete attestation data", ErrBeacon)
		}
		return d, err
	})
}

// ValidatorLiveness implements Beacon.
func (m *MultiBeacon) ValidatorLiveness(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) (map[phase0.ValidatorIndex]bool, error) {
	return read(m, ctx, "validator liveness", func(ctx context.Context, b Beacon) (map[phase0.ValidatorIndex]bool, error) {
		return b.ValidatorLiveness(ctx, epoch, indices)
	})
}

// HeadSlot implements Beacon.
func (m *MultiBeacon) HeadSlot(ctx context.Context) (phase0.Slot, error) {
	return read(m, ctx, "head slot", func(ctx context.Context, b Beacon) (phase0.Slot, error) { return b.HeadSlot(ctx) })
}

// JustifiedEpoch implements Beacon.
func (m *MultiBeacon) JustifiedEpoch(ctx context.Context, state string) (phase0.Epoch, error) {
	return read(m, ctx, "justified epoch", func(ctx context.Context, b Beacon) (phase0.Epoch, error) { return b.JustifiedEpoch(ctx, state) })
}

// SubmitAttestations sends atts to every healthy node at once (to the unhealthy ones only if all
// healthy ones refused) and returns nil as soon as one accepted. The other submissions carry on
// until they finish, ctx's deadline passes or m stops: cancelling ctx does not stop them, so a
// caller may cancel right after a success. Each refusal is logged; if all refuse, the error joins
// theirs.
func (m *MultiBeacon) SubmitAttestations(ctx context.Context, atts []*spec.VersionedAttestation) error {
	_, err := tryGroups(m, ctx, fmt.Sprintf("submit %d attestations", len(atts)), true, func(ctx context.Context, b Beacon) (struct{}, error) {
		return struct{}{}, b.SubmitAttestations(ctx, atts)
	})
	return err
}

// SubscribeHeads subscribes on every usable node and calls fn, never concurrently, with each head
// of a slot higher than any passed before (so once per slot whichever nodes report it), or of
// the same slot with other dependent roots (a reorg), until ctx
// ends or m stops. A node whose subscription fails is retried with backoff. It returns an error
// only if every node's first attempt failed; the retries carry on regardless. A node's
// SubscribeHeads must return once subscribed, as httpBeacon's does.
func (m *MultiBeacon) SubscribeHeads(ctx context.Context, fn func(HeadEvent)) error {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	if !m.spawn(func() { <-sctx.Done(); stop(); cancel() }) {
		stop()
		cancel()
		return errStopped
	}
	var (
		mu   sync.Mutex
		last HeadEvent
		seen bool
	)
	forward := func(mem *member) func(HeadEvent) {
		return func(e HeadEvent) {
			m.mu.Lock()
			wrong := mem.wrongChain
			m.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			sameRoots := e.PreviousDutyDependentRoot == last.PreviousDutyDependentRoot && e.CurrentDutyDependentRoot == last.CurrentDutyDependentRoot
			if wrong || sctx.Err() != nil || (seen && (e.Slot < last.Slot || (e.Slot == last.Slot && sameRoots))) {
				return
			}
			last, seen = e, true
			fn(e)
		}
	}
	healthy, unhealthy := m.ordered()
	members := append(healthy, unhealthy...)
	first := make(chan error, len(members))
	for _, mem := range members {
		m.spawn(func() {
			for attempt := 0; ; attempt++ {
				err := safely(func() error { return mem.b.SubscribeHeads(sctx, forward(mem)) })
				if err != nil {
					m.book(mem, "subscribe to heads", 0, err, sctx.Err() != nil)
					m.log.Debug("Head subscription failed; retrying", "beacon", mem.name, "err", err)
					err = fmt.Errorf("%s: %w", mem.name, err)
				}
				if attempt == 0 {
					first <- err
				}
				backoff := min(time.Second<<min(attempt, 5), 30*time.Second)
				if err == nil || !sleepCtx(sctx, backoff) {
					return
				}
			}
		})
	}
	var errs []error
	for range members {
		select {
		case err := <-first:
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		case <-sctx.Done():
			return fmt.Errorf("subscribe to heads: %w", cmp.Or(ctx.Err(), errStopped))
		}
	}
	return fmt.Errorf("subscribe to heads on any beacon node (retrying in the background): %w", errors.Join(errs...))
}

// sleepCtx waits d or until ctx ends, reporting whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// checkLoop runs the health check now and every interval until m stops.
func (m *MultiBeacon) checkLoop() {
	for {
		m.check(m.ctx)
		if !sleepCtx(m.ctx, m.interval()) {
			return
		}
	}
}

func (m *MultiBeacon) interval() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return cmp.Or(m.cfg.CheckInterval, m.slotDur, 2*time.Second)
}

// check probes every usable node's head (and, until it matched once, its chain) and sets its
// health: unhealthy if the probe fails, if its head is ahead of the chain clock, trails the best
// head by more than MaxBehind slots or trails the clock by more than an epoch (syncing).
func (m *MultiBeacon) check(ctx context.Context) {
	heads := make([]phase0.Slot, len(m.members))
	errs := make([]error, len(m.members))
	timeout := min(m.cfg.Timeout, m.interval()/2) // a node slower than that is not healthy
	var wg sync.WaitGroup
	for i, mem := range m.members {
		m.mu.Lock()
		skip, verify := mem.wrongChain, m.chain != nil && !mem.chainOK
		m.mu.Unlock()
		if skip {
			continue
		}
		wg.Go(func() {
			errs[i] = m.do(ctx, timeout, mem, "head probe", func(c context.Context, b Beacon) (err error) {
				heads[i], err = b.HeadSlot(c)
				return err
			})
			if verify && errs[i] == nil {
				_ = m.do(ctx, timeout, mem, "chain check", func(c context.Context, b Beacon) error {
					if ch, err := b.Chain(c); err != nil || ch == nil {
						return nil // not telling (yet): the head probe judges its health
					} else if err := m.adoptChain(ch); err != nil {
						return err
					}
					m.mu.Lock()
					mem.chainOK = true
					m.mu.Unlock()
					return nil
				})
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var clock phase0.Slot
	started := false
	if m.chain != nil {
		clock, started = m.chain.SlotAt(time.Now())
	}
	ahead := func(h phase0.Slot) bool { return started && h > clock+1 } // a lie, or a wrong clock
	var best phase0.Slot
	for i := range m.members {
		if errs[i] == nil && !ahead(heads[i]) {
			best = max(best, heads[i])
		}
	}
	for i, mem := range m.members {
		if mem.wrongChain {
			m.setHealthLocked(mem, "")
			continue
		}
		reason := ""
		switch h := heads[i]; {
		case errs[i] != nil:
			reason = "head probe: " + errs[i].Error()
		case ahead(h):
			reason = fmt.Sprintf("head slot %d is ahead of the clock's slot %d", h, clock)
		case h+m.cfg.MaxBehind < best:
			reason = fmt.Sprintf("head slot %d is %d slots behind the best node's %d", h, best-h, best)
		case started && uint64(h)+m.chain.SlotsPerEpoch < uint64(clock):
			reason = fmt.Sprintf("syncing: head slot %d, clock slot %d", h, clock)
		}
		m.setHealthLocked(mem, reason)
	}
}
