package consensus

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
)

func applyEntry(t *testing.T, f *fsm, duty Duty, value string) applyResult {
	t.Helper()
	b, err := encodeEntry(duty, []byte(value))
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	r, _ := f.Apply(&raft.Log{Type: raft.LogCommand, Data: b}).(applyResult)
	return r
}

func TestFSMFirstCommittedWins(t *testing.T) {
	f := newFSM(DefaultRetainSlots, testLogger(t))
	d := Duty{Slot: 7, Type: "attester"}
	waiter := f.wait(d)
	if r := applyEntry(t, f, d, "first"); r.err != nil || string(r.value) != "first" {
		t.Fatalf("first apply: %+v", r)
	}
	select {
	case <-waiter:
	default:
		t.Fatal("waiter not released on decision")
	}
	if r := applyEntry(t, f, d, "second"); r.err != nil || string(r.value) != "first" {
		t.Fatalf("second apply returned %+v, want first", r)
	}
	if v, ok, _ := f.get(d); !ok || string(v) != "first" {
		t.Fatalf("decided %q, %v; want first", v, ok)
	}
	// Another type in the same slot is a separate duty; an empty value is a value.
	d2 := Duty{Slot: 7, Type: "aggregator"}
	applyEntry(t, f, d2, "")
	if v, ok, _ := f.get(d2); !ok || len(v) != 0 {
		t.Fatalf("empty value: %q, %v", v, ok)
	}
	// Non-command entries are ignored.
	if r := f.Apply(&raft.Log{Type: raft.LogNoop}); r != nil {
		t.Fatalf("noop apply returned %v", r)
	}
}

func TestFSMMalformedEntries(t *testing.T) {
	f := newFSM(DefaultRetainSlots, testLogger(t))
	good, _ := encodeEntry(Duty{Slot: 1, Type: "attester"}, []byte("v"))
	hugeLen := bytes.Clone(good)
	binary.BigEndian.PutUint32(hugeLen[entryHeader+len("attester"):], 1<<31)
	cases := map[string][]byte{
		"nil":          nil,
		"empty":        {},
		"short":        good[:5],
		"version 2":    append([]byte{2}, good[1:]...),
		"zero type":    {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0},
		"type overrun": {1, 0, 0, 0, 0, 0, 0, 0, 1, 200, 'a'},
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"huge length":  hugeLen,
		"json":         []byte(`{"slot":1,"type":"attester","value":"dg=="}`),
	}
	for name, b := range cases {
		r, _ := f.Apply(&raft.Log{Type: raft.LogCommand, Data: b}).(applyResult)
		if r.err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 && len(b) > 0 {
			b[0] = entryVersion
		}
		f.Apply(&raft.Log{Type: raft.LogCommand, Data: b})
	}
	if r := applyEntry(t, f, Duty{Slot: 1, Type: "attester"}, "v"); r.err != nil {
		t.Fatalf("good entry after garbage: %v", r.err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	good, _ := encodeEntry(Duty{Slot: 1, Type: "attester"}, []byte("v"))
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, v, err := decodeEntry(b)
		if err != nil {
			return
		}
		re, err := encodeEntry(d, v)
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("decoded %v/%q does not re-encode to input: %v", d, v, err)
		}
	})
}

func TestFSMTrimming(t *testing.T) {
	f := newFSM(10, testLogger(t))
	old := Duty{Slot: 1, Type: "attester"}
	applyEntry(t, f, old, "old")
	pending := Duty{Slot: 3, Type: "attester"}
	waiter := f.wait(pending)
	applyEntry(t, f, Duty{Slot: 20, Type: "attester"}, "new") // horizon 10
	if _, ok, expired := f.get(old); ok || !expired {
		t.Fatalf("slot 1 not trimmed: ok=%v expired=%v", ok, expired)
	}
	select {
	case <-waiter:
	default:
		t.Fatal("waiter on expired duty not released")
	}
	if r := applyEntry(t, f, Duty{Slot: 5, Type: "attester"}, "late"); r.err == nil {
		t.Fatal("entry below horizon accepted")
	}
	if r := applyEntry(t, f, Duty{Slot: 10, Type: "attester"}, "edge"); r.err != nil {
		t.Fatalf("entry at horizon refused: %v", r.err)
	}
	if len(f.decided) != 2 || len(f.waiters) != 0 {
		t.Fatalf("decided %d waiters %d, want 2 and 0", len(f.decided), len(f.waiters))
	}
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM(100, testLogger(t))
	want := map[Duty]string{}
	for slot := uint64(1); slot <= 50; slot++ {
		for _, typ := range []string{"attester", "proposer"} {
			d := Duty{Slot: slot, Type: typ}
			applyEntry(t, f, d, d.String())
			want[d] = d.String()
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applying after Snapshot must not change what is persisted.
	applyEntry(t, f, Duty{Slot: 51, Type: "attester"}, "after")
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.cancelled {
		t.Fatalf("persist: %v cancelled=%v", err, sink.cancelled)
	}
	snap.Release()

	g := newFSM(100, testLogger(t))
	restored := Duty{Slot: 3, Type: "attester"}
	pending := Duty{Slot: 60, Type: "attester"}
	w1, w2 := g.wait(restored), g.wait(pending)
	applyEntry(t, g, Duty{Slot: 99, Type: "stale"}, "discarded by restore")
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(g.decided) != len(want) || g.newest != 50 {
		t.Fatalf("restored %d duties newest %d, want %d and 50", len(g.decided), g.newest, len(want))
	}
	for d, v := range want {
		if got, ok, _ := g.get(d); !ok || string(got) != v {
			t.Fatalf("restored %s = %q, want %q", d, got, v)
		}
	}
	select {
	case <-w1:
	default:
		t.Fatal("waiter for restored duty not released")
	}
	select {
	case <-w2:
		t.Fatal("waiter for undecided duty released")
	default:
	}
	// Restore trims with the local horizon and rejects bad input.
	h := newFSM(10, testLogger(t))
	if err := h.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil || len(h.decided) != 22 {
		t.Fatalf("restore with retain 10: %v, %d duties, want 22", err, len(h.decided))
	}
	for _, bad := range []string{"", "{", `{"version":2}`, `{"version":1,"decided":[{"slot":1,"type":""}]}`} {
		if err := h.Restore(io.NopCloser(bytes.NewReader([]byte(bad)))); err == nil {
			t.Errorf("restore %q succeeded", bad)
		}
	}
}
