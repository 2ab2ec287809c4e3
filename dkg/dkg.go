// Package dkg runs a distributed key generation ceremony among a cluster's operators, so that
// every validator key is born shared: no machine ever holds a whole validator key.
//
// The protocol is Feldman verifiable secret sharing run by every operator as a dealer, for all of
// the definition's validators at once (one message per peer per round, not one per validator):
//
//   - hello: each operator sends the definition hash and a fresh nonce. The session id is a hash
//     of the definition hash and every nonce; everything later is bound to it, so no message or
//     signature of one ceremony, or of another run of the same one, is accepted in another.
//   - deal: each dealer i picks, per validator, a random polynomial f_i of degree t-1. It sends
//     every peer the same Feldman commitments (f_i's coefficients times the G1 generator) and a
//     proof of possession of f_i(0) (a BLS signature by it over the definition hash, session,
//     dealer index and validator index), signed as a whole with its libp2p key; and to peer j
//     alone, over the Noise-encrypted libp2p stream, the shares f_i(j), also signed.
//   - verify: every operator checks each deal (points, proofs of possession, its shares against
//     the commitments), then broadcasts an echo of each dealer's commitments digest (with the
//     dealer's signature) and its complaints. A bad share's complaint carries the signed shares
//     as evidence, so everyone can check who lied. Any complaint, or two operators having seen
//     different commitments from one dealer (two dealer signatures over different digests prove
//     it), ABORTS the ceremony naming the operator and why. A dealer is never silently dropped:
//     the validators' keys would then depend on which dealers the network happened to deliver.
//   - finish: each operator sums its shares s_j = sum_i f_i(j) and computes, from the summed
//     commitments, every validator's group key (sum of the constant-term commitments) and every
//     operator's public share; it builds the lock (the same bytes on every node), hands its shares
//     to Config.BeforeApprove to be stored, then signs the lock hash with its libp2p key and sends
//     partial signatures of the validators' deposits. The ceremony succeeds only when all n
//     approvals arrive and match: a lock with every operator's signature means every operator
//     verified and stored its shares.
//
// Secrets: a dealer's polynomial exists only inside the dealer's process, from the start of the
// deal round until its shares are computed, and is then zeroed. The only secret data sent is
// f_i(j), to operator j alone. Received shares are zeroed once summed. Result.Shares is the one
// secret a ceremony returns. (Go may leave copies in freed memory the collector has not reused;
// zeroing bounds the exposure, it cannot rule it out.)
package dkg

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/signing"
)

// Default timeouts.
const (
	// DefaultStartTimeout is how long to wait for every operator to come online: operators start
	// the ceremony by hand, minutes apart.
	DefaultStartTimeout = 10 * time.Minute
	// DefaultRoundTimeout is the base of every later round's timeout; RoundTimeout adds time per
	// validator for the checks and the keystore encryption.
	DefaultRoundTimeout = time.Minute
)

// abortNoticeTimeout bounds the best-effort abort notice sent to the peers when this operator
// aborts: they would time out anyway, but later and with a vaguer reason.
const abortNoticeTimeout = 3 * time.Second

// Config is one operator's view of a ceremony.
type Config struct {
	// Definition must be signed by every operator (VerifyAllSigned); Run checks it again.
	Definition *lock.Definition
	// Key is this operator's libp2p identity key: it names the operator in the definition and
	// signs its commitments, shares and lock approval.
	Key       crypto.PrivKey
	Transport Transport
	// StartTimeout bounds the hello round (default DefaultStartTimeout), RoundTimeout each later
	// round (default DefaultRoundTimeout plus 100 ms per validator).
	StartTimeout, RoundTimeout time.Duration
	// BeforeApprove, if set, runs once this operator's shares are final and verified, before it
	// approves the lock: it stores them (keystores), so that an approval means a stored share. An
	// error aborts the ceremony. The Result's lock has no operator signatures yet.
	BeforeApprove func(*Result) error
	Log           *slog.Logger
}

// Result is what a ceremony gives one operator.
type Result struct {
	// Lock is the cluster lock, identical on every operator, with every operator's approval.
	Lock *lock.Lock
	// Index is this operator's share index (1..n).
	Index int
	// Shares[v] is this operator's secret share of validator v (lock order). The caller owns it
	// and should zero it once stored.
	Shares []*bls.SecretKey
	// Deposits[v] is validator v's deposit data, signed by the cluster (t partial signatures
	// combined) and verified.
	Deposits []*deposit.Data
}

// Fault is one reason a ceremony aborted, blaming one operator.
type Fault struct {
	Operator int    `json:"operator"` // share index; 0 when no operator is to blame
	PeerID   string `json:"peer_id,omitempty"`
	Reason   string `json:"reason"`
}

func (f Fault) String() string {
	if f.Operator == 0 {
		return f.Reason
	}
	return fmt.Sprintf("operator %d (%s) %s", f.Operator, f.PeerID, f.Reason)
}

// AbortError is the error of a ceremony that aborted: it names the operators at fault and why.
type AbortError struct {
	// ReportedBy is 0 when this operator found the faults itself, else the operator whose abort
	// notice this is (its claims are its own: a lying operator can blame others, but it cannot
	// make a ceremony succeed).
	ReportedBy int
	Faults     []Fault
}

