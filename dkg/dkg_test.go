package dkg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/signing"
)

// testCluster is a signed definition and its operators' keys.
type testCluster struct {
	def  *lock.Definition
	keys []crypto.PrivKey
}

func newTestCluster(t *testing.T, n, threshold, validators int) *testCluster {
	t.Helper()
	c := &testCluster{}
	o := lock.DefinitionOptions{Name: "dkg-test", Network: "hoodi", GenesisForkVersion: "0x10000910", Threshold: threshold,
		Validators: validators, WithdrawalAddress: "0x" + strings.Repeat("ab", 20), FeeRecipient: "0x" + strings.Repeat("cd", 20)}
	for i := 0; i < n; i++ {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		c.keys = append(c.keys, k)
		o.Operators = append(o.Operators, lock.Operator{PeerID: id.String(), Address: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4000+i)})
	}
	def, err := lock.NewDefinition(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range c.keys {
		if err := def.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	c.def = def
	return c
}

// runCeremony runs every operator whose transport is not nil, each in its own goroutine.
func runCeremony(t *testing.T, c *testCluster, trs []Transport, tweak func(i int, cfg *Config)) ([]*Result, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := len(c.keys)
	results, errs := make([]*Result, n), make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if trs[i] == nil {
			continue
		}
		cfg := Config{Definition: c.def, Key: c.keys[i], Transport: trs[i], StartTimeout: 10 * time.Second, RoundTimeout: 10 * time.Second}
		if tweak != nil {
			tweak(i+1, &cfg)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(ctx, cfg)
		}()
	}
	wg.Wait()
	return results, errs
}

func TestDKG_InMemory(t *testing.T) {
	c := newTestCluster(t, 4, 3, 3)
	results, errs := runCeremony(t, c, NewMemTransports(4), nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operator %d: %v", i+1, err)
		}
	}
	l := results[0].Lock
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.DefinitionHash != c.def.DefinitionHash || len(l.Validators) != 3 || len(l.OperatorSignatures) != 4 {
		t.Fatalf("lock: %+v", l)
	}
	if l.GenesisValidatorsRoot == "" {
		t.Error("hoodi lock has no genesis validators root")
	}
	a, _ := json.Marshal(l)
	for i, r := range results {
		if b, _ := json.Marshal(r.Lock); !bytes.Equal(a, b) {
			t.Fatalf("operator %d's lock differs from operator 1's", i+1)
		}
		if r.Index != i+1 || len(r.Shares) != 3 {
			t.Fatalf("operator %d: index %d, %d shares", i+1, r.Index, len(r.Shares))
		}
		for v, sh := range r.Shares {
			if got := "0x" + fmt.Sprintf("%x", sh.GetPublicKey().Serialize()); got != l.Validators[v].PublicShares[i] {
				t.Fatalf("operator %d validator %d: share's key %s, lock says %s", i+1, v, got, l.Validators[v].PublicShares[i])
			}
		}
	}
	var gfv phase0.Version
	copy(gfv[:], []byte{0x10, 0x00, 0x09, 0x10})
	for v, d := range results[0].Deposits {
		if err := d.Verify(gfv); err != nil {
			t.Fatalf("deposit %d: %v", v, err)
		}
		if "0x"+d.Pubkey != l.Validators[v].GroupPubkey || d.Amount != 32_000_000_000 || !strings.HasPrefix(d.WithdrawalCredentials, "01") {
			t.Fatalf("deposit %d: %+v", v, d)
		}
	}
	checkThresholdSigning(t, l, results)
}

