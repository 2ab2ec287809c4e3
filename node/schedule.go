package node

import (
	"context"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// schedule runs the slot loop until ctx ends: at every slot it makes sure the duties of this and
// the next epoch are known and starts the slot's duties, each in a goroutine owned by wg with
// the duty's deadline. It blocks until ctx ends (nil) or a fatal error stops the node.
func (n *Node) schedule(ctx context.Context, wg *sync.WaitGroup) error {
	chain := n.chain
	wg.Add(1)
	go func() { defer wg.Done(); n.followHeads(ctx) }()
	for {
		now := time.Now()
		slot, started := chain.SlotAt(now)
		next := chain.GenesisTime
		if started {
			next = chain.SlotStart(slot + 1)
		}
		if started {
			n.startSlot(ctx, wg, slot)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-n.fatal:
			return err
		case <-time.After(time.Until(next)):
		}
	}
}

// headTracker remembers the newest head slot seen and wakes waiters.
type headTracker struct {
	mu      sync.Mutex
	highest phase0.Slot
	changed chan struct{}
}

func newHeadTracker() *headTracker { return &headTracker{changed: make(chan struct{})} }

// Seen records a head at slot.
func (h *headTracker) Seen(slot phase0.Slot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if slot > h.highest {
		h.highest = slot
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// Wait returns once a head at or after slot has been seen, at latest, or when ctx ends.
func (h *headTracker) Wait(ctx context.Context, slot phase0.Slot, latest time.Time) {
	timer := time.NewTimer(time.Until(latest))
	defer timer.Stop()
	for {
		h.mu.Lock()
		seen, changed := h.highest >= slot, h.changed
		h.mu.Unlock()
		if seen {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case <-changed:
		}
	}
}

// prune drops slashing history older than the configured window (it blocks the DB briefly:
// it rewrites the log, so it runs rarely and mid-epoch).
func (n *Node) prune(epoch phase0.Epoch) {
	start := time.Now()
	if err := n.db.Prune(n.cfg.SlashingKeepEpochs, epoch, n.chain.SlotsPerEpoch); err != nil {
		n.log.Error("Slashing DB pruning failed", "epoch", epoch, "err", err)
		return
	}
	n.log.Info("Slashing DB pruned", "epoch", epoch, "keep_epochs", n.cfg.SlashingKeepEpochs, "took", time.Since(start))
}