func (e *AbortError) Error() string {
	parts := make([]string, len(e.Faults))
	for i, f := range e.Faults {
		parts[i] = f.String()
	}
	by := ""
	if e.ReportedBy != 0 {
		by = fmt.Sprintf(" (reported by operator %d)", e.ReportedBy)
	}
	return "DKG ceremony aborted" + by + ": " + strings.Join(parts, "; ")
}

// Blames reports whether the abort names operator i.
func (e *AbortError) Blames(i int) bool {
	return slices.ContainsFunc(e.Faults, func(f Fault) bool { return f.Operator == i })
}

// Test hooks: called with references to the secret slices the ceremony will zero (the
// polynomials once drawn, the received shares before any arrive), so that a test can check
// what was sent and that they were zeroed.
var (
	testHookPolys    func(self int, polys [][]bls.SecretKey)
	testHookReceived func(self int, recv [][]bls.SecretKey)
)

// received is one peer's message of one round.
type received struct {
	env *envelope
	sum [32]byte // of the raw bytes: a repeat is ignored, a different message is equivocation
}

type ceremony struct {
	cfg     Config
	def     *lock.Definition
	defHash [32]byte
	p       params
	self    int
	ids     []bls.ID        // evaluation point of each share index (ids[i-1])
	pubs    []crypto.PubKey // libp2p key of each operator
	peerIDs []string
	maxMsg  int
	log     *slog.Logger

	in      chan inbound
	got     [numRounds]map[int]*received
	session [32]byte

	// Secret state, zeroed as soon as it is no longer needed.
	polys [][]bls.SecretKey // this dealer's polynomial per validator: until its shares exist
	recv  [][]bls.SecretKey // recv[i-1][v] = f_i,v(self): until summed

	// Public state of the deal round, per dealer.
	commits [][]bls.PublicKey // commits[i-1][v*t+k]; nil when unusable
	echoes  []echo
	bad     []string // what this operator found wrong with dealer i's commitments or proofs
}

// Run takes part in a ceremony as the operator whose key cfg.Key is, and returns its shares and
// the lock. Any fault aborts it with an *AbortError naming the operator to blame; this operator
// then tells its peers, best effort.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	c, err := newCeremony(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go c.pump(pctx, &wg)
	res, err := c.run(pctx)
	c.wipe()
	if err != nil {
		var ae *AbortError
		if ctx.Err() != nil && !errors.As(err, &ae) {
			ae = &AbortError{Faults: []Fault{c.fault(c.self, "stopped: %v", context.Cause(ctx))}}
			err = fmt.Errorf("%w: %w", ctx.Err(), ae)
		}
		if errors.As(err, &ae) && ae.ReportedBy == 0 {
			c.notifyAbort(context.WithoutCancel(ctx), ae.Faults)
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return res, nil
}

func newCeremony(cfg Config) (*ceremony, error) {
	def := cfg.Definition
	if def == nil || cfg.Key == nil || cfg.Transport == nil {
		return nil, errors.New("dkg: definition, key and transport are required")
	}
	if err := def.VerifyAllSigned(); err != nil {
		return nil, fmt.Errorf("dkg: refusing to start: %w", err)
	}
	id, err := peer.IDFromPrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("dkg: p2p key: %w", err)
	}
	self, ok := def.OperatorIndex(id)
	if !ok {
		return nil, fmt.Errorf("dkg: p2p key is peer %s, which is not an operator of definition %s", id, def.DefinitionHash)
	}
	defHash, err := def.HashBytes()
	if err != nil {
		return nil, err
	}
	p := params{n: len(def.Operators), t: def.Threshold, v: def.NumValidators}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = DefaultRoundTimeout + time.Duration(p.v)*100*time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &ceremony{
		cfg: cfg, def: def, defHash: defHash, p: p, self: self, maxMsg: maxMessageSize(p),
		log: log.With("operator", self), in: make(chan inbound),
		commits: make([][]bls.PublicKey, p.n), echoes: make([]echo, p.n), bad: make([]string, p.n),
	}
	for r := range c.got {
		c.got[r] = map[int]*received{}
	}
	for i, pid := range def.PeerIDs() {
		pub, err := pid.ExtractPublicKey()
		if err != nil {
			return nil, fmt.Errorf("dkg: operator %d: peer id %s does not embed its key: %w", i+1, pid, err)
		}
		c.pubs = append(c.pubs, pub)
		c.peerIDs = append(c.peerIDs, pid.String())
		var bid bls.ID
		if err := bid.SetDecString(fmt.Sprint(i + 1)); err != nil {
			return nil, fmt.Errorf("dkg: share id %d: %w", i+1, err)
		}
		c.ids = append(c.ids, bid)
	}
	return c, nil
}

// MaxMessageSize returns the largest message a ceremony for def may carry: transports refuse
// larger ones before reading them.
func MaxMessageSize(def *lock.Definition) int {
	return maxMessageSize(params{n: len(def.Operators), t: def.Threshold, v: def.NumValidators})
}