// checkThresholdSigning: any t operators' partial signatures combine into a signature valid
// under the group key; t-1 do not. The group key's secret is never computed anywhere: signing
// works from shares alone.
func checkThresholdSigning(t *testing.T, l *lock.Lock, results []*Result) {
	t.Helper()
	msg := make([]byte, 32)
	_, _ = rand.Read(msg)
	for v, val := range l.Validators {
		group, err := lock.DecodeHex(val.GroupPubkey, signing.PublicKeyLength)
		if err != nil {
			t.Fatal(err)
		}
		for _, set := range [][]int{{1, 2, 3}, {2, 3, 4}, {1, 3, 4}, {1, 2, 4}} {
			partials := map[uint64][]byte{}
			for _, i := range set {
				p := results[i-1].Shares[v].SignByte(msg).Serialize()
				if err := signing.Verify(mustHex(t, val.PublicShares[i-1]), msg, p); err != nil {
					t.Fatalf("validator %d: operator %d's partial does not verify under its public share: %v", v, i, err)
				}
				partials[uint64(i)] = p
			}
			full, err := signing.RecoverSignature(partials, l.Threshold)
			if err != nil {
				t.Fatal(err)
			}
			if err := signing.Verify(group, msg, full); err != nil {
				t.Fatalf("validator %d: partials of operators %v do not combine into a valid signature: %v", v, set, err)
			}
		}
		two := map[uint64][]byte{1: results[0].Shares[v].SignByte(msg).Serialize(), 2: results[1].Shares[v].SignByte(msg).Serialize()}
		if full, err := signing.RecoverSignature(two, 2); err == nil && signing.Verify(group, msg, full) == nil {
			t.Fatalf("validator %d: two partials made a valid signature with threshold 3", v)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := lock.DecodeHex(s, signing.PublicKeyLength)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is a transport that records every message an operator sends.
type recorder struct {
	Transport
	self int
	mu   *sync.Mutex
	log  *[]sentMsg
}

type sentMsg struct {
	from, to int
	msg      []byte
}

func (r *recorder) Send(ctx context.Context, to int, msg []byte) error {
	r.mu.Lock()
	*r.log = append(*r.log, sentMsg{from: r.self, to: to, msg: bytes.Clone(msg)})
	r.mu.Unlock()
	return r.Transport.Send(ctx, to, msg)
}

// Dealers' secrets never leave their process: no message carries a polynomial coefficient,
// the only secret data sent is f_i(j) to operator j, no message carries a final share, and the
// polynomials and received shares are zeroed when the ceremony ends.
func TestDKG_SecretsZeroedAndNeverSent(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2)
	var mu sync.Mutex
	polys := map[int][][]bls.SecretKey{} // references, to check the zeroing
	coeffs := map[int][][][]byte{}       // copies, to look for them in messages
	recvs := map[int][][]bls.SecretKey{} // references
	testHookPolys = func(self int, p [][]bls.SecretKey) {
		mu.Lock()
		defer mu.Unlock()
		polys[self] = p
		for _, poly := range p {
			var cs [][]byte
			for k := range poly {
				cs = append(cs, poly[k].Serialize())
			}
			coeffs[self] = append(coeffs[self], cs)
		}
	}
	testHookReceived = func(self int, r [][]bls.SecretKey) { mu.Lock(); recvs[self] = r; mu.Unlock() }
	defer func() { testHookPolys, testHookReceived = nil, nil }()

	var sent []sentMsg
	trs := NewMemTransports(4)
	for i := range trs {
		trs[i] = &recorder{Transport: trs[i], self: i + 1, mu: &mu, log: &sent}
	}
	results, errs := runCeremony(t, c, trs, nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operator %d: %v", i+1, err)
		}
	}
	if len(polys) != 4 || len(recvs) != 4 {
		t.Fatalf("hooks saw %d dealers, %d receivers", len(polys), len(recvs))
	}
	for self, p := range polys {
		for v, poly := range p {
			for k := range poly {
				if !poly[k].IsZero() {
					t.Errorf("dealer %d: coefficient %d of validator %d's polynomial not zeroed", self, k, v)
				}
			}
		}
		for i, r := range recvs[self] {
			for v := range r {
				if !r[v].IsZero() {
					t.Errorf("operator %d: share from dealer %d of validator %d not zeroed", self, i+1, v)
				}
			}
		}
	}

	var finals [][]byte
	for _, r := range results {
		for _, s := range r.Shares {
			finals = append(finals, s.Serialize())
		}
	}
	deals := 0
	for _, m := range sent {
		env, _, err := decode(m.msg, params{n: 4, t: 3, v: 2})
		if err != nil {
			t.Fatalf("message %d->%d: %v", m.from, m.to, err)
		}
		blobs := allBlobs(env)
		for dealer, cs := range coeffs {
			for v, poly := range cs {
				for k, coef := range poly {
					for _, b := range append(blobs, m.msg) {
						if bytes.Contains(b, coef) {
							t.Fatalf("a %s message %d->%d carries coefficient %d of dealer %d's validator %d", env.Kind, m.from, m.to, k, dealer, v)
						}
					}
				}
			}
		}
		for _, f := range finals {
			for _, b := range blobs {
				if bytes.Contains(b, f) {
					t.Fatalf("a %s message %d->%d carries a final share", env.Kind, m.from, m.to)
				}
			}
		}
		if env.Kind != kindDeal {
			continue
		}
		deals++
		// The deal's shares are exactly f_dealer(to), for every validator.
		var want []byte
		for _, poly := range coeffs[m.from] {
			msk := make([]bls.SecretKey, len(poly))
			for k := range poly {
				if err := msk[k].Deserialize(poly[k]); err != nil {
					t.Fatal(err)
				}
			}
			var id bls.ID
			_ = id.SetDecString(fmt.Sprint(m.to))
			var s bls.SecretKey
			if err := s.Set(msk, &id); err != nil {
				t.Fatal(err)
			}
			want = append(want, s.Serialize()...)
		}
		if !bytes.Equal(env.Deal.Shares, want) {
			t.Fatalf("deal %d->%d: shares are not f_%d(%d)", m.from, m.to, m.from, m.to)
		}
	}
	if deals != 12 {
		t.Fatalf("%d deal messages, want 12 (one per ordered pair)", deals)
	}
}

// allBlobs returns every byte field of a message.
func allBlobs(e *envelope) [][]byte {
	out := [][]byte{e.Session}
	switch {
	case e.Hello != nil:
		out = append(out, e.Hello.Nonce)
	case e.Deal != nil:
		out = append(out, e.Deal.Commitments, e.Deal.Pops, e.Deal.CommitSig, e.Deal.Shares, e.Deal.SharesSig)
	case e.Verify != nil:
		for _, ec := range e.Verify.Echoes {
			out = append(out, ec.Digest, ec.Sig)
		}
		for _, cp := range e.Verify.Complaints {
			out = append(out, cp.Shares, cp.SharesSig)
		}
	case e.Finish != nil:
		out = append(out, e.Finish.DepositPartials, []byte(e.Finish.LockSig))
	}
	return out
}

// tamper is an operator's transport rewritten by a test: a malicious operator.
type tamper struct {
	Transport
	onSend func(to int, msg []byte) []byte
	onRecv func(from int, msg []byte)
}

func (m *tamper) Send(ctx context.Context, to int, msg []byte) error {
	if m.onSend != nil {
		msg = m.onSend(to, msg)
	}
	return m.Transport.Send(ctx, to, msg)
}

func (m *tamper) Receive(ctx context.Context) (int, []byte, error) {
	from, msg, err := m.Transport.Receive(ctx)
	if err == nil && m.onRecv != nil {
		m.onRecv(from, bytes.Clone(msg))
	}
	return from, msg, err
}

// rewriteDeal decodes a deal, lets f change it, and re-encodes it.
func rewriteDeal(t *testing.T, msg []byte, f func(session [32]byte, d *dealMsg)) []byte {
	var env envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		t.Error(err)
		return msg
	}
	if env.Kind != kindDeal {
		return msg
	}
	var session [32]byte
	copy(session[:], env.Session)
	f(session, env.Deal)
	b, err := json.Marshal(&env)
	if err != nil {
		t.Error(err)
		return msg
	}
	return b
}

