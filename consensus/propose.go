package consensus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Propose proposes value for duty and blocks until some value is decided for
// the duty (possibly another node's) or ctx ends, and returns a copy of the
// decided value.
//
// Only the leader appends entries: while this node is leader it applies
// value at most once per term (unless the enqueue timed out), and in every
// role it waits on the state machine for the duty's decided value. A timed
// out or lost Apply is not a failure: the entry may still commit, and the
// first committed entry per duty wins. Liveness therefore needs the current
// leader to propose too. It returns ErrExpired (wrapped) for a duty below the
// retention window, ErrShutdown after Shutdown, and ctx.Err() on ctx end.
func (n *Node) Propose(ctx context.Context, duty Duty, value []byte) ([]byte, error) {
	entry, err := encodeEntry(duty, value)
	if err != nil {
		return nil, fmt.Errorf("propose %s: %w", duty, err)
	}
	return n.propose(ctx, duty, entry, nil)
}

// ProposeLazy is Propose for a value that is costly to build (a block):
// fetch is called only while this node is Raft leader and nothing is decided
// yet, once per term of its leadership, so followers leave their beacon nodes
// alone and only the leader's value is built. A failed fetch is retried once
// per recheck period (the heartbeat timeout) while this node leads; meanwhile
// a value decided by another leader is taken, and if none is decided the last
// fetch error is joined to the error returned. fetch runs on the calling
// goroutine. The price: a node that becomes leader mid-duty (its predecessor
// failed) fetches only then, so that duty is decided one fetch later than
// with Propose.
func (n *Node) ProposeLazy(ctx context.Context, duty Duty, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	return n.propose(ctx, duty, nil, func(ctx context.Context) ([]byte, error) {
		value, err := fetch(ctx)
		if err != nil {
			return nil, err
		}
		return encodeEntry(duty, value)
	})
}

// propose is the loop of Propose and ProposeLazy: entry is the encoded value,
// or nil until fetchEntry (called as leader) produces it.
func (n *Node) propose(ctx context.Context, duty Duty, entry []byte, fetchEntry func(context.Context) ([]byte, error)) ([]byte, error) {
	decided := n.fsm.wait(duty)
	var (
		appliedTerm uint64      // term of this call's last Apply; 0 = none
		fetchedTerm uint64      // term of this call's last fetch; 0 = none
		fetchErr    error       // the last fetch's error
		applyDone   <-chan bool // non-nil while an Apply is being enqueued
		recheck     = time.NewTimer(n.recheck)
		err         error
	)
	defer recheck.Stop()
	fail := func(err error) ([]byte, error) {
		if fetchErr != nil {
			err = fmt.Errorf("%w (own value: %w)", err, fetchErr)
		}
		return nil, fmt.Errorf("propose %s: %w", duty, err)
	}
	for {
		if v, ok, expired := n.fsm.get(duty); ok {
			if appliedTerm != 0 {
				n.pushCommit()
			}
			return slices.Clone(v), nil
		} else if expired {
			return fail(ErrExpired)
		}
		changed := n.leaderChanged()
		if applyDone == nil && n.raft.State() == raft.Leader {
			term := n.raft.CurrentTerm()
			if entry == nil && fetchEntry != nil && term != fetchedTerm {
				// Fetch, then look for a decision again before applying.
				fetchedTerm = term
				if entry, fetchErr = fetchEntry(ctx); fetchErr == nil {
					continue
				}
			}
			if entry != nil && term != appliedTerm {
				appliedTerm = term
				if applyDone, err = n.startApply(ctx, entry); err != nil {
					return fail(err)
				}
			}
		}
		// The timer is only a safety net should an observation be dropped;
		// decisions and leadership changes wake us immediately.
		recheck.Reset(n.recheck)
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-n.done:
			return fail(ErrShutdown)
		case <-decided:
			// Re-arm: normally the duty is now decided or expired and the
			// loop returns; this only guards against a busy loop.
			decided = n.fsm.wait(duty)
		case <-changed:
		case maybeTimedOut := <-applyDone:
			applyDone = nil
			if maybeTimedOut {
				appliedTerm = 0 // not enqueued: try again if still leader
			}
		case <-recheck.C:
			if fetchErr != nil {
				fetchedTerm = 0 // a failed fetch is retried once per recheck period
			}
		}
	}
}

// pushCommit tells the followers the leader's new commit index now rather than at the next
// CommitTimeout poll: it appends a barrier entry (the FSM ignores non-command entries), whose
// replication carries the commit index. The future is not awaited (see startApply).
func (n *Node) pushCommit() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.raft.State() != raft.Leader {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.raft.Barrier(n.applyTimeout)
	}()
}

// startApply enqueues entry in Raft from a goroutine tracked by n.wg. The
// returned channel yields whether the enqueue may have timed out. The apply
// future is deliberately not awaited: hashicorp/raft does not always resolve
// it on shutdown, and the outcome is observed through the FSM instead.
// Re-applying after a false "timed out" is harmless (first committed wins).
func (n *Node) startApply(ctx context.Context, entry []byte) (<-chan bool, error) {
	timeout := n.applyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	timeout = max(timeout, time.Millisecond) // 0 would mean "no timeout"
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrShutdown
	}
	done := make(chan bool, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		start := time.Now()
		n.raft.Apply(entry, timeout)
		done <- time.Since(start) >= timeout
	}()
	return done, nil
}

// Decided returns a copy of the value decided for duty, if this node's state
// machine has applied one (and not yet trimmed it).
func (n *Node) Decided(duty Duty) ([]byte, bool) {
	v, ok, _ := n.fsm.get(duty)
	if !ok {
		return nil, false
	}
	return slices.Clone(v), true
}

// Await blocks until a value is decided for duty (proposed by other nodes) or ctx ends, and
// returns a copy of it. A node whose own value could not be fetched uses it to follow the
// cluster's decision instead of dropping out of the duty.
func (n *Node) Await(ctx context.Context, duty Duty) ([]byte, error) {
	for {
		decided := n.fsm.wait(duty)
		if v, ok, expired := n.fsm.get(duty); ok {
			return slices.Clone(v), nil
		} else if expired {
			return nil, fmt.Errorf("await %s: %w", duty, ErrExpired)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("await %s: %w", duty, ctx.Err())
		case <-n.done:
			return nil, fmt.Errorf("await %s: %w", duty, ErrShutdown)
		case <-decided:
		case <-time.After(n.recheck):
		}
	}
}