func (c *ceremony) fault(op int, format string, a ...any) Fault {
	f := Fault{Operator: op, Reason: fmt.Sprintf(format, a...)}
	if op >= 1 && op <= len(c.peerIDs) {
		f.PeerID = c.peerIDs[op-1]
	}
	return f
}

func (c *ceremony) abort(faults ...Fault) *AbortError {
	return &AbortError{Faults: faults}
}

// pump moves received messages to c.in until ctx ends.
func (c *ceremony) pump(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		from, msg, err := c.cfg.Transport.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("DKG transport receive failed", "err", err)
			}
			return
		}
		select {
		case c.in <- inbound{from: from, msg: msg}:
		case <-ctx.Done():
			return
		}
	}
}

func (c *ceremony) run(ctx context.Context) (*Result, error) {
	start := time.Now()
	c.log.Info("DKG: waiting for every operator", "operators", c.p.n, "validators", c.p.v, "threshold", c.p.t)
	if err := c.hello(ctx); err != nil {
		return nil, err
	}
	c.log.Info("DKG: all operators online; dealing", "session", hex.EncodeToString(c.session[:8]))
	if err := c.dealRound(ctx); err != nil {
		return nil, err
	}
	c.log.Info("DKG: deals received; verifying")
	if err := c.verifyRound(ctx); err != nil {
		return nil, err
	}
	c.log.Info("DKG: every operator verified every deal; finishing")
	res, err := c.finishRound(ctx)
	if err != nil {
		return nil, err
	}
	c.log.Info("DKG: ceremony complete", "lock_hash", res.Lock.Hash, "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// exchange sends out (per recipient) and waits until every peer's message of round r is in and
// every send is acknowledged, or the timeout: then it names the operators it is missing.
//
// In the finish round a send that fails to a peer whose finish message is already here is not a
// fault: that peer approved the lock after receiving every approval it needed, so it got ours
// too (it finished and closed its host before its acknowledgement reached us).
func (c *ceremony) exchange(ctx context.Context, r int, out map[int][]byte, timeout time.Duration) error {
	lenient := func(k int) bool { return r == roundFinish && c.got[r][k] != nil }
	rctx, cancel := context.WithTimeout(ctx, timeout)
	type sent struct {
		to  int
		err error
	}
	results := make(chan sent, len(out))
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for to, msg := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- sent{to: to, err: c.cfg.Transport.Send(rctx, to, msg)}
		}()
	}
	pending := map[int]bool{}
	for to := range out {
		pending[to] = true
	}
	var sendFaults []Fault
	for len(pending) > 0 || !c.haveAll(r) {
		select {
		case in := <-c.in:
			if err := c.accept(in); err != nil {
				return err
			}
		case s := <-results:
			delete(pending, s.to)
			if s.err != nil && lenient(s.to) {
				c.log.Info("DKG: a peer that already finished did not acknowledge our approval", "peer", s.to, "err", s.err)
			} else if s.err != nil && ctx.Err() == nil {
				sendFaults = append(sendFaults, c.fault(s.to, "did not accept our %s message: %v", roundNames[r], s.err))
			}
		case <-rctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var faults []Fault
			for k := 1; k <= c.p.n; k++ {
				switch {
				case k == c.self:
				case c.got[r][k] == nil:
					faults = append(faults, c.fault(k, "sent no %s message within %s (offline, unreachable or stopped)", roundNames[r], timeout))
				case pending[k] && !lenient(k):
					faults = append(faults, c.fault(k, "did not accept our %s message within %s", roundNames[r], timeout))
				}
			}
			if faults = append(faults, sendFaults...); len(faults) == 0 {
				return nil // only lenient sends were left
			}
			return c.abort(faults...)
		}
	}
	if len(sendFaults) > 0 {
		return c.abort(sendFaults...)
	}
	return nil
}

func (c *ceremony) haveAll(r int) bool {
	return len(c.got[r]) == c.p.n-1
}

// accept records one received message; a malformed message or an abort notice ends the ceremony.
func (c *ceremony) accept(in inbound) error {
	if in.from < 1 || in.from > c.p.n || in.from == c.self {
		c.log.Warn("DKG: message from an unknown sender dropped", "from", in.from)
		return nil
	}
	if len(in.msg) > c.maxMsg {
		return c.abort(c.fault(in.from, "sent a message of %d bytes, more than the %d this ceremony needs", len(in.msg), c.maxMsg))
	}
	env, r, err := decode(in.msg, c.p)
	if err != nil {
		return c.abort(c.fault(in.from, "sent a malformed message: %v", err))
	}
	if env.Kind == kindAbort {
		return &AbortError{ReportedBy: in.from, Faults: env.Abort.Faults}
	}
	sum := sha256.Sum256(in.msg)
	clear(in.msg) // a deal carries this operator's shares: keep only the decoded copy
	if prev := c.got[r][in.from]; prev != nil {
		if prev.sum == sum {
			return nil // a retried send
		}
		return c.abort(c.fault(in.from, "sent two different %s messages", roundNames[r]))
	}
	c.got[r][in.from] = &received{env: env, sum: sum}
	return nil
}