func sign(t *testing.T, k crypto.PrivKey, msg []byte) []byte {
	s, err := k.Sign(msg)
	if err != nil {
		t.Error(err)
	}
	return s
}

// checkAllBlame requires every operator's ceremony to have aborted blaming culprit alone, with
// the given reason among the faults.
func checkAllBlame(t *testing.T, errs []error, culprit int, reason string) {
	t.Helper()
	for i, err := range errs {
		var ae *AbortError
		if !errors.As(err, &ae) {
			t.Fatalf("operator %d: err = %v, want an abort", i+1, err)
		}
		if !slices.ContainsFunc(ae.Faults, func(f Fault) bool { return strings.Contains(f.Reason, reason) }) {
			t.Fatalf("operator %d: %v; want operator %d blamed for %q", i+1, err, culprit, reason)
		}
		for _, f := range ae.Faults {
			if f.Operator != culprit {
				t.Fatalf("operator %d: an honest operator is blamed: %v", i+1, err)
			}
		}
		t.Logf("operator %d: %v", i+1, err)
	}
}

func TestDKG_BadShareAbortsNamingDealer(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2)
	defHash, _ := c.def.HashBytes()
	trs := NewMemTransports(4)
	const bad, victim = 2, 3
	trs[bad-1] = &tamper{Transport: trs[bad-1], onSend: func(to int, msg []byte) []byte {
		if to != victim {
			return msg
		}
		return rewriteDeal(t, msg, func(session [32]byte, d *dealMsg) {
			// Validator 1's share plus one, re-signed: a signed lie.
			var s, one bls.SecretKey
			_ = s.Deserialize(d.Shares[shareLen : 2*shareLen])
			_ = one.SetDecString("1")
			s.Add(&one)
			copy(d.Shares[shareLen:], s.Serialize())
			d.SharesSig = sign(t, c.keys[bad-1], sharesSigMsg(sharesDigest(defHash, session, bad, to, d.Shares)))
		})
	}}
	results, errs := runCeremony(t, c, trs, nil)
	for i, r := range results {
		if r != nil {
			t.Fatalf("operator %d finished a ceremony with a bad share", i+1)
		}
	}
	checkAllBlame(t, errs, bad, "sent operator 3 a share of validator 1 that does not match its commitments")
}

