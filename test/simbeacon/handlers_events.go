package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// headArrival is how far into slot its block "arrives": 5% into the slot, but half of it for an
// epoch's first slot, whose proposer runs the epoch transition first (on a real devnet these
// blocks come after the attestation deadline). Until then the head is the previous slot's block,
// whose state predates the transition: its justified checkpoint trails the source of the slot's
// attestation data, which is computed through the transition.
func (s *Sim) headArrival(slot phase0.Slot) time.Duration {
	if slot > 0 && uint64(slot)%s.cfg.SlotsPerEpoch == 0 {
		return s.cfg.SlotDuration / 2
	}
	return s.cfg.SlotDuration / 20
}

// supportedTopics are the event topics a client may subscribe to. head, block and
// finalized_checkpoint are emitted; chain_reorg is accepted but never sent: blocks never change on
// this chain (Reorg changes only dependent roots and duties, which head events carry).
var supportedTopics = map[string]bool{"head": true, "block": true, "finalized_checkpoint": true, "chain_reorg": true}

// handleEvents serves GET /eth/v1/events?topics=... as server-sent events. For every slot from the
// next one to be announced on, at slot start + 5% of the slot: a block event, then a head event
// (and at the first slot of every epoch from epoch 2 on, a finalized_checkpoint event). A
// subscriber that connects mid-slot after that moment gets the current slot's events at once.
// The stream waits for genesis, and ends when the client disconnects or Close is called.
func (s *Sim) handleEvents(w http.ResponseWriter, r *http.Request) {
	topics := splitList(r.URL.Query()["topics"])
	if len(topics) == 0 {
		writeError(w, http.StatusBadRequest, "no topics requested")
		return
	}
	want := map[string]bool{}
	for _, t := range topics {
		if !supportedTopics[t] {
			writeError(w, http.StatusBadRequest, "unsupported event topic %q", t)
			return
		}
		want[t] = true
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	ctx := r.Context()
	var (
		next     phase0.Slot // the next slot to announce
		haveNext bool
	)
	for {
		s.mu.Lock()
		genesis, set, changed := s.genesis, s.genesisSet, s.genesisChan
		s.mu.Unlock()

		var wait <-chan time.Time
		var timer *time.Timer
		if set {
			now := s.now()
			cur := phase0.Slot(0)
			if !now.Before(genesis) {
				cur = phase0.Slot(now.Sub(genesis) / s.cfg.SlotDuration)
			}
			// Start at the current slot, and never replay a backlog: after a stall (or a clock
			// jump) skip ahead to the current slot.
			if !haveNext || cur > next {
				next, haveNext = cur, true
			}
			d := s.slotStart(genesis, next).Add(s.headArrival(next)).Sub(now)
			if d <= 0 {
				if err := s.emitSlot(w, want, next); err != nil {
					return
				}
				flusher.Flush()
				next++
				continue
			}
			timer = time.NewTimer(d)
			wait = timer.C
		}
		select {
		case <-wait:
		case <-changed:
			haveNext = false // genesis moved: start over from the new current slot
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil || s.ctx.Err() != nil {
			return
		}
	}
}

// emitSlot writes the events of slot's block to w.
func (s *Sim) emitSlot(w http.ResponseWriter, want map[string]bool, slot phase0.Slot) error {
	epochStart := uint64(slot)%s.cfg.SlotsPerEpoch == 0
	if want["block"] {
		if err := writeEvent(w, "block", &apiv1.BlockEvent{Slot: slot, Block: blockRoot(slot)}); err != nil {
			return err
		}
	}
	if want["head"] {
		e := s.epoch(slot)
		s.mu.Lock()
		ev := &apiv1.HeadEvent{
			Slot:                      slot,
			Block:                     blockRoot(slot),
			State:                     stateRoot(slot),
			EpochTransition:           epochStart && slot > 0,
			CurrentDutyDependentRoot:  s.proposerDependentRootLocked(e),
			PreviousDutyDependentRoot: s.attesterDependentRootLocked(e),
		}
		s.mu.Unlock()
		if err := writeEvent(w, "head", ev); err != nil {
			return err
		}
	}
	if want["finalized_checkpoint"] && epochStart && s.epoch(slot) >= 2 {
		f, _, _ := s.finality(slot)
		ev := &apiv1.FinalizedCheckpointEvent{Block: f.Root, State: stateRoot(s.startSlot(f.Epoch)), Epoch: f.Epoch}
		if err := writeEvent(w, "finalized_checkpoint", ev); err != nil {
			return err
		}
	}
	return nil
}

// writeEvent writes one server-sent event.
func writeEvent(w http.ResponseWriter, topic string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", topic, b)
	return err
}