// checkSession refuses round r's messages of another session: a peer that restarted, or one that
// sent different hellos to different operators.
func (c *ceremony) checkSession(r int) error {
	var faults []Fault
	for k := 1; k <= c.p.n; k++ {
		if m := c.got[r][k]; m != nil && !bytes.Equal(m.env.Session, c.session[:]) {
			faults = append(faults, c.fault(k, "sent a %s message of another session (it restarted, or sent different hellos to different operators)", roundNames[r]))
		}
	}
	if len(faults) > 0 {
		return c.abort(faults...)
	}
	return nil
}

func (c *ceremony) toAll(e *envelope) (map[int][]byte, error) {
	b, err := encode(e)
	if err != nil {
		return nil, err
	}
	out := map[int][]byte{}
	for k := 1; k <= c.p.n; k++ {
		if k != c.self {
			out[k] = b
		}
	}
	return out, nil
}

func (c *ceremony) hello(ctx context.Context) error {
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("dkg: nonce: %w", err)
	}
	out, err := c.toAll(&envelope{Kind: kindHello, Hello: &helloMsg{DefinitionHash: c.def.DefinitionHash, Nonce: nonce}})
	if err != nil {
		return err
	}
	if err := c.exchange(ctx, roundHello, out, c.cfg.StartTimeout); err != nil {
		return err
	}
	nonces := make([][]byte, c.p.n)
	var faults []Fault
	for k := 1; k <= c.p.n; k++ {
		if k == c.self {
			nonces[k-1] = nonce
			continue
		}
		h := c.got[roundHello][k].env.Hello
		if h.DefinitionHash != c.def.DefinitionHash {
			faults = append(faults, c.fault(k, "runs another cluster definition (hash %s, ours %s)", h.DefinitionHash, c.def.DefinitionHash))
		}
		nonces[k-1] = h.Nonce
	}
	if len(faults) > 0 {
		return c.abort(faults...)
	}
	c.session = sessionID(c.defHash, nonces)
	return nil
}

// dealRound deals this operator's polynomials and collects every other dealer's deal.
func (c *ceremony) dealRound(ctx context.Context) error {
	n, t, v := c.p.n, c.p.t, c.p.v
	c.polys = make([][]bls.SecretKey, v)
	for i := range c.polys {
		c.polys[i] = make([]bls.SecretKey, t)
	}
	c.recv = make([][]bls.SecretKey, n)
	for i := range c.recv {
		c.recv[i] = make([]bls.SecretKey, v)
	}
	if testHookReceived != nil {
		testHookReceived(c.self, c.recv)
	}
	commitments := make([]byte, 0, v*t*commitmentLen)
	pops := make([]byte, 0, v*popLen)
	own := make([]bls.PublicKey, 0, v*t)
	shares := make([][]byte, n) // shares[j-1]: f_v(j) for every v, for operator j
	for j := range shares {
		if j+1 != c.self {
			shares[j] = make([]byte, 0, v*shareLen)
		}
	}
	for vi, poly := range c.polys {
		for k := range poly {
			poly[k].SetByCSPRNG()
			pk := poly[k].GetPublicKey()
			own = append(own, *pk)
			commitments = append(commitments, pk.Serialize()...)
		}
		pops = append(pops, poly[0].SignByte(popMsg(c.defHash, c.session, c.self, vi)).Serialize()...)
	}
	if testHookPolys != nil {
		testHookPolys(c.self, c.polys)
	}
	for vi, poly := range c.polys {
		for j := 1; j <= n; j++ {
			var s bls.SecretKey
			if err := s.Set(poly, &c.ids[j-1]); err != nil {
				return fmt.Errorf("dkg: evaluate share %d: %w", j, err)
			}
			if j == c.self {
				c.recv[c.self-1][vi] = s
			} else {
				b := s.Serialize()
				shares[j-1] = append(shares[j-1], b...)
				clear(b)
			}
			s = bls.SecretKey{}
		}
		clear(poly) // the polynomial's only use was to make these shares
	}
	c.polys = nil
	digest := commitDigest(c.defHash, c.session, c.self, commitments, pops)
	commitSig, err := c.cfg.Key.Sign(commitSigMsg(digest))
	if err != nil {
		return fmt.Errorf("dkg: sign commitments: %w", err)
	}
	c.commits[c.self-1] = own
	c.echoes[c.self-1] = echo{Digest: digest, Sig: commitSig}
	out := map[int][]byte{}
	for j := 1; j <= n; j++ {
		if j == c.self {
			continue
		}
		sig, err := c.cfg.Key.Sign(sharesSigMsg(sharesDigest(c.defHash, c.session, c.self, j, shares[j-1])))
		if err != nil {
			return fmt.Errorf("dkg: sign shares: %w", err)
		}
		b, err := encode(&envelope{Kind: kindDeal, Session: c.session[:], Deal: &dealMsg{
			Commitments: commitments, Pops: pops, CommitSig: commitSig, Shares: shares[j-1], SharesSig: sig}})
		clear(shares[j-1])
		if err != nil {
			return err
		}
		out[j] = b
	}
	// The encoded messages hold the peers' shares: zero them once delivered (Send copies or
	// finishes with them before returning).
	defer func() {
		for _, b := range out {
			clear(b)
		}
	}()
	if err := c.exchange(ctx, roundDeal, out, c.cfg.RoundTimeout); err != nil {
		return err
	}
	return c.checkSession(roundDeal)
}