func TestDKG_EquivocatingDealerAbortsNamingIt(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2)
	trs := NewMemTransports(4)
	const bad, victim = 2, 3
	trs[bad-1] = &tamper{Transport: trs[bad-1], onSend: func(to int, msg []byte) []byte {
		if to != victim {
			return msg
		}
		// Operator 3 gets a whole other, internally consistent deal: other polynomials, their
		// commitments, valid proofs of possession and matching shares, all signed. Only the echo
		// can tell.
		return rewriteDeal(t, msg, func(session [32]byte, d *dealMsg) {
			defHash, _ := c.def.HashBytes()
			d.Commitments, d.Pops, d.Shares = nil, nil, nil
			var id bls.ID
			_ = id.SetDecString(fmt.Sprint(to))
			for v := 0; v < c.def.NumValidators; v++ {
				poly := make([]bls.SecretKey, c.def.Threshold)
				for k := range poly {
					poly[k].SetByCSPRNG()
					d.Commitments = append(d.Commitments, poly[k].GetPublicKey().Serialize()...)
				}
				d.Pops = append(d.Pops, poly[0].SignByte(popMsg(defHash, session, bad, v)).Serialize()...)
				var s bls.SecretKey
				_ = s.Set(poly, &id)
				d.Shares = append(d.Shares, s.Serialize()...)
			}
			d.CommitSig = sign(t, c.keys[bad-1], commitSigMsg(commitDigest(defHash, session, bad, d.Commitments, d.Pops)))
			d.SharesSig = sign(t, c.keys[bad-1], sharesSigMsg(sharesDigest(defHash, session, bad, to, d.Shares)))
		})
	}}
	_, errs := runCeremony(t, c, trs, nil)
	checkAllBlame(t, errs, bad, "sent different commitments to different operators")
}

