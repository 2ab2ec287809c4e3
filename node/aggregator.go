package node

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

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

// suspectSlots is how long a peer whose partials failed a batch check has its partials checked
// on arrival, before they count, instead of through the recovered signatures (see Add).
const suspectSlots = 64

// aggregator collects partial signatures per duty and validator and recovers the group
// signature once threshold partials over the root this node expects are in; no recovered
// signature leaves it before it verified under its group key. Partials are parsed (on the curve,
// in G2) as they arrive and checked against the sender's public share optimistically: a recovered
// signature that verifies is the validator's one signature whatever the partials were, and one
// wrong partial always spoils it, so the peers' own batch checks run only when a recovered batch
// fails, to find and drop the peer at fault, whose partials are then checked on arrival for
// suspectSlots. Partials that arrive before this node knows the duty's roots are held
// (bounded) and processed when it does. Safe for concurrent use.
type aggregator struct {
	threshold    int
	self         uint64 // this node's share index: its own partials are never checked alone
	maxEarly     int    // early partials held per sender and duty: one per validator
	publicShares map[phase0.BLSPubKey]map[uint64]*bls.PublicKey
	groupKeys    map[phase0.BLSPubKey]*bls.PublicKey

	mu      sync.Mutex
	duties  map[dutyKey]*dutyState
	suspect map[uint64]phase0.Slot // share index -> last slot its partials are checked on arrival

	// Randomised batch checks made, and signatures handed to bisection (which costs a check
	// per step): the cost bound a spoiling peer must not break, counted for its tests.
	batchChecks, bisected atomic.Int64
}

// held is a partial kept for recovery: parsed (so on the curve and in G2), and checked against
// the sender's public share when verified is set.
type held struct {
	sig      *bls.Sign
	verified bool
}

type dutyState struct {
	roots    map[phase0.BLSPubKey]phase0.Root     // nil until this node expects the duty
	partials map[phase0.BLSPubKey]map[uint64]held // kept partials per validator and share index
	done     map[phase0.BLSPubKey]bool
	early    []indexedPartial
	dropped  map[uint64]bool // senders whose partials of the duty failed a check
	// work serialises the processing of the duty's messages: the peers' messages arrive
	// together, and one at a time the last ones find their validators recovered and skip them
	// (with t of n, n-t messages per duty are then never parsed), instead of all being parsed
	// at once on a busy machine. It also keeps a failed recovery's peer checks and reopening
	// whole before the next message is looked at.
	work sync.Mutex
}

type indexedPartial struct {
	from uint64
	p    p2p.Partial
}

func newAggregator(threshold int, id *Identity) *aggregator {
	return &aggregator{
		threshold:    threshold,
		self:         id.ShareIndex,
		maxEarly:     len(id.GroupKeys),
		publicShares: id.PublicShares,
		groupKeys:    id.GroupKeys,
		duties:       map[dutyKey]*dutyState{},
		suspect:      map[uint64]phase0.Slot{},
	}
}