// checkDeal checks dealer i's deal to this operator, records its echo, commitments and shares,
// and returns a complaint if anything is wrong.
func (c *ceremony) checkDeal(i int, d *dealMsg) *complaint {
	defer clear(d.Shares)
	v := c.p.v
	if len(d.CommitSig) == 0 || len(d.CommitSig) > maxPeerSigLen {
		return &complaint{Dealer: i, Kind: complaintUnverifiable, Reason: "its commitments carry no signature"}
	}
	digest := commitDigest(c.defHash, c.session, i, d.Commitments, d.Pops)
	if ok, err := c.pubs[i-1].Verify(commitSigMsg(digest), d.CommitSig); err != nil || !ok {
		return &complaint{Dealer: i, Kind: complaintUnverifiable, Reason: "its commitments are not signed by its p2p key"}
	}
	c.echoes[i-1] = echo{Digest: digest, Sig: d.CommitSig}
	commits, reason := c.parseCommitments(i, d.Commitments, d.Pops)
	if reason != "" {
		c.bad[i-1] = reason
		return &complaint{Dealer: i, Kind: complaintCommitments, Reason: reason}
	}
	c.commits[i-1] = commits
	if len(d.Shares) != v*shareLen || len(d.SharesSig) == 0 || len(d.SharesSig) > maxPeerSigLen {
		return &complaint{Dealer: i, Kind: complaintUnverifiable, Reason: fmt.Sprintf("sent %d bytes of shares, want %d", len(d.Shares), v*shareLen)}
	}
	if ok, err := c.pubs[i-1].Verify(sharesSigMsg(sharesDigest(c.defHash, c.session, i, c.self, d.Shares)), d.SharesSig); err != nil || !ok {
		return &complaint{Dealer: i, Kind: complaintUnverifiable, Reason: "its shares are not signed by its p2p key"}
	}
	if bad, reason := c.checkShares(i, c.self, d.Shares, c.recv[i-1]); bad >= 0 {
		clear(c.recv[i-1])
		return &complaint{Dealer: i, Kind: complaintShares, Reason: reason, Shares: bytes.Clone(d.Shares), SharesSig: d.SharesSig}
	}
	return nil
}

// parseCommitments decodes dealer i's commitments (subgroup-checked, not infinity) and checks
// its proofs of possession. It returns a reason when they are unusable.
func (c *ceremony) parseCommitments(i int, commitments, pops []byte) ([]bls.PublicKey, string) {
	t, v := c.p.t, c.p.v
	if len(commitments) != v*t*commitmentLen || len(pops) != v*popLen {
		return nil, fmt.Sprintf("sent %d bytes of commitments and %d of proofs, want %d and %d", len(commitments), len(pops), v*t*commitmentLen, v*popLen)
	}
	out := make([]bls.PublicKey, v*t)
	for x := range out {
		pk, err := signing.ParsePublicKey(commitments[x*commitmentLen : (x+1)*commitmentLen])
		if err != nil {
			return nil, fmt.Sprintf("sent an invalid commitment %d of validator %d: %v", x%t, x/t, err)
		}
		out[x] = *pk
	}
	for vi := 0; vi < v; vi++ {
		sig, err := signing.ParseSignature(pops[vi*popLen : (vi+1)*popLen])
		if err != nil || !sig.VerifyByte(&out[vi*t], popMsg(c.defHash, c.session, i, vi)) {
			return nil, fmt.Sprintf("sent a proof of possession for validator %d that does not verify under its commitment", vi)
		}
	}
	return out, ""
}

// checkShares checks dealer i's shares for operator k against dealer i's commitments, and stores
// them in into (when not nil). It returns the first bad validator index, or -1.
func (c *ceremony) checkShares(i, k int, shares []byte, into []bls.SecretKey) (int, string) {
	t := c.p.t
	for vi := 0; vi < c.p.v; vi++ {
		var s bls.SecretKey
		if err := s.Deserialize(shares[vi*shareLen : (vi+1)*shareLen]); err != nil {
			return vi, fmt.Sprintf("sent operator %d an unreadable share of validator %d", k, vi)
		}
		var want bls.PublicKey
		if err := want.Set(c.commits[i-1][vi*t:(vi+1)*t], &c.ids[k-1]); err != nil {
			return vi, fmt.Sprintf("commitments of validator %d cannot be evaluated: %v", vi, err)
		}
		ok := s.GetPublicKey().IsEqual(&want)
		if ok && into != nil {
			into[vi] = s
		}
		s = bls.SecretKey{}
		if !ok {
			return vi, fmt.Sprintf("sent operator %d a share of validator %d that does not match its commitments", k, vi)
		}
	}
	return -1, ""
}