// A bad proof of possession (here: another validator's) is found by everyone from the
// commitments alone. (The dealer's own echo still shows what it meant to send, so the echo
// round blames it too.)
func TestDKG_BadProofOfPossessionAborts(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2)
	defHash, _ := c.def.HashBytes()
	trs := NewMemTransports(4)
	const bad = 4
	trs[bad-1] = &tamper{Transport: trs[bad-1], onSend: func(to int, msg []byte) []byte {
		return rewriteDeal(t, msg, func(session [32]byte, d *dealMsg) {
			copy(d.Pops[:popLen], d.Pops[popLen:]) // validator 1's proof in validator 0's place
			d.CommitSig = sign(t, c.keys[bad-1], commitSigMsg(commitDigest(defHash, session, bad, d.Commitments, d.Pops)))
		})
	}}
	_, errs := runCeremony(t, c, trs, nil)
	checkAllBlame(t, errs, bad, "proof of possession for validator 0")
}

// An operator that complains about a good share is named, not the dealer: its evidence (the
// dealer-signed shares) shows that the shares match.
func TestDKG_FalseComplaintBlamesComplainer(t *testing.T) {
	c := newTestCluster(t, 4, 3, 2)
	trs := NewMemTransports(4)
	const liar, dealer = 3, 1
	var mu sync.Mutex
	var evidence *dealMsg
	trs[liar-1] = &tamper{Transport: trs[liar-1],
		onRecv: func(from int, msg []byte) {
			var env envelope
			if json.Unmarshal(msg, &env) == nil && env.Kind == kindDeal && from == dealer {
				mu.Lock()
				evidence = env.Deal
				mu.Unlock()
			}
		},
		onSend: func(to int, msg []byte) []byte {
			var env envelope
			if err := json.Unmarshal(msg, &env); err != nil || env.Kind != kindVerify {
				return msg
			}
			mu.Lock()
			defer mu.Unlock()
			env.Verify.Complaints = append(env.Verify.Complaints, complaint{Dealer: dealer, Kind: complaintShares,
				Reason: "made up", Shares: evidence.Shares, SharesSig: evidence.SharesSig})
			b, _ := json.Marshal(&env)
			return b
		}}
	_, errs := runCeremony(t, c, trs, nil)
	for i, err := range errs {
		if i+1 == liar {
			continue // its own ceremony judges its own verify message, not the doctored one
		}
		var ae *AbortError
		if !errors.As(err, &ae) || ae.Faults[0].Operator != liar || !strings.Contains(ae.Faults[0].Reason, "complained falsely") || ae.Blames(dealer) {
			t.Fatalf("operator %d: err = %v, want operator %d blamed for a false complaint", i+1, err, liar)
		}
	}
}

func TestDKG_OfflineOperatorTimesOut(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	trs := NewMemTransports(4)
	trs[3] = nil // operator 4 never starts
	start := time.Now()
	_, errs := runCeremony(t, c, trs, func(_ int, cfg *Config) { cfg.StartTimeout = time.Second })
	for i, err := range errs[:3] {
		var ae *AbortError
		if !errors.As(err, &ae) || ae.Faults[0].Operator != 4 || !strings.Contains(ae.Faults[0].Reason, "sent no hello message") {
			t.Fatalf("operator %d: err = %v, want operator 4 named as offline", i+1, err)
		}
		if !strings.Contains(err.Error(), c.def.Operators[3].PeerID) {
			t.Fatalf("operator %d: error does not give operator 4's peer id: %v", i+1, err)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout took %s", time.Since(start))
	}
}

// An operator that stops mid-ceremony (after hello) is named by the others when the next round
// times out, and its own abort notice reaches them first.
func TestDKG_OperatorStopsMidCeremony(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	trs := NewMemTransports(4)
	ctx4, cancel4 := context.WithCancel(context.Background())
	trs[3] = &tamper{Transport: trs[3], onSend: func(_ int, msg []byte) []byte {
		var env envelope
		if json.Unmarshal(msg, &env) == nil && env.Kind == kindDeal {
			cancel4() // interrupted while dealing
		}
		return msg
	}}
	n := 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		ctx := context.Background()
		if i == 3 {
			ctx = ctx4
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Run(ctx, Config{Definition: c.def, Key: c.keys[i], Transport: trs[i], StartTimeout: 5 * time.Second, RoundTimeout: 2 * time.Second})
		}()
	}
	wg.Wait()
	if !errors.Is(errs[3], context.Canceled) {
		t.Fatalf("operator 4: err = %v", errs[3])
	}
	for i, err := range errs[:3] {
		var ae *AbortError
		if !errors.As(err, &ae) || !ae.Blames(4) {
			t.Fatalf("operator %d: err = %v, want operator 4 named", i+1, err)
		}
	}
}

