package node

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/p2p"
)

// doppelgangerProtocol asks a peer for the newest attestation target its slashing DB holds per
// validator.
const doppelgangerProtocol = "/dvmesh/doppelganger/1.0.0"

// DefaultDoppelgangerEpochs is how many epochs a cold start watches for another signer.
const DefaultDoppelgangerEpochs = 2

// signGate says which validators this node may sign for. A validator is blocked while a cold
// start's doppelganger check runs, and for good once it was seen live elsewhere.
type signGate struct {
	mu      sync.Mutex
	blocked map[phase0.BLSPubKey]string
}

func newSignGate() *signGate { return &signGate{blocked: map[phase0.BLSPubKey]string{}} }

// Blocked returns why pk may not be signed for, or "".
func (g *signGate) Blocked(pk phase0.BLSPubKey) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked[pk]
}

func (g *signGate) set(pk phase0.BLSPubKey, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if reason == "" {
		delete(g.blocked, pk)
	} else {
		g.blocked[pk] = reason
	}
}

// serveDoppelganger answers peers' questions about this node's newest signings.
func (n *Node) serveDoppelganger() {
	p2p.Serve(n.host, doppelgangerProtocol, 2*time.Second, func(_ peer.ID, _ []byte) []byte {
		n.mu.Lock()
		db := n.db
		n.mu.Unlock()
		latest := map[string]phase0.Epoch{}
		if db != nil {
			for _, pk := range n.id.Pubkeys() {
				if t, ok := db.LatestAttestationTarget(pk); ok {
					latest[fmt.Sprintf("%#x", pk)] = t
				}
			}
		}
		b, _ := json.Marshal(latest)
		return b
	})
}

// startDoppelganger decides, once this node has caught up with the Raft log, which validators
// start warm and which cold. Warm: this node's DB, or those of t-1 peers, hold a signing within
// the doppelganger window: the validator is live because this cluster keeps it live, so the
// node joins at once. Cold: nobody in the cluster signed recently, so before its first signature
// the node watches the beacon node's liveness reports for the window; a validator live
// elsewhere is refused. A node started before genesis skips the check: nothing can have signed.
func (n *Node) startDoppelganger(ctx context.Context, wg *sync.WaitGroup) {
	chain := n.chain
	cur, started := chain.SlotAt(time.Now())
	switch {
	case !started:
		n.setDoppelgangerState("skipped: started before genesis")
		return
	case n.cfg.DoppelgangerEpochs < 0:
		n.setDoppelgangerState("disabled")
		return
	}
	for deadline := time.Now().Add(2 * chain.SlotDuration); !n.cons.CaughtUp() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	epoch := chain.EpochOf(cur)
	window := phase0.Epoch(n.cfg.DoppelgangerEpochs)
	horizon := epoch - min(epoch, window+1)
	peerReports := n.askPeersLatest(ctx, horizon)
	var cold []phase0.BLSPubKey
	for _, pk := range n.id.Pubkeys() {
		t, ok := n.db.LatestAttestationTarget(pk)
		if (ok && t >= horizon) || peerReports[pk] >= n.id.Lock.Threshold-1 {
			continue
		}
		cold = append(cold, pk)
	}
	if len(cold) == 0 {
		n.setDoppelgangerState("warm")
		n.log.Info("Warm start: the cluster signed within the doppelganger window; joining at once", "epoch", epoch)
		return
	}
	until := epoch + window
	for _, pk := range cold {
		n.gate.set(pk, fmt.Sprintf("doppelganger check: cold start, no signing until epoch %d", until))
	}
	n.setDoppelgangerState(fmt.Sprintf("cold: %d validator(s) wait until epoch %d", len(cold), until))
	n.log.Warn("Cold start: watching for another signer before the first signature", "validators", len(cold), "epochs", window, "signing_from_epoch", until)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.watchLiveness(ctx, cold, epoch, until)
	}()
}