// verifyRound checks every deal, exchanges echoes and complaints, and aborts on any disagreement.
func (c *ceremony) verifyRound(ctx context.Context) error {
	var complaints []complaint
	for i := 1; i <= c.p.n; i++ {
		if i == c.self {
			continue
		}
		if cp := c.checkDeal(i, c.got[roundDeal][i].env.Deal); cp != nil {
			c.log.Warn("DKG: complaint", "dealer", i, "reason", cp.Reason)
			complaints = append(complaints, *cp)
		}
	}
	mine := &envelope{Kind: kindVerify, Session: c.session[:], Verify: &verifyMsg{Echoes: c.echoes, Complaints: complaints}}
	out, err := c.toAll(mine)
	if err != nil {
		return err
	}
	if err := c.exchange(ctx, roundVerify, out, c.cfg.RoundTimeout); err != nil {
		return err
	}
	if err := c.checkSession(roundVerify); err != nil {
		return err
	}
	c.got[roundVerify][c.self] = &received{env: mine}
	if faults := c.evaluate(); len(faults) > 0 {
		return c.abort(faults...)
	}
	return nil
}

// evaluate judges every operator's echoes and complaints. Every honest operator holds the same
// verify messages (or aborts on missing or conflicting ones), so all reach the same verdict.
func (c *ceremony) evaluate() []Fault {
	var faults []Fault
	add := func(f Fault) {
		if !slices.Contains(faults, f) {
			faults = append(faults, f)
		}
	}
	verify := func(k int) *verifyMsg { return c.got[roundVerify][k].env.Verify }
	consistent := make([]bool, c.p.n+1)
	// Echoes: did every operator see the same commitments from each dealer?
	for i := 1; i <= c.p.n; i++ {
		seen := map[string][]int{}
		for k := 1; k <= c.p.n; k++ {
			e := verify(k).Echoes[i-1]
			if len(e.Digest) == 0 {
				continue // k could not read i's deal, and complained
			}
			if ok, err := c.pubs[i-1].Verify(commitSigMsg(e.Digest), e.Sig); err != nil || !ok {
				add(c.fault(k, "echoed commitments of operator %d that operator %d did not sign", i, i))
				continue
			}
			seen[hex.EncodeToString(e.Digest)] = append(seen[hex.EncodeToString(e.Digest)], k)
		}
		if len(seen) > 1 {
			var groups []string
			for d, ks := range seen {
				groups = append(groups, fmt.Sprintf("operators %v saw %s…", ks, d[:12]))
			}
			sort.Strings(groups)
			add(c.fault(i, "sent different commitments to different operators, each signed by it: %s", strings.Join(groups, ", ")))
		}
		consistent[i] = len(seen) == 1
	}
	// Complaints.
	for k := 1; k <= c.p.n; k++ {
		for _, cp := range verify(k).Complaints {
			i := cp.Dealer
			switch {
			case i == k:
				add(c.fault(k, "complained about itself: %s", cp.Reason))
			case c.bad[i-1] != "":
				add(c.fault(i, "%s", c.bad[i-1]))
			case cp.Kind == complaintCommitments && consistent[i] && c.commits[i-1] != nil:
				add(c.fault(k, "complained falsely that operator %d %s: its commitments and proofs of possession are valid", i, cp.Reason))
			case cp.Kind == complaintShares && consistent[i] && c.commits[i-1] != nil:
				// Judged against this operator's copy of the commitments, which the echoes
				// showed to be everyone's.
				ok, err := c.pubs[i-1].Verify(sharesSigMsg(sharesDigest(c.defHash, c.session, i, k, cp.Shares)), cp.SharesSig)
				if err != nil || !ok {
					add(c.fault(k, "complained about operator %d's shares with evidence operator %d did not sign", i, i))
					continue
				}
				if bad, reason := c.checkShares(i, k, cp.Shares, nil); bad >= 0 {
					add(c.fault(i, "%s (operator %d's complaint, checked against the signed share)", reason, k))
				} else {
					add(c.fault(k, "complained falsely about operator %d's shares: the signed shares it shows match the commitments", i))
				}
			default:
				add(c.fault(i, "%s (reported by operator %d, not verifiable by others)", cp.Reason, k))
			}
		}
	}
	return faults
}

