package consensus

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrExpired is returned for a duty older than the FSM's retention window:
// its value (if any) has been trimmed and no new value will be accepted.
var ErrExpired = errors.New("duty older than retention window")

// fsm is the replicated state machine: the first committed value per duty.
//
// It keeps duties whose slot is at least newest-retain, where newest is the
// highest slot of any applied entry. Entries for older duties are ignored, so a
// trimmed duty can never be decided a second time. Every node of a cluster
// must use the same retain for Apply to be deterministic.
type fsm struct {
	log    *slog.Logger
	retain uint64

	mu      sync.Mutex
	decided map[Duty][]byte
	newest  uint64
	// waiters holds one channel per awaited duty, closed once the duty is
	// decided or falls out of the retention window.
	waiters map[Duty]chan struct{}
}

// applyResult is the response of fsm.Apply (ApplyFuture.Response).
type applyResult struct {
	value []byte
	err   error
}

func newFSM(retain uint64, log *slog.Logger) *fsm {
	return &fsm{
		log:     log,
		retain:  retain,
		decided: make(map[Duty][]byte),
		waiters: make(map[Duty]chan struct{}),
	}
}

var _ raft.FSM = (*fsm)(nil)

// Apply records the entry's value unless its duty is already decided (first
// committed wins) or expired. Malformed entries are logged and ignored. It
// returns an applyResult holding the duty's decided value.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	duty, value, err := decodeEntry(l.Data)
	if err != nil {
		f.log.Warn("Ignoring malformed consensus log entry", "index", l.Index, "err", err)
		return applyResult{err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if duty.Slot < f.horizonLocked() {
		return applyResult{err: ErrExpired}
	}
	if v, ok := f.decided[duty]; ok {
		return applyResult{value: v}
	}
	v := slices.Clone(value) // l.Data may be reused by the log store/cache.
	if v == nil {
		v = []byte{}
	}
	f.decided[duty] = v
	if ch, ok := f.waiters[duty]; ok {
		close(ch)
		delete(f.waiters, duty)
	}
	if duty.Slot > f.newest {
		f.newest = duty.Slot
		f.trimLocked()
	}
	return applyResult{value: v}
}

// horizonLocked returns the lowest slot still retained.
func (f *fsm) horizonLocked() uint64 {
	if f.newest > f.retain {
		return f.newest - f.retain
	}
	return 0
}

// trimLocked drops decided values below the horizon and releases their waiters.
func (f *fsm) trimLocked() {
	h := f.horizonLocked()
	for d := range f.decided {
		if d.Slot < h {
			delete(f.decided, d)
		}
	}
	for d, ch := range f.waiters {
		if d.Slot < h {
			close(ch)
			delete(f.waiters, d)
		}
	}
}

// get returns the decided value for duty (shared; callers must not modify it)
// and whether the duty is expired.
func (f *fsm) get(duty Duty) (value []byte, ok, expired bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.decided[duty]
	return v, ok, !ok && duty.Slot < f.horizonLocked()
}

// wait returns a channel closed once duty is decided or expired (already
// closed if it is now).
func (f *fsm) wait(duty Duty) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.decided[duty]; ok || duty.Slot < f.horizonLocked() {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch, ok := f.waiters[duty]
	if !ok {
		ch = make(chan struct{})
		f.waiters[duty] = ch
	}
	return ch
}

// snapshotVersion versions the snapshot encoding.
const snapshotVersion = 1

type snapshotData struct {
	Version int             `json:"version"`
	Newest  uint64          `json:"newest"`
	Decided []snapshotEntry `json:"decided"`
}

type snapshotEntry struct {
	Slot  uint64 `json:"slot"`
	Type  string `json:"type"`
	Value []byte `json:"value"`
}

// Snapshot captures the decided map. Values are immutable once stored, so a
// shallow copy of the map suffices.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data := snapshotData{Version: snapshotVersion, Newest: f.newest, Decided: make([]snapshotEntry, 0, len(f.decided))}
	for d, v := range f.decided {
		data.Decided = append(data.Decided, snapshotEntry{Slot: d.Slot, Type: d.Type, Value: v})
	}
	slices.SortFunc(data.Decided, func(a, b snapshotEntry) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.Type, b.Type))
	})
	return &fsmSnapshot{data: data}, nil
}

// Restore replaces the FSM state with the snapshot's, dropping duties below
// the horizon, and wakes waiters whose duty is now decided or expired.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var data snapshotData
	if err := json.NewDecoder(rc).Decode(&data); err != nil {
		return fmt.Errorf("decode consensus snapshot: %w", err)
	}
	if data.Version != snapshotVersion {
		return fmt.Errorf("consensus snapshot version %d unsupported", data.Version)
	}
	decided := make(map[Duty][]byte, len(data.Decided))
	for _, e := range data.Decided {
		if err := validate(Duty{Slot: e.Slot, Type: e.Type}, e.Value); err != nil {
			return fmt.Errorf("consensus snapshot entry %d/%q: %w", e.Slot, e.Type, err)
		}
		v := e.Value
		if v == nil {
			v = []byte{}
		}
		decided[Duty{Slot: e.Slot, Type: e.Type}] = v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decided = decided
	f.newest = data.Newest
	f.trimLocked()
	for d, ch := range f.waiters {
		if _, ok := f.decided[d]; ok {
			close(ch)
			delete(f.waiters, d)
		}
	}
	return nil
}

// fsmSnapshot is a point-in-time copy of the FSM, persisted as JSON.
type fsmSnapshot struct{ data snapshotData }

// Persist writes the snapshot to sink and closes it, cancelling on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write consensus snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close consensus snapshot: %w", err)
	}
	return nil
}

// Release is a no-op: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}