func TestDKG_RefusesUnsignedDefinition(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	c.def.Operators[2].Signature = ""
	_, err := Run(context.Background(), Config{Definition: c.def, Key: c.keys[0], Transport: NewMemTransports(4)[0]})
	if !errors.Is(err, lock.ErrBadDefinition) || !strings.Contains(err.Error(), "operator 3") {
		t.Fatalf("err = %v, want refusal naming operator 3", err)
	}
	// A signature over another definition counts as none.
	other := newTestCluster(t, 4, 3, 1)
	c.def.Operators[2].Signature = other.def.Operators[2].Signature
	if _, err := Run(context.Background(), Config{Definition: c.def, Key: c.keys[0], Transport: NewMemTransports(4)[0]}); !errors.Is(err, lock.ErrBadDefinition) {
		t.Fatalf("err = %v", err)
	}
	// A key that is not an operator's.
	c2 := newTestCluster(t, 4, 3, 1)
	if _, err := Run(context.Background(), Config{Definition: c2.def, Key: c.keys[0], Transport: NewMemTransports(4)[0]}); err == nil || !strings.Contains(err.Error(), "not an operator") {
		t.Fatalf("err = %v", err)
	}
}

// An operator running another definition (same operators, another ceremony) is named at hello.
func TestDKG_OtherDefinitionNamed(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	o := *c.def
	o.Operators = append([]lock.DefinitionOperator(nil), c.def.Operators...)
	o.UUID = "00000000-0000-4000-8000-000000000000"
	o.DefinitionHash, _ = o.ComputeHash()
	for i := range o.Operators {
		o.Operators[i].Signature = ""
	}
	for _, k := range c.keys {
		if err := o.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	_, errs := runCeremony(t, c, NewMemTransports(4), func(i int, cfg *Config) {
		if i == 2 {
			cfg.Definition = &o
		}
	})
	for i, err := range errs {
		var ae *AbortError
		if !errors.As(err, &ae) {
			t.Fatalf("operator %d: err = %v", i+1, err)
		}
		// Either it found operator 2's hello itself, or operator 2's abort notice (blaming
		// everyone else, from its side) came first: the notice says who reported it.
		if i+1 != 2 && ae.ReportedBy != 2 && (ae.Faults[0].Operator != 2 || !strings.Contains(ae.Faults[0].Reason, "another cluster definition")) {
			t.Fatalf("operator %d: err = %v, want operator 2 named", i+1, err)
		}
	}
}

func TestDKG_MalformedMessageAborts(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	trs := NewMemTransports(4)
	trs[1] = &tamper{Transport: trs[1], onSend: func(to int, msg []byte) []byte {
		var env envelope
		if json.Unmarshal(msg, &env) == nil && env.Kind == kindDeal {
			return []byte(`{"kind":"deal","deal":{"commitments":"!!"}`)
		}
		return msg
	}}
	_, errs := runCeremony(t, c, trs, nil)
	for i, err := range errs {
		if i == 1 {
			continue
		}
		var ae *AbortError
		if !errors.As(err, &ae) || !ae.Blames(2) {
			t.Fatalf("operator %d: err = %v, want operator 2 named", i+1, err)
		}
	}
}

func TestDecode_RefusesMalformed(t *testing.T) {
	p := params{n: 4, t: 3, v: 2}
	sess := bytes.Repeat([]byte{1}, 32)
	good := func() *envelope {
		return &envelope{Kind: kindVerify, Session: sess, Verify: &verifyMsg{Echoes: make([]echo, 4)}}
	}
	if b, _ := encode(good()); true {
		if _, r, err := decode(b, p); err != nil || r != roundVerify {
			t.Fatalf("good verify: %d, %v", r, err)
		}
	}
	cases := map[string]func() []byte{
		"not json":      func() []byte { return []byte("\x00\x01") },
		"two bodies":    func() []byte { e := good(); e.Hello = &helloMsg{Nonce: make([]byte, 32)}; b, _ := encode(e); return b },
		"kind mismatch": func() []byte { e := good(); e.Kind = kindFinish; b, _ := encode(e); return b },
		"short session": func() []byte { e := good(); e.Session = sess[:5]; b, _ := encode(e); return b },
		"echo count":    func() []byte { e := good(); e.Verify.Echoes = e.Verify.Echoes[:3]; b, _ := encode(e); return b },
		"complaint dealer": func() []byte {
			e := good()
			e.Verify.Complaints = []complaint{{Dealer: 9, Kind: complaintShares}}
			b, _ := encode(e)
			return b
		},
		"complaint kind": func() []byte {
			e := good()
			e.Verify.Complaints = []complaint{{Dealer: 1, Kind: "x"}}
			b, _ := encode(e)
			return b
		},
		"evidence size": func() []byte {
			e := good()
			e.Verify.Complaints = []complaint{{Dealer: 1, Kind: complaintShares, Shares: make([]byte, 33)}}
			b, _ := encode(e)
			return b
		},
		"unknown field": func() []byte { return []byte(`{"kind":"hello","x":1,"hello":{"nonce":""}}`) },
		"trailing data": func() []byte { b, _ := encode(good()); return append(b, []byte(`{}`)...) },
		"finish partials": func() []byte {
			b, _ := encode(&envelope{Kind: kindFinish, Session: sess, Finish: &finishMsg{}})
			return b
		},
		"abort no faults": func() []byte { b, _ := encode(&envelope{Kind: kindAbort, Abort: &abortMsg{}}); return b },
		"abort operator": func() []byte {
			b, _ := encode(&envelope{Kind: kindAbort, Abort: &abortMsg{Faults: []Fault{{Operator: 7, Reason: "x"}}}})
			return b
		},
		"hello nonce": func() []byte {
			b, _ := encode(&envelope{Kind: kindHello, Hello: &helloMsg{Nonce: []byte{1}}})
			return b
		},
	}
	for name, mk := range cases {
		if _, _, err := decode(mk(), p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecode: no input makes decode panic, and whatever it accepts has the sizes the
// ceremony relies on when it indexes into the message.
func FuzzDecode(f *testing.F) {
	p := params{n: 4, t: 3, v: 2}
	sess := bytes.Repeat([]byte{1}, 32)
	for _, e := range []*envelope{
		{Kind: kindHello, Hello: &helloMsg{DefinitionHash: "0x00", Nonce: make([]byte, 32)}},
		{Kind: kindDeal, Session: sess, Deal: &dealMsg{Commitments: make([]byte, 6*48), Pops: make([]byte, 2*96), Shares: make([]byte, 64)}},
		{Kind: kindVerify, Session: sess, Verify: &verifyMsg{Echoes: make([]echo, 4), Complaints: []complaint{{Dealer: 2, Kind: complaintShares, Shares: make([]byte, 64), SharesSig: []byte{1}}}}},
		{Kind: kindFinish, Session: sess, Finish: &finishMsg{DepositPartials: make([]byte, 2*96)}},
		{Kind: kindAbort, Abort: &abortMsg{Faults: []Fault{{Operator: 1, Reason: "x"}}}},
	} {
		b, _ := encode(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, _, err := decode(b, p)
		if err != nil {
			return
		}
		if e.Verify != nil {
			for _, c := range e.Verify.Complaints {
				if c.Kind == complaintShares && len(c.Shares) != p.v*shareLen {
					t.Fatalf("share complaint with %d bytes of evidence accepted", len(c.Shares))
				}
			}
			if len(e.Verify.Echoes) != p.n {
				t.Fatalf("%d echoes accepted", len(e.Verify.Echoes))
			}
		}
		if e.Finish != nil && len(e.Finish.DepositPartials) != p.v*partialLen {
			t.Fatal("finish with wrong partials accepted")
		}
	})
}
