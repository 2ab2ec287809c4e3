package node

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// dutyKey identifies a cluster duty.
type dutyKey struct {
	Slot phase0.Slot
	Type string
}

func (k dutyKey) String() string { return fmt.Sprintf("%s@%d", k.Type, k.Slot) }

// fullSig is a recovered group signature that verified under the validator's group key.
type fullSig struct {
	Pubkey    phase0.BLSPubKey
	Signature phase0.BLSSignature
}

// aggregator collects partial signatures per duty and validator, verifies each against the
// sender's public share, and recovers the group signature once threshold partials over the
// root this node expects are in. Partials that arrive before this node knows the duty's roots
// are held (bounded) and verified when it does. Safe for concurrent use.
type aggregator struct {
	threshold    int
	maxEarly     int
	publicShares map[phase0.BLSPubKey]map[uint64]*bls.PublicKey
	groupKeys    map[phase0.BLSPubKey]*bls.PublicKey

	mu     sync.Mutex
	duties map[dutyKey]*dutyState
}

type dutyState struct {
	roots    map[phase0.BLSPubKey]phase0.Root // nil until this node expects the duty
	partials map[phase0.BLSPubKey]map[uint64][]byte
	done     map[phase0.BLSPubKey]bool
	early    []indexedPartial
}

type indexedPartial struct {
	from uint64
	p    p2p.Partial
}

func newAggregator(threshold int, id *Identity) *aggregator {
	return &aggregator{
		threshold:    threshold,
		maxEarly:     len(id.Lock.Operators) * len(id.GroupKeys),
		publicShares: id.PublicShares,
		groupKeys:    id.GroupKeys,
		duties:       map[dutyKey]*dutyState{},
	}
}

func (a *aggregator) state(k dutyKey) *dutyState {
	s, ok := a.duties[k]
	if !ok {
		s = &dutyState{partials: map[phase0.BLSPubKey]map[uint64][]byte{}, done: map[phase0.BLSPubKey]bool{}}
		a.duties[k] = s
	}
	return s
}

// Expect sets the signing root this node expects per validator of duty k and processes the
// partials that arrived early. It returns the signatures this completes.
func (a *aggregator) Expect(k dutyKey, roots map[phase0.BLSPubKey]phase0.Root) ([]fullSig, []error) {
	a.mu.Lock()
	s := a.state(k)
	if s.roots != nil {
		a.mu.Unlock()
		return nil, nil
	}
	s.roots = roots
	early := s.early
	s.early = nil
	a.mu.Unlock()
	var (
		out  []fullSig
		errs []error
	)
	for _, e := range early {
		sigs, err := a.Add(k, e.from, []p2p.Partial{e.p})
		out = append(out, sigs...)
		errs = append(errs, err...)
	}
	return out, errs
}

// Add verifies and stores partials of share index from for duty k. It returns the signatures
// this completes and an error per partial it refused. Peer input never panics it.
func (a *aggregator) Add(k dutyKey, from uint64, partials []p2p.Partial) ([]fullSig, []error) {
	var errs []error
	type checked struct {
		pk  phase0.BLSPubKey
		sig []byte
	}
	a.mu.Lock()
	s := a.state(k)
	if s.roots == nil {
		for _, p := range partials {
			if len(s.early) >= a.maxEarly {
				errs = append(errs, fmt.Errorf("%s: too many early partials, dropped", k))
				break
			}
			s.early = append(s.early, indexedPartial{from: from, p: p})
		}
		a.mu.Unlock()
		return nil, errs
	}
	roots := s.roots
	a.mu.Unlock()

	// Verify outside the lock: a pairing costs about a millisecond.
	var good []checked
	for _, p := range partials {
		pk, err := a.verify(roots, from, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: partial of share %d: %w", k, from, err))
			continue
		}
		good = append(good, checked{pk: pk, sig: p.Signature})
	}

	var ready []phase0.BLSPubKey
	snapshots := map[phase0.BLSPubKey]map[uint64][]byte{}
	a.mu.Lock()
	for _, c := range good {
		if s.done[c.pk] {
			continue
		}
		m := s.partials[c.pk]
		if m == nil {
			m = map[uint64][]byte{}
			s.partials[c.pk] = m
		}
		m[from] = c.sig
		if len(m) >= a.threshold {
			s.done[c.pk] = true
			ready = append(ready, c.pk)
			snap := make(map[uint64][]byte, len(m))
			for i, b := range m {
				snap[i] = b
			}
			snapshots[c.pk] = snap
		}
	}
	a.mu.Unlock()

	var out []fullSig
	for _, pk := range ready {
		fs, err := a.recover(pk, roots[pk], snapshots[pk])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		out = append(out, fs)
	}
	return out, errs
}

func (a *aggregator) verify(roots map[phase0.BLSPubKey]phase0.Root, from uint64, p p2p.Partial) (phase0.BLSPubKey, error) {
	var pk phase0.BLSPubKey
	if len(p.GroupPubkey) != len(pk) {
		return pk, fmt.Errorf("group key of %d bytes", len(p.GroupPubkey))
	}
	copy(pk[:], p.GroupPubkey)
	root, ok := roots[pk]
	if !ok {
		return pk, fmt.Errorf("validator %#x has no part in this duty here", pk)
	}
	if !bytes.Equal(p.SigningRoot, root[:]) {
		return pk, fmt.Errorf("signed root %#x, this node expects %#x", p.SigningRoot, root)
	}
	share, ok := a.publicShares[pk][from]
	if !ok {
		return pk, fmt.Errorf("no public share %d", from)
	}
	sig, err := signing.ParseSignature(p.Signature)
	if err != nil {
		return pk, err
	}
	if !sig.VerifyByte(share, root[:]) {
		return pk, fmt.Errorf("%w: under public share %d", signing.ErrVerify, from)
	}
	return pk, nil
}

func (a *aggregator) recover(pk phase0.BLSPubKey, root phase0.Root, partials map[uint64][]byte) (fullSig, error) {
	b, err := signing.RecoverSignature(partials, a.threshold)
	if err != nil {
		return fullSig{}, err
	}
	sig, err := signing.ParseSignature(b)
	if err != nil {
		return fullSig{}, err
	}
	if !sig.VerifyByte(a.groupKeys[pk], root[:]) {
		return fullSig{}, fmt.Errorf("recovered signature of %#x does not verify under the group key", pk)
	}
	fs := fullSig{Pubkey: pk}
	copy(fs.Signature[:], b)
	return fs, nil
}

// Trim forgets duties before slot.
func (a *aggregator) Trim(before phase0.Slot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.duties {
		if k.Slot < before {
			delete(a.duties, k)
		}
	}
}