func (a *aggregator) state(k dutyKey) *dutyState {
	s, ok := a.duties[k]
	if !ok {
		s = &dutyState{partials: map[phase0.BLSPubKey]map[uint64]held{}, done: map[phase0.BLSPubKey]bool{},
			dropped: map[uint64]bool{}}
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
	// Per sender, as they were sent: a suspect sender's partials are checked in one batch,
	// never one at a time (a peer ahead of this node is the common case, not an attack).
	bySender := map[uint64][]p2p.Partial{}
	var senders []uint64
	for _, e := range early {
		if _, ok := bySender[e.from]; !ok {
			senders = append(senders, e.from)
		}
		bySender[e.from] = append(bySender[e.from], e.p)
	}
	for _, from := range senders {
		sigs, err := a.Add(k, from, bySender[from])
		out = append(out, sigs...)
		errs = append(errs, err...)
	}
	return out, errs
}

// Add parses and stores the partials of peer share index from for duty k (checking them first
// if the peer is a suspect). It returns the signatures this completes and an error per partial
// it refused. Peer input never panics it.
func (a *aggregator) Add(k dutyKey, from uint64, partials []p2p.Partial) ([]fullSig, []error) {
	if from == a.self {
		// This node's own partials come through AddOwn; none arrive from the network.
		return nil, []error{fmt.Errorf("%s: partials claiming this node's share %d refused", k, from)}
	}
	var errs []error
	a.mu.Lock()
	s := a.state(k)
	if s.dropped[from] {
		a.mu.Unlock()
		return nil, []error{fmt.Errorf("%s: share %d's partials of the duty failed a check; its later ones are refused unparsed", k, from)}
	}
	if s.roots == nil {
		// Bounded per sender, so that one peer's flood cannot crowd out the others' partials.
		kept := 0
		for _, e := range s.early {
			if e.from == from {
				kept++
			}
		}
		for _, p := range partials {
			if kept >= a.maxEarly {
				errs = append(errs, fmt.Errorf("%s: too many early partials of share %d, dropped", k, from))
				break
			}
			kept++
			s.early = append(s.early, indexedPartial{from: from, p: p})
		}
		a.mu.Unlock()
		return nil, errs
	}
	roots := s.roots
	a.mu.Unlock()
	s.work.Lock()
	defer s.work.Unlock()
	// Partials of validators already recovered are not even parsed: with t of n nodes a duty
	// completes before the last peers' partials arrive, and parsing a G2 point is costly. A
	// validator's second partial in one message is refused unparsed.
	pending := make([]p2p.Partial, 0, len(partials))
	inMsg := make(map[phase0.BLSPubKey]bool, len(partials))
	a.mu.Lock()
	for _, p := range partials {
		var pk phase0.BLSPubKey
		if len(p.GroupPubkey) == len(pk) {
			copy(pk[:], p.GroupPubkey)
			if s.done[pk] {
				continue
			}
			if inMsg[pk] {
				errs = append(errs, fmt.Errorf("%s: share %d sent two partials for %#x; the second is dropped", k, from, pk))
				continue
			}
			inMsg[pk] = true
		}
		pending = append(pending, p)
	}
	a.mu.Unlock()

	var checked []signed
	for _, c := range a.parseAll(roots, from, pending) {
		if c.err != nil {
			errs = append(errs, fmt.Errorf("%s: partial of share %d: %w", k, from, c.err))
			continue
		}
		checked = append(checked, c.signed)
	}
	// A suspect peer's partials are checked now, in one randomised batch per signing root (every
	// attester of a slot signs the same root since Electra). A batch that fails is dropped whole,
	// never bisected: a peer that spoils every batch must not make this node spend a pairing per
	// partial. The other peers still give the threshold.
	verified := false
	if a.isSuspect(from, k.Slot) {
		verified = true
		if _, bad := a.verifyBatches(checked, false); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w: the batch of %d partials of share %d does not verify; all dropped",
				k, ErrBadBatch, len(checked), from))
			a.dropPeer(k, s, from)
			return nil, errs
		}
	}
	out, recErrs := a.store(k, s, roots, from, checked, verified)
	return out, append(errs, recErrs...)
}

// isSuspect reports whether share index from spoiled a batch within suspectSlots before slot.
func (a *aggregator) isSuspect(from uint64, slot phase0.Slot) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.suspect[from]
	return ok && slot <= until
}

// dropPeer drops every partial of share index from in duty k, refuses its later ones there
// unparsed, and makes it a suspect for suspectSlots after k's slot. It returns how many
// partials it dropped.
func (a *aggregator) dropPeer(k dutyKey, s *dutyState, from uint64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	dropped := 0
	for _, m := range s.partials {
		if _, ok := m[from]; ok {
			delete(m, from)
			dropped++
		}
	}
	s.dropped[from] = true
	until := k.Slot + suspectSlots
	if until < k.Slot { // saturate: slots near 2^64 come only from a broken clock
		until = math.MaxUint64
	}
	a.suspect[from] = max(a.suspect[from], until)
	return dropped
}

// AddOwn stores this node's own partials of duty k, as signed: they need no parsing and no
// verification (a wrong share cannot pass the recovered signature's check under the group key).
// It returns the signatures this completes. k must be expected (Expect).
func (a *aggregator) AddOwn(k dutyKey, pks []phase0.BLSPubKey, sigs []*bls.Sign) ([]fullSig, []error) {
	if len(pks) != len(sigs) {
		return nil, []error{fmt.Errorf("%s: %d own partials for %d validators", k, len(sigs), len(pks))}
	}
	a.mu.Lock()
	s := a.state(k)
	roots := s.roots
	a.mu.Unlock()
	if roots == nil {
		return nil, []error{fmt.Errorf("%s: own partials before the duty is expected", k)}
	}
	s.work.Lock()
	defer s.work.Unlock()
	own := make([]signed, 0, len(pks))
	for i, pk := range pks {
		root, ok := roots[pk]
		if !ok {
			return nil, []error{fmt.Errorf("%s: own partial of %#x, which has no part in the duty", k, pk)}
		}
		own = append(own, signed{pk: pk, root: root, sig: sigs[i]})
	}
	return a.store(k, s, roots, a.self, own, false)
}