// finishRound computes this operator's shares and the public keys, stores the shares, approves
// the lock and combines the deposits.
func (c *ceremony) finishRound(ctx context.Context) (*Result, error) {
	n, t, v := c.p.n, c.p.t, c.p.v
	res := &Result{Index: c.self, Shares: make([]*bls.SecretKey, v)}
	groups := make([]*bls.PublicKey, v)
	pubShares := make([][]bls.PublicKey, v) // [v][k-1]
	l := &lock.Lock{Version: lock.Version, Name: c.def.Name, Network: c.def.Network, GenesisForkVersion: c.def.GenesisForkVersion,
		Threshold: t, DefinitionHash: c.def.DefinitionHash, Proposals: proposalSettings(c.def)}
	if nc, err := network.ByName(c.def.Network); err == nil && nc.Public && fmt.Sprintf("%#x", nc.GenesisForkVersion[:]) == c.def.GenesisForkVersion {
		l.GenesisValidatorsRoot = fmt.Sprintf("%#x", nc.GenesisValidatorsRoot[:])
	}
	for _, op := range c.def.Operators {
		l.Operators = append(l.Operators, lock.Operator{PeerID: op.PeerID, Address: op.Address})
	}
	for vi := 0; vi < v; vi++ {
		// The group polynomial's commitments are the sums of the dealers'.
		sum := make([]bls.PublicKey, t)
		copy(sum, c.commits[0][vi*t:(vi+1)*t])
		var share bls.SecretKey
		share = c.recv[0][vi]
		for i := 1; i <= n; i++ {
			if c.commits[i-1] == nil {
				return nil, c.abort(c.fault(i, "has no usable commitments"))
			}
		}
		for i := 2; i <= n; i++ {
			for k := 0; k < t; k++ {
				sum[k].Add(&c.commits[i-1][vi*t+k])
			}
			share.Add(&c.recv[i-1][vi])
		}
		if sum[0].IsZero() {
			return nil, c.abort(Fault{Reason: fmt.Sprintf("validator %d's group key is the point at infinity", vi)})
		}
		groups[vi] = &sum[0]
		val := lock.Validator{GroupPubkey: "0x" + hex.EncodeToString(sum[0].Serialize())}
		pubShares[vi] = make([]bls.PublicKey, n)
		for k := 1; k <= n; k++ {
			if err := pubShares[vi][k-1].Set(sum, &c.ids[k-1]); err != nil {
				return nil, fmt.Errorf("dkg: public share %d of validator %d: %w", k, vi, err)
			}
			val.PublicShares = append(val.PublicShares, "0x"+hex.EncodeToString(pubShares[vi][k-1].Serialize()))
		}
		if !share.GetPublicKey().IsEqual(&pubShares[vi][c.self-1]) || share.IsZero() {
			return nil, c.abort(c.fault(c.self, "computed a share of validator %d that does not match its public share", vi))
		}
		res.Shares[vi] = &share
		l.Validators = append(l.Validators, val)
	}
	c.wipe()
	h, err := l.ComputeHash()
	if err != nil {
		return nil, err
	}
	l.Hash = h
	res.Lock = l
	// Deposits: every validator's deposit, signed with this operator's share.
	roots, err := c.depositRoots(groups)
	if err != nil {
		return nil, err
	}
	partials := make([]byte, 0, v*partialLen)
	for vi, share := range res.Shares {
		partials = append(partials, share.SignByte(roots[vi][:]).Serialize()...)
	}
	if c.cfg.BeforeApprove != nil {
		if err := c.cfg.BeforeApprove(res); err != nil {
			return nil, c.abort(c.fault(c.self, "could not store its shares: %v", err))
		}
	}
	approval, err := lock.SignAsPeer(c.cfg.Key, lock.OperatorSignatureMessage(l.Hash))
	if err != nil {
		return nil, err
	}
	out, err := c.toAll(&envelope{Kind: kindFinish, Session: c.session[:], Finish: &finishMsg{LockHash: l.Hash, LockSig: approval, DepositPartials: partials}})
	if err != nil {
		return nil, err
	}
	if err := c.exchange(ctx, roundFinish, out, c.cfg.RoundTimeout); err != nil {
		return nil, err
	}
	if err := c.checkSession(roundFinish); err != nil {
		return nil, err
	}
	// Approvals.
	var faults []Fault
	l.OperatorSignatures = make([]string, n)
	for k := 1; k <= n; k++ {
		if k == c.self {
			l.OperatorSignatures[k-1] = approval
			continue
		}
		f := c.got[roundFinish][k].env.Finish
		if f.LockHash != l.Hash {
			faults = append(faults, c.fault(k, "computed another cluster lock (hash %s, ours %s)", f.LockHash, l.Hash))
			continue
		}
		if err := lock.VerifyPeerSignature(c.peerIDs[k-1], lock.OperatorSignatureMessage(l.Hash), f.LockSig); err != nil {
			faults = append(faults, c.fault(k, "sent a lock approval that does not verify: %v", err))
			continue
		}
		l.OperatorSignatures[k-1] = f.LockSig
	}
	if len(faults) > 0 {
		return nil, c.abort(faults...)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("dkg: the approved lock is invalid: %w", err)
	}
	deposits, err := c.combineDeposits(l, groups, pubShares, roots, partials)
	if err != nil {
		return nil, err
	}
	res.Deposits = deposits
	return res, nil
}

// depositRoots returns each validator's deposit signing root under the definition's withdrawal
// credentials, amount and genesis fork version.
func (c *ceremony) depositRoots(groups []*bls.PublicKey) ([]phase0.Root, error) {
	addr, err := lock.ParseAddress(c.def.WithdrawalAddress)
	if err != nil {
		return nil, err
	}
	gfv, err := c.forkVersion()
	if err != nil {
		return nil, err
	}
	creds := deposit.WithdrawalCredentials(addr, c.def.Compounding)
	roots := make([]phase0.Root, len(groups))
	for vi, g := range groups {
		var pk phase0.BLSPubKey
		copy(pk[:], g.Serialize())
		roots[vi], err = deposit.SigningRoot(pk, creds, phase0.Gwei(c.def.DepositAmountGwei), gfv)
		if err != nil {
			return nil, fmt.Errorf("dkg: deposit root of validator %d: %w", vi, err)
		}
	}
	return roots, nil
}