// askPeersLatest counts, per validator, the peers whose DB holds an attestation at or after horizon.
func (n *Node) askPeersLatest(ctx context.Context, horizon phase0.Epoch) map[phase0.BLSPubKey]int {
	var (
		mu     sync.Mutex
		counts = map[phase0.BLSPubKey]int{}
	)
	n.askPeers(ctx, doppelgangerProtocol, []byte("{}"), func(p peer.ID, resp []byte, err error) {
		var latest map[string]phase0.Epoch
		if err != nil || json.Unmarshal(resp, &latest) != nil {
			n.log.Debug("Peer gave no doppelganger report", "peer", p.String(), "err", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, pk := range n.id.Pubkeys() {
			if t, ok := latest[fmt.Sprintf("%#x", pk)]; ok && t >= horizon {
				counts[pk]++
			}
		}
	})
	return counts
}

// watchLiveness asks the beacon node whether the cold validators were live in the epoch before
// the start and in each epoch of the window (once it has ended), and unblocks those never seen
// live when the window is over. A validator seen live is refused until restart; if that leaves
// this node nothing to sign for, the node stops with an error.
func (n *Node) watchLiveness(ctx context.Context, cold []phase0.BLSPubKey, start, until phase0.Epoch) {
	chain := n.chain
	first := start - min(start, 1)
	for e := first; e < until; e++ {
		// An epoch's attestations are included up to a slot later: ask half a slot into the next epoch.
		at := chain.SlotStart(chain.FirstSlot(e + 1)).Add(chain.SlotDuration / 2)
		if e < start {
			at = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		for !n.checkLiveness(ctx, cold, e) {
			select { // refuse on doubt: stay blocked and ask again next slot
			case <-ctx.Done():
				return
			case <-time.After(chain.SlotDuration):
			}
		}
	}
	for _, pk := range cold {
		if n.gate.Blocked(pk) != "" && !n.isDoppelganger(pk) {
			n.gate.set(pk, "")
		}
	}
	n.setDoppelgangerState(fmt.Sprintf("cold start checked through epoch %d", until-1))
	n.log.Info("Doppelganger check done", "epoch", until)
}

// checkLiveness asks about epoch and refuses every cold validator live in it. It returns false
// when the beacon node could not answer.
func (n *Node) checkLiveness(ctx context.Context, cold []phase0.BLSPubKey, epoch phase0.Epoch) bool {
	n.mu.Lock()
	byIndex := map[phase0.ValidatorIndex]phase0.BLSPubKey{}
	var indices []phase0.ValidatorIndex
	for _, pk := range cold {
		if idx, ok := n.indices[pk]; ok {
			byIndex[idx] = pk
			indices = append(indices, idx)
		}
	}
	n.mu.Unlock()
	if len(indices) == 0 {
		return true
	}
	qctx, cancel := context.WithTimeout(ctx, n.chain.SlotDuration)
	defer cancel()
	live, err := n.beacon.ValidatorLiveness(qctx, epoch, indices)
	if err != nil {
		n.log.Warn("Liveness unknown; validators stay blocked", "epoch", epoch, "err", err)
		return false
	}
	for idx, isLive := range live {
		pk, ok := byIndex[idx]
		if !isLive || !ok {
			continue
		}
		if !n.markDoppelganger(pk) {
			continue // already refused
		}
		reason := fmt.Sprintf("DOPPELGANGER: validator %#x (index %d) was live in epoch %d while this cluster did not sign: "+
			"another machine signs with this key; refusing to sign for it", pk, idx, epoch)
		n.gate.set(pk, reason)
		n.metrics.doppelgangers.Inc()
		n.log.Error("Doppelganger detected: refusing to sign", "pubkey", fmt.Sprintf("%#x", pk), "validator_index", idx, "epoch", epoch)
	}
	if n.allDoppelgangers() {
		select {
		case n.fatal <- fmt.Errorf("every validator of this node is live elsewhere (doppelganger): stopping"):
		default:
		}
	}
	return true
}

// markDoppelganger records pk as live elsewhere and reports whether that is news.
func (n *Node) markDoppelganger(pk phase0.BLSPubKey) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.doppelgangers[pk] {
		return false
	}
	n.doppelgangers[pk] = true
	return true
}

func (n *Node) isDoppelganger(pk phase0.BLSPubKey) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.doppelgangers[pk]
}

func (n *Node) allDoppelgangers() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.doppelgangers) == len(n.id.Shares)
}

func (n *Node) setDoppelgangerState(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dgState = s
}
