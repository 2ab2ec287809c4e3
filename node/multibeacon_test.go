package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// fakeBeacon is a scriptable beacon node. Its attestation data carries its id in Index, so a
// test can tell which node answered.
type fakeBeacon struct {
	id        uint64
	delay     atomic.Int64 // nanoseconds every read waits (honouring ctx) before answering
	down      atomic.Bool  // every method fails
	reject    atomic.Bool  // SubmitAttestations fails
	subFails  atomic.Int32 // SubscribeHeads fails this many more times
	head      atomic.Uint64
	headDelay atomic.Int64 // nanoseconds HeadSlot takes
	gvr       phase0.Root
	reads     atomic.Int32 // AttestationData calls
	cancelled atomic.Int32 // reads that ended by cancellation
	submits   atomic.Int32 // SubmitAttestations calls

	mu   sync.Mutex
	subs []func(HeadEvent)

	DutyBeacon // the duties beyond attesting are not scripted: calling one panics the test
}

var errFakeDown = errors.New("fake beacon down")

func (f *fakeBeacon) wait(ctx context.Context) error {
	if f.down.Load() {
		return errFakeDown
	}
	select {
	case <-time.After(time.Duration(f.delay.Load())):
		return nil
	case <-ctx.Done():
		f.cancelled.Add(1)
		return ctx.Err()
	}
}

func (f *fakeBeacon) SlotDuration(ctx context.Context) (time.Duration, error) {
	return time.Second, f.wait(ctx)
}

func (f *fakeBeacon) Chain(ctx context.Context) (*Chain, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &Chain{GenesisTime: time.Unix(1000, 0), GenesisValidatorsRoot: f.gvr, SlotDuration: time.Second, SlotsPerEpoch: 4}, nil
}

func (f *fakeBeacon) ValidatorIndices(ctx context.Context, _ []phase0.BLSPubKey) (map[phase0.BLSPubKey]phase0.ValidatorIndex, error) {
	return map[phase0.BLSPubKey]phase0.ValidatorIndex{}, f.wait(ctx)
}

func (f *fakeBeacon) AttesterDuties(ctx context.Context, _ phase0.Epoch, _ []phase0.ValidatorIndex) ([]*apiv1.AttesterDuty, error) {
	return nil, f.wait(ctx)
}

func (f *fakeBeacon) AttestationData(ctx context.Context, slot phase0.Slot) (*phase0.AttestationData, error) {
	f.reads.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &phase0.AttestationData{Slot: slot, Index: phase0.CommitteeIndex(f.id), Source: &phase0.Checkpoint{}, Target: &phase0.Checkpoint{}}, nil
}

func (f *fakeBeacon) ValidatorLiveness(ctx context.Context, _ phase0.Epoch, _ []phase0.ValidatorIndex) (map[phase0.ValidatorIndex]bool, error) {
	return nil, f.wait(ctx)
}

func (f *fakeBeacon) HeadSlot(ctx context.Context) (phase0.Slot, error) {
	if f.down.Load() {
		return 0, errFakeDown
	}
	time.Sleep(time.Duration(f.headDelay.Load()))
	return phase0.Slot(f.head.Load()), ctx.Err()
}

func (f *fakeBeacon) JustifiedEpoch(ctx context.Context, _ string) (phase0.Epoch, error) {
	return 0, f.wait(ctx)
}

func (f *fakeBeacon) SubmitAttestations(ctx context.Context, _ []*spec.VersionedAttestation) error {
	f.submits.Add(1)
	if err := f.wait(ctx); err != nil {
		return err
	}
	if f.reject.Load() {
		return &api.Error{Method: "POST", StatusCode: 400, Data: []byte("attestations refused")}
	}
	return nil
}

func (f *fakeBeacon) SubscribeHeads(ctx context.Context, fn func(HeadEvent)) error {
	if f.down.Load() || f.subFails.Add(-1) >= 0 {
		return errFakeDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, fn)
	return nil
}

// emit reports a new head to every subscriber.
func (f *fakeBeacon) emit(slot phase0.Slot) {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, fn := range subs {
		fn(HeadEvent{Slot: slot})
	}
}

var mbTestLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestMulti builds a MultiBeacon over n fakes named a, b, c..., set up by prep first, whose
// goroutines end with the test.
func newTestMulti(t *testing.T, n int, cfg MultiBeaconConfig, prep ...func([]*fakeBeacon)) (*MultiBeacon, []*fakeBeacon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var fakes []*fakeBeacon
	var nodes []NamedBeacon
	for i := range n {
		f := &fakeBeacon{id: uint64(i)}
		f.head.Store(100)
		fakes = append(fakes, f)
		nodes = append(nodes, NamedBeacon{Name: string(rune('a' + i)), Beacon: f})
	}
	for _, p := range prep {
		p(fakes)
	}
	m, err := NewMultiBeaconFrom(ctx, nodes, cfg, mbTestLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); m.Wait() })
	return m, fakes
}

// eventually fails the test unless cond holds within 5 s.
func mbEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

func mbHealthy(m *MultiBeacon, i int) bool { return m.Stats()[i].Healthy }

func mbAnsweredBy(t *testing.T, m *MultiBeacon) uint64 {
	t.Helper()
	d, err := m.AttestationData(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if d.Slot != 7 {
		t.Fatalf("asked for slot 7, got %d", d.Slot)
	}
	return uint64(d.Index)
}

func TestMultiBeacon_SlowNodeHedged(t *testing.T) {
	// One health check only, in which node a answers faster: it is asked first.
	m, f := newTestMulti(t, 2, MultiBeaconConfig{HedgeDelay: 40 * time.Millisecond, CheckInterval: time.Hour},
		func(f []*fakeBeacon) { f[1].headDelay.Store(int64(5 * time.Millisecond)) })
	mbEventually(t, "both probed", func() bool { return m.Stats()[0].LastLatency > 0 && m.Stats()[1].LastLatency > 0 })
	f[0].delay.Store(int64(10 * time.Second))
	start := time.Now()
	if got := mbAnsweredBy(t, m); got != 1 {
		t.Fatalf("answered by node %d, want the fast node 1", got)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("hedged read took %v", took)
	}
	if f[0].reads.Load() != 1 || f[1].reads.Load() != 1 {
		t.Fatalf("reads: slow %d, fast %d; want 1 each", f[0].reads.Load(), f[1].reads.Load())
	}
	mbEventually(t, "the slow node's request cancelled", func() bool { return f[0].cancelled.Load() == 1 })
	// The slow node lost its place: the next read goes to the fast node alone.
	if got := mbAnsweredBy(t, m); got != 1 || f[0].reads.Load() != 1 {
		t.Fatalf("second read answered by %d with %d reads of the slow node", got, f[0].reads.Load())
	}
}

func TestMultiBeacon_FailingNodeSkippedThenRetried(t *testing.T) {
	m, f := newTestMulti(t, 2, MultiBeaconConfig{HedgeDelay: time.Second, CheckInterval: 40 * time.Millisecond})
	mbEventually(t, "first health check", func() bool { return m.Stats()[0].LastLatency > 0 })
	f[0].down.Store(true)
	start := time.Now()
	if got := mbAnsweredBy(t, m); got != 1 {
		t.Fatalf("answered by %d, want 1", got)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("a failed node must be hedged at once, not after the hedge delay: took %v", took)
	}
	mbEventually(t, "node a unhealthy", func() bool { return !mbHealthy(m, 0) })
	if st := m.Stats()[0]; st.Errors == 0 || st.Reason == "" {
		t.Fatalf("stats of the failed node: %+v", st)
	}
	reads := f[0].reads.Load()
	for range 5 {
		mbAnsweredBy(t, m)
	}
	if f[0].reads.Load() != reads {
		t.Fatal("an unhealthy node was asked while a healthy one answers")
	}
	f[0].down.Store(false)
	mbEventually(t, "node a healthy again", func() bool { return mbHealthy(m, 0) })
	f[1].down.Store(true)
	mbEventually(t, "node a answers", func() bool { return mbAnsweredBy(t, m) == 0 })
}

func TestMultiBeacon_AllUnhealthyStillTried(t *testing.T) {
	m, _ := newTestMulti(t, 2, MultiBeaconConfig{CheckInterval: 40 * time.Millisecond})
	// The fakes' chain began in 1970 with 1 s slots: heads at slot 100 are syncing.
	if _, err := m.Chain(context.Background()); err != nil {
		t.Fatal(err)
	}
	mbEventually(t, "both syncing", func() bool { return !mbHealthy(m, 0) && !mbHealthy(m, 1) })
	if r := m.Stats()[0].Reason; !strings.Contains(r, "syncing") {
		t.Fatalf("reason %q", r)
	}
	mbAnsweredBy(t, m) // a syncing node's answer beats none
}

func TestMultiBeacon_NodeBehindDeprioritised(t *testing.T) {
	m, f := newTestMulti(t, 2, MultiBeaconConfig{CheckInterval: 40 * time.Millisecond})
	f[0].head.Store(97) // 3 slots behind node b
	mbEventually(t, "node a behind", func() bool { return !mbHealthy(m, 0) })
	if r := m.Stats()[0].Reason; !strings.Contains(r, "behind") {
		t.Fatalf("reason %q", r)
	}
	if got := mbAnsweredBy(t, m); got != 1 || f[0].reads.Load() != 0 {
		t.Fatalf("answered by %d; node behind read %d times", got, f[0].reads.Load())
	}
	f[0].head.Store(98) // within 2 slots
	mbEventually(t, "node a caught up", func() bool { return mbHealthy(m, 0) })
}

func TestMultiBeacon_HeadAheadOfClockDistrusted(t *testing.T) {
	m, f := newTestMulti(t, 2, MultiBeaconConfig{CheckInterval: 40 * time.Millisecond})
	if _, err := m.Chain(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock := uint64(time.Since(time.Unix(1000, 0)) / time.Second) // the fakes' chain has 1 s slots
	f[0].head.Store(clock + 100)
	f[1].head.Store(clock)
	mbEventually(t, "node a distrusted for being ahead, b healthy", func() bool {
		return strings.Contains(m.Stats()[0].Reason, "ahead") && mbHealthy(m, 1)
	})
}

func TestMultiBeacon_SubmitsToAllHealthy(t *testing.T) {
	m, f := newTestMulti(t, 3, MultiBeaconConfig{CheckInterval: 40 * time.Millisecond})
	f[1].reject.Store(true)
	f[2].down.Store(true)
	mbEventually(t, "node c unhealthy", func() bool { return !mbHealthy(m, 2) })
	if err := m.SubmitAttestations(context.Background(), nil); err != nil {
		t.Fatalf("one node accepted, yet: %v", err)
	}
	mbEventually(t, "a and b submitted to", func() bool { return f[0].submits.Load() == 1 && f[1].submits.Load() == 1 })
	if f[2].submits.Load() != 0 {
		t.Fatal("unhealthy node submitted to while healthy ones exist")
	}
	// A refusal is not ill health; a slow node does not hold up the accepting one.
	if !mbHealthy(m, 1) {
		t.Fatal("a refused submission marked the node unhealthy")
	}
	f[1].reject.Store(false)
	f[1].delay.Store(int64(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.SubmitAttestations(ctx, nil); err != nil {
		t.Fatal(err)
	}
	f[1].delay.Store(0)
	f[0].reject.Store(true)
	f[1].reject.Store(true)
	err := m.SubmitAttestations(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "a: ") || !strings.Contains(err.Error(), "b: ") || !strings.Contains(err.Error(), "c: ") {
		t.Fatalf("want every node's refusal joined, got %v", err)
	}
}

func TestMultiBeacon_SubscribeHeadsDedupes(t *testing.T) {
	m, f := newTestMulti(t, 3, MultiBeaconConfig{CheckInterval: time.Hour})
	f[2].subFails.Store(1) // first attempt fails, the retry (after 1 s) succeeds
	var mu sync.Mutex
	var got []phase0.Slot
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.SubscribeHeads(ctx, func(e HeadEvent) { mu.Lock(); got = append(got, e.Slot); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		node int
		slot phase0.Slot
	}{{0, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 2}, {1, 1}, {1, 2}} {
		f[e.node].emit(e.slot)
	}
	mbEventually(t, "node c resubscribed", func() bool { f[2].mu.Lock(); defer f[2].mu.Unlock(); return len(f[2].subs) == 1 })
	f[2].emit(3)
	f[0].emit(3)
	cancel()
	f[1].emit(4)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []phase0.Slot{0, 1, 2, 3}) {
		t.Fatalf("forwarded %v, want [0 1 2 3]", got)
	}
}

func TestMultiBeacon_WrongChainNeverUsed(t *testing.T) {
	m, f := newTestMulti(t, 2, MultiBeaconConfig{CheckInterval: 40 * time.Millisecond}, func(f []*fakeBeacon) {
		f[1].gvr = phase0.Root{1}
		f[1].headDelay.Store(int64(5 * time.Millisecond)) // node a is asked first, and answers Chain
	})
	mbEventually(t, "both probed", func() bool { return m.Stats()[1].LastLatency > 0 })
	if _, err := m.Chain(context.Background()); err != nil {
		t.Fatal(err)
	}
	mbEventually(t, "node b excluded", func() bool { return !mbHealthy(m, 1) && strings.Contains(m.Stats()[1].Reason, "chain") })
	f[0].down.Store(true)
	if _, err := m.AttestationData(context.Background(), 1); err == nil || f[1].reads.Load() != 0 {
		t.Fatalf("node on another chain was asked (%d reads, err %v)", f[1].reads.Load(), err)
	}
}

// TestMultiBeacon_CancelStopsEverything cancels with reads, a submission and a subscription in
// flight against a hanging node: every goroutine ends and later calls fail cleanly.
func TestMultiBeacon_CancelStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	hang := &fakeBeacon{id: 0}
	hang.delay.Store(int64(time.Hour))
	nodes := []NamedBeacon{{Name: "hang", Beacon: hang}, {Name: "ok", Beacon: &fakeBeacon{id: 1}}}
	m, err := NewMultiBeaconFrom(ctx, nodes, MultiBeaconConfig{CheckInterval: 5 * time.Millisecond, HedgeDelay: time.Hour}, mbTestLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SubscribeHeads(context.Background(), func(HeadEvent) {}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = m.AttestationData(context.Background(), 1) })
	}
	wg.Go(func() { _ = m.SubmitAttestations(context.Background(), nil) })
	time.Sleep(30 * time.Millisecond)
	cancel()
	wg.Wait()
	m.Wait()
	if _, err := m.AttestationData(context.Background(), 1); err == nil {
		t.Fatal("a stopped MultiBeacon answered")
	}
	if err := m.SubmitAttestations(context.Background(), nil); err == nil {
		t.Fatal("a stopped MultiBeacon accepted a submission")
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	}
}

// badBeacon answers attestation data with nothing, or panics.
type badBeacon struct {
	*fakeBeacon
	panics bool
}

func (b badBeacon) AttestationData(context.Context, phase0.Slot) (*phase0.AttestationData, error) {
	if b.panics {
		panic("client choked on the answer")
	}
	return nil, nil
}

func TestMultiBeacon_BadAnswersAreErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nodes := []NamedBeacon{
		{Name: "nil", Beacon: badBeacon{fakeBeacon: &fakeBeacon{}}},
		{Name: "panic", Beacon: badBeacon{fakeBeacon: &fakeBeacon{}, panics: true}},
		{Name: "good", Beacon: &fakeBeacon{id: 2}},
	}
	m, err := NewMultiBeaconFrom(ctx, nodes, MultiBeaconConfig{CheckInterval: time.Hour}, mbTestLog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); m.Wait() }()
	if got := mbAnsweredBy(t, m); got != 2 {
		t.Fatalf("answered by %d", got)
	}
	nodes[2].Beacon.(*fakeBeacon).down.Store(true)
	_, err = m.AttestationData(context.Background(), 7)
	if err == nil || !strings.Contains(err.Error(), "incomplete") || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("want both bad answers reported, got %v", err)
	}
}

func TestMultiBeacon_URLsRedactedAndChecked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := NewMultiBeacon(ctx, []string{"http://user:secret@127.0.0.1:1/?apikey=k", "http://127.0.0.1:2"}, time.Second, mbTestLog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); m.Wait() }()
	if got := m.Stats()[0].URL; strings.Contains(got, "secret") || strings.Contains(got, "apikey") {
		t.Fatalf("stats leak credentials: %s", got)
	}
	if _, err := NewMultiBeacon(ctx, []string{"http://127.0.0.1:1", "http://127.0.0.1:1"}, time.Second, mbTestLog); err == nil {
		t.Fatal("duplicate URL accepted")
	}
	if _, err := NewMultiBeacon(ctx, nil, time.Second, mbTestLog); err == nil {
		t.Fatal("no URL accepted")
	}
}