func (c *ceremony) forkVersion() (phase0.Version, error) {
	var gfv phase0.Version
	b, err := lock.DecodeHex(c.def.GenesisForkVersion, len(gfv))
	if err != nil {
		return gfv, fmt.Errorf("dkg: genesis fork version: %w", err)
	}
	copy(gfv[:], b)
	return gfv, nil
}

// combineDeposits checks every operator's partial deposit signatures against its public share
// (one randomised batch per validator), combines t of them and builds verified deposit data.
func (c *ceremony) combineDeposits(l *lock.Lock, groups []*bls.PublicKey, pubShares [][]bls.PublicKey, roots []phase0.Root, own []byte) ([]*deposit.Data, error) {
	n := c.p.n
	partialsOf := func(k int) []byte {
		if k == c.self {
			return own
		}
		return c.got[roundFinish][k].env.Finish.DepositPartials
	}
	addr, err := lock.ParseAddress(c.def.WithdrawalAddress)
	if err != nil {
		return nil, err
	}
	gfv, err := c.forkVersion()
	if err != nil {
		return nil, err
	}
	creds := deposit.WithdrawalCredentials(addr, c.def.Compounding)
	var faults []Fault
	out := make([]*deposit.Data, len(groups))
	for vi := range groups {
		pubs := make([]*bls.PublicKey, 0, n)
		sigs := make([]*bls.Sign, 0, n)
		raw := map[uint64][]byte{}
		idx := make([]int, 0, n)
		for k := 1; k <= n; k++ {
			b := partialsOf(k)[vi*partialLen : (vi+1)*partialLen]
			s, err := signing.ParseSignature(b)
			if err != nil {
				faults = append(faults, c.fault(k, "sent an unreadable deposit partial signature of validator %d", vi))
				continue
			}
			pubs, sigs, idx = append(pubs, &pubShares[vi][k-1]), append(sigs, s), append(idx, k)
			raw[uint64(k)] = b
		}
		if !signing.BatchVerifySameMessage(pubs, sigs, roots[vi][:]) {
			for _, bad := range signing.InvalidSameMessage(pubs, sigs, roots[vi][:]) {
				faults = append(faults, c.fault(idx[bad], "sent a deposit partial signature of validator %d that does not verify under its public share", vi))
				delete(raw, uint64(idx[bad]))
			}
		}
		if len(faults) > 0 {
			continue
		}
		full, err := signing.RecoverSignature(raw, c.p.t)
		if err != nil {
			return nil, fmt.Errorf("dkg: combine deposit signature of validator %d: %w", vi, err)
		}
		var pk phase0.BLSPubKey
		var sig phase0.BLSSignature
		copy(pk[:], groups[vi].Serialize())
		copy(sig[:], full)
		d, err := deposit.New(pk, creds, phase0.Gwei(c.def.DepositAmountGwei), sig, gfv, l.Network)
		if err != nil {
			return nil, fmt.Errorf("dkg: deposit of validator %d: %w", vi, err)
		}
		out[vi] = d
	}
	if len(faults) > 0 {
		return nil, c.abort(faults...)
	}
	return out, nil
}

// wipe zeroes every secret the ceremony still holds but the result's shares.
func (c *ceremony) wipe() {
	for _, p := range c.polys {
		clear(p)
	}
	c.polys = nil
	for _, r := range c.recv {
		clear(r)
	}
	c.recv = nil
	for r := range c.got[roundDeal] {
		if m := c.got[roundDeal][r]; m != nil && m.env.Deal != nil {
			clear(m.env.Deal.Shares)
		}
	}
}

// notifyAbort tells every peer why this operator aborts, best effort and briefly.
func (c *ceremony) notifyAbort(ctx context.Context, faults []Fault) {
	if len(faults) > 2*c.p.n {
		faults = faults[:2*c.p.n]
	}
	for i := range faults {
		if len(faults[i].Reason) > maxReasonLen {
			faults[i].Reason = strings.ToValidUTF8(faults[i].Reason[:maxReasonLen], "")
		}
	}
	out, err := c.toAll(&envelope{Kind: kindAbort, Abort: &abortMsg{Faults: faults}})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, abortNoticeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for to, b := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.cfg.Transport.Send(ctx, to, b)
		}()
	}
	wg.Wait()
}

// proposalSettings are the lock's proposal settings from the definition. The registration
// timestamp is the definition's creation time, so that every node of the ceremony writes the
// same lock (and every node later signs the identical registration).
func proposalSettings(def *lock.Definition) *lock.ProposalSettings {
	if def.FeeRecipient == "" {
		return nil
	}
	ts := uint64(0)
	if t, err := time.Parse(time.RFC3339, def.CreatedAt); err == nil {
		ts = uint64(t.Unix())
	}
	return &lock.ProposalSettings{FeeRecipient: def.FeeRecipient, GasLimit: 60_000_000, RegistrationTimestamp: ts}
}