// store keeps parsed partials of share index from (verified: checked against its public
// shares), and recovers and verifies the group signatures they complete.
func (a *aggregator) store(k dutyKey, s *dutyState, roots map[phase0.BLSPubKey]phase0.Root, from uint64, good []signed, verified bool) ([]fullSig, []error) {
	var complete []phase0.BLSPubKey
	a.mu.Lock()
	for _, c := range good {
		if s.done[c.pk] {
			continue
		}
		m := s.partials[c.pk]
		if m == nil {
			m = map[uint64]held{}
			s.partials[c.pk] = m
		}
		m[from] = held{sig: c.sig, verified: verified}
		if len(m) >= a.threshold {
			s.done[c.pk] = true
			complete = append(complete, c.pk)
		}
	}
	a.mu.Unlock()
	return a.recover(k, s, roots, complete)
}

// recover recovers the signatures of validators pks (each with threshold partials kept) and
// checks them against their group keys, one randomised batch per root. s.work must be held.
func (a *aggregator) recover(k dutyKey, s *dutyState, roots map[phase0.BLSPubKey]phase0.Root, pks []phase0.BLSPubKey) ([]fullSig, []error) {
	if len(pks) == 0 {
		return nil, nil
	}
	var errs []error
	used := make(map[phase0.BLSPubKey]map[uint64]held, len(pks))
	a.mu.Lock()
	for _, pk := range pks {
		used[pk] = maps.Clone(s.partials[pk])
	}
	a.mu.Unlock()
	var recovered []signed
	for _, pk := range pks {
		points := make(map[uint64]*bls.Sign, len(used[pk]))
		for from, h := range used[pk] {
			points[from] = h.sig
		}
		sig, err := signing.RecoverParsed(points, a.threshold)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: recover %#x: %w", k, pk, err))
			continue
		}
		recovered = append(recovered, signed{pk: pk, root: roots[pk], key: a.groupKeys[pk], sig: sig})
	}
	valid, invalid := a.verifyBatches(recovered, false)
	if len(invalid) > 0 {
		// A wrong partial is in the failed batches: find the peers at fault with one batch
		// check per peer, drop them and reopen their validators. The rest of the failed
		// batches now hold checked peers' partials only (and this node's own): a failure among
		// them is this node's share or a bug, bisected to name the validators.
		reopened, peerErrs := a.dropBadPeers(k, s, invalid, used)
		errs = append(errs, peerErrs...)
		var retry []signed
		for _, c := range invalid {
			if !reopened[c.pk] {
				retry = append(retry, c)
			}
		}
		ok, bad := a.verifyBatches(retry, true)
		valid = append(valid, ok...)
		errs = append(errs, a.dropOwn(k, s, bad)...)
	}
	out := make([]fullSig, 0, len(valid))
	for _, c := range valid {
		fs := fullSig{Pubkey: c.pk}
		copy(fs.Signature[:], c.sig.Serialize())
		out = append(out, fs)
	}
	return out, errs
}

// dropBadPeers checks, per peer, the unchecked partials that went into the failed recovered
// signatures, in one randomised batch per root. A peer whose batch fails loses every partial it
// sent for the duty (the other peers still give the threshold), becomes a suspect, and the
// validators it took part in are reopened (returned). A peer whose batch passes has those
// partials marked checked. The cost is bounded: one batch per peer of the duty, and a suspect
// peer's later partials are checked on arrival instead.
func (a *aggregator) dropBadPeers(k dutyKey, s *dutyState, failed []signed, used map[phase0.BLSPubKey]map[uint64]held) (map[phase0.BLSPubKey]bool, []error) {
	byPeer := map[uint64][]signed{}
	var peers []uint64
	for _, c := range failed {
		for from, h := range used[c.pk] {
			if from == a.self || h.verified {
				continue
			}
			if _, ok := byPeer[from]; !ok {
				peers = append(peers, from)
			}
			byPeer[from] = append(byPeer[from], signed{pk: c.pk, root: c.root, key: a.publicShares[c.pk][from], sig: h.sig})
		}
	}
	slices.Sort(peers)
	var errs []error
	reopened := map[phase0.BLSPubKey]bool{}
	for _, from := range peers {
		batch := byPeer[from]
		if _, bad := a.verifyBatches(batch, false); len(bad) == 0 {
			a.mu.Lock()
			for _, c := range batch {
				if h, ok := s.partials[c.pk][from]; ok {
					h.verified = true
					s.partials[c.pk][from] = h
				}
			}
			a.mu.Unlock()
			continue
		}
		dropped := a.dropPeer(k, s, from)
		a.mu.Lock()
		for _, c := range failed {
			if _, took := used[c.pk][from]; took {
				s.done[c.pk] = false
				reopened[c.pk] = true
			}
		}
		a.mu.Unlock()
		errs = append(errs, fmt.Errorf("%s: %w: the partials of share %d in failed recovered signatures do not verify; all %d of its partials dropped",
			k, ErrBadBatch, from, dropped))
	}
	return reopened, errs
}

// dropOwn handles recovered signatures that failed with every peer partial in them checked.
// Where this node's own unchecked partial was one of the combined, it is dropped and the
// validator reopened, so the peers' partials can still reach the threshold without it; a node
// with a bad share must not block the cluster's signature. Otherwise (a bug) the validator
// stays done.
func (a *aggregator) dropOwn(k dutyKey, s *dutyState, invalid []signed) []error {
	errs := make([]error, 0, len(invalid))
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range invalid {
		if _, own := s.partials[c.pk][a.self]; own {
			delete(s.partials[c.pk], a.self)
			s.done[c.pk] = false
			errs = append(errs, fmt.Errorf("%s: %w: recovered signature of %#x does not verify under the group key; "+
				"this node's partial (share %d) is dropped and the peers' are awaited", k, ErrOwnShare, c.pk, a.self))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: recovered signature of %#x does not verify under the group key", k, c.pk))
	}
	return errs
}

// signed is a parsed signature with the key and root it must verify under.
type signed struct {
	pk   phase0.BLSPubKey
	root phase0.Root
	key  *bls.PublicKey
	sig  *bls.Sign
}

type parsed struct {
	signed
	err error
}

// parseAll parses ps (each decompressed and subgroup-checked, about 0.1 ms) spread over the
// cores when there are enough to pay for it; results are in ps's order.
func (a *aggregator) parseAll(roots map[phase0.BLSPubKey]phase0.Root, from uint64, ps []p2p.Partial) []parsed {
	out := make([]parsed, len(ps))
	workers := min(runtime.GOMAXPROCS(0), len(ps)/64+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ps); i += workers {
				out[i].signed, out[i].err = a.parse(roots, from, ps[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// parse checks a partial's form against what this node expects and resolves the sender's
// public share; it does not verify the signature.
func (a *aggregator) parse(roots map[phase0.BLSPubKey]phase0.Root, from uint64, p p2p.Partial) (signed, error) {
	var pk phase0.BLSPubKey
	if len(p.GroupPubkey) != len(pk) {
		return signed{}, fmt.Errorf("group key of %d bytes", len(p.GroupPubkey))
	}
	copy(pk[:], p.GroupPubkey)
	root, ok := roots[pk]
	if !ok {
		return signed{}, fmt.Errorf("validator %#x has no part in this duty here", pk)
	}
	if !bytes.Equal(p.SigningRoot, root[:]) {
		return signed{}, fmt.Errorf("signed root %#x, this node expects %#x", p.SigningRoot, root)
	}
	share, ok := a.publicShares[pk][from]
	if !ok {
		return signed{}, fmt.Errorf("no public share %d", from)
	}
	sig, err := signing.ParsePeerSignature(p.Signature)
	if err != nil {
		return signed{}, err
	}
	return signed{pk: pk, root: root, key: share, sig: sig}, nil
}

// ErrBadBatch marks a peer's partials whose randomised batch check failed.
var ErrBadBatch = errors.New("bad partial signature batch")

// ErrOwnShare marks a recovered signature that failed with this node's own partial in it: the
// node's key share of that validator is likely wrong.
var ErrOwnShare = errors.New("own partial signature does not combine")

// verifyBatches splits cs into valid and invalid signatures with one randomised batch check per
// signing root. A failed batch is bisected when bisect is set, else all of it is invalid.
func (a *aggregator) verifyBatches(cs []signed, bisect bool) (valid, invalid []signed) {
	byRoot := map[phase0.Root][]signed{}
	var order []phase0.Root
	for _, c := range cs {
		if _, ok := byRoot[c.root]; !ok {
			order = append(order, c.root)
		}
		byRoot[c.root] = append(byRoot[c.root], c)
	}
	for _, root := range order {
		group := byRoot[root]
		pubs := make([]*bls.PublicKey, len(group))
		sigs := make([]*bls.Sign, len(group))
		for i, c := range group {
			pubs[i], sigs[i] = c.key, c.sig
		}
		bad := map[int]bool{}
		a.batchChecks.Add(1)
		if !signing.BatchVerifySameMessage(pubs, sigs, root[:]) {
			if bisect {
				a.bisected.Add(int64(len(group)))
				for _, i := range signing.InvalidSameMessage(pubs, sigs, root[:]) {
					bad[i] = true
				}
			}
			if len(bad) == 0 { // the batch failed but no part did: refuse on doubt
				for i := range group {
					bad[i] = true
				}
			}
		}
		for i, c := range group {
			if bad[i] {
				invalid = append(invalid, c)
			} else {
				valid = append(valid, c)
			}
		}
	}
	return valid, invalid
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
