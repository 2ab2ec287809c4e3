package dkg

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dvmesh/dvmesh/signing"
)

// The ceremony's rounds, in order. Each operator sends exactly one message per round to each
// other operator; abort may come at any time.
const (
	roundHello  = iota // definition hash and a fresh nonce: every operator is online, session id
	roundDeal          // commitments and proofs of possession (same for all), the recipient's shares
	roundVerify        // echo of every dealer's commitments digest, complaints
	roundFinish        // approval of the lock, partial deposit signatures
	numRounds
)

var roundNames = [numRounds]string{"hello", "deal", "verify", "finish"}

// Message kinds on the wire.
const (
	kindHello  = "hello"
	kindDeal   = "deal"
	kindVerify = "verify"
	kindFinish = "finish"
	kindAbort  = "abort"
)

// Sizes of wire fields.
const (
	sessionLen     = 32
	nonceLen       = 32
	digestLen      = 32
	maxPeerSigLen  = 1024 // libp2p signature (Ed25519: 64 bytes)
	maxReasonLen   = 1024
	commitmentLen  = signing.PublicKeyLength
	popLen         = signing.SignatureLength
	shareLen       = signing.SecretKeyLength
	partialLen     = signing.SignatureLength
	maxLockHashLen = 66
)

// envelope is one message. Exactly one body is set, matching Kind. The sender is not in the
// message: the transport authenticates it (libp2p: the Noise session's peer ID).
type envelope struct {
	Kind string `json:"kind"`
	// Session is the ceremony's session id, set on every message after hello: messages of
	// another ceremony (or another run of this one) are refused.
	Session []byte     `json:"session,omitempty"`
	Hello   *helloMsg  `json:"hello,omitempty"`
	Deal    *dealMsg   `json:"deal,omitempty"`
	Verify  *verifyMsg `json:"verify,omitempty"`
	Finish  *finishMsg `json:"finish,omitempty"`
	Abort   *abortMsg  `json:"abort,omitempty"`
}

type helloMsg struct {
	DefinitionHash string `json:"definition_hash"`
	Nonce          []byte `json:"nonce"`
}

// dealMsg is dealer -> recipient: the dealer's public commitments (the same for everyone, signed
// with its libp2p key so that equivocation is provable) and the recipient's private shares (also
// signed, so that the recipient can prove a bad share to everyone).
type dealMsg struct {
	Commitments []byte `json:"commitments"` // validator-major: V*t compressed G1 points
	Pops        []byte `json:"pops"`        // V BLS signatures by each constant term
	CommitSig   []byte `json:"commit_sig"`  // dealer's libp2p signature over the commitments digest
	Shares      []byte `json:"shares"`      // V scalars f_v(recipient)
	SharesSig   []byte `json:"shares_sig"`  // dealer's libp2p signature over the shares digest
}

// verifyMsg is broadcast after checking every deal.
type verifyMsg struct {
	// Echoes[i-1] is the commitments digest of dealer i as this operator received it, with the
	// dealer's signature; empty if the deal could not be read.
	Echoes     []echo      `json:"echoes"`
	Complaints []complaint `json:"complaints,omitempty"`
}

type echo struct {
	Digest []byte `json:"digest,omitempty"`
	Sig    []byte `json:"sig,omitempty"`
}

// Complaint kinds.
const (
	// complaintShares: a share does not match the dealer's commitments. The evidence (the shares
	// and the dealer's signature) lets every operator check it; the ceremony aborts anyway, so
	// publishing the bad shares costs nothing.
	complaintShares = "shares"
	// complaintCommitments: the commitments or proofs of possession are invalid; every operator
	// holds the same bytes (the echo checks it) and checks them itself.
	complaintCommitments = "commitments"
	// complaintUnverifiable: something only the complainer saw (missing or unsigned shares).
	complaintUnverifiable = "unverifiable"
)

type complaint struct {
	Dealer    int    `json:"dealer"`
	Kind      string `json:"kind"`
	Reason    string `json:"reason"`
	Shares    []byte `json:"shares,omitempty"`
	SharesSig []byte `json:"shares_sig,omitempty"`
}

type finishMsg struct {
	LockHash string `json:"lock_hash"`
	LockSig  string `json:"lock_sig"` // lock.OperatorSignatureMessage signed with the libp2p key
	// DepositPartials are V partial signatures of the validators' deposit signing roots.
	DepositPartials []byte `json:"deposit_partials"`
}

type abortMsg struct {
	Faults []Fault `json:"faults"`
}

// encode marshals a message; it cannot fail for these types, but the error is kept for honesty.
func encode(e *envelope) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", e.Kind, err)
	}
	return b, nil
}

// decode parses a message and checks its shape (kind, sizes) against the ceremony's parameters.
// Contents (points, signatures) are checked by the round that uses them.
func decode(b []byte, p params) (*envelope, int, error) {
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, 0, fmt.Errorf("undecodable: %w", err)
	}
	if dec.More() {
		return nil, 0, errors.New("trailing data after the message")
	}
	bodies := 0
	for _, set := range []bool{e.Hello != nil, e.Deal != nil, e.Verify != nil, e.Finish != nil, e.Abort != nil} {
		if set {
			bodies++
		}
	}
	if bodies != 1 {
		return nil, 0, fmt.Errorf("%s message with %d bodies", e.Kind, bodies)
	}
	if e.Kind != kindHello && e.Kind != kindAbort && len(e.Session) != sessionLen {
		return nil, 0, fmt.Errorf("%s message: session id of %d bytes", e.Kind, len(e.Session))
	}
	switch {
	case e.Kind == kindHello && e.Hello != nil:
		if len(e.Hello.Nonce) != nonceLen || len(e.Hello.DefinitionHash) > maxLockHashLen {
			return nil, 0, errors.New("hello: bad nonce or definition hash")
		}
		return &e, roundHello, nil
	case e.Kind == kindDeal && e.Deal != nil:
		return &e, roundDeal, nil // sizes are complaints, not transport faults: see checkDeal
	case e.Kind == kindVerify && e.Verify != nil:
		if len(e.Verify.Echoes) != p.n {
			return nil, 0, fmt.Errorf("verify: %d echoes for %d operators", len(e.Verify.Echoes), p.n)
		}
		for i, ec := range e.Verify.Echoes {
			if (len(ec.Digest) != 0 && len(ec.Digest) != digestLen) || len(ec.Sig) > maxPeerSigLen {
				return nil, 0, fmt.Errorf("verify: echo %d malformed", i+1)
			}
		}
		if len(e.Verify.Complaints) > p.n {
			return nil, 0, fmt.Errorf("verify: %d complaints", len(e.Verify.Complaints))
		}
		for _, c := range e.Verify.Complaints {
			if c.Dealer < 1 || c.Dealer > p.n || !validReason(c.Reason) || len(c.SharesSig) > maxPeerSigLen ||
				(len(c.Shares) != 0 && len(c.Shares) != p.v*shareLen) {
				return nil, 0, fmt.Errorf("verify: complaint against dealer %d malformed", c.Dealer)
			}
			switch c.Kind {
			case complaintShares:
				if len(c.Shares) != p.v*shareLen || len(c.SharesSig) == 0 {
					return nil, 0, fmt.Errorf("verify: share complaint against dealer %d without evidence", c.Dealer)
				}
			case complaintCommitments, complaintUnverifiable:
			default:
				return nil, 0, fmt.Errorf("verify: complaint kind %q", c.Kind)
			}
		}
		return &e, roundVerify, nil
	case e.Kind == kindFinish && e.Finish != nil:
		if len(e.Finish.LockHash) > maxLockHashLen || len(e.Finish.LockSig) > 2*maxPeerSigLen+2 ||
			len(e.Finish.DepositPartials) != p.v*partialLen {
			return nil, 0, errors.New("finish: malformed")
		}
		return &e, roundFinish, nil
	case e.Kind == kindAbort && e.Abort != nil:
		if len(e.Abort.Faults) == 0 || len(e.Abort.Faults) > 2*p.n {
			return nil, 0, fmt.Errorf("abort: %d faults", len(e.Abort.Faults))
		}
		for _, f := range e.Abort.Faults {
			if f.Operator < 0 || f.Operator > p.n || !validReason(f.Reason) || len(f.PeerID) > 128 {
				return nil, 0, errors.New("abort: malformed fault")
			}
		}
		return &e, -1, nil
	}
	return nil, 0, fmt.Errorf("message kind %q does not match its body", e.Kind)
}

func validReason(s string) bool { return len(s) <= maxReasonLen && utf8.ValidString(s) }

// params are the sizes a ceremony's messages are checked against.
type params struct {
	n, t, v int
}

// maxMessageSize bounds one message of a ceremony: the largest is a deal (commitments, proofs,
// shares) or a verify message carrying complaint evidence, base64-inflated by JSON.
func maxMessageSize(p params) int {
	deal := p.v * (p.t*commitmentLen + popLen + shareLen)
	verify := p.n*(digestLen+maxPeerSigLen) + p.n*(p.v*shareLen+maxPeerSigLen+maxReasonLen)
	return 64<<10 + 2*max(deal, verify, p.v*partialLen)
}

// Domain-separated digests and messages. Each binds the definition hash, the session (a hash of
// the definition hash and every operator's nonce of this run) and the dealer's index, so nothing
// signed in one ceremony, one run of it, or by one dealer, stands for another.

func be32(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

func sessionID(defHash [32]byte, nonces [][]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("dvmesh/dkg/v1/session"))
	h.Write(defHash[:])
	for _, n := range nonces {
		h.Write(n)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func commitDigest(defHash, session [32]byte, dealer int, commitments, pops []byte) []byte {
	h := sha256.New()
	h.Write([]byte("dvmesh/dkg/v1/commitments"))
	h.Write(defHash[:])
	h.Write(session[:])
	h.Write(be32(dealer))
	h.Write(be32(len(commitments)))
	h.Write(commitments)
	h.Write(pops)
	return h.Sum(nil)
}

func commitSigMsg(digest []byte) []byte {
	return append([]byte("dvmesh/dkg/v1/commitments-signature:"), digest...)
}

func sharesDigest(defHash, session [32]byte, dealer, recipient int, shares []byte) []byte {
	h := sha256.New()
	h.Write([]byte("dvmesh/dkg/v1/shares"))
	h.Write(defHash[:])
	h.Write(session[:])
	h.Write(be32(dealer))
	h.Write(be32(recipient))
	h.Write(shares)
	return h.Sum(nil)
}

func sharesSigMsg(digest []byte) []byte {
	return append([]byte("dvmesh/dkg/v1/shares-signature:"), digest...)
}

// popMsg is what dealer's constant term for validator signs (BLS) as proof of possession: it
// binds the definition hash, the session, the dealer index and the validator index, so a proof
// cannot be copied from another dealer, validator or ceremony (the rogue-key defence needs that).
func popMsg(defHash, session [32]byte, dealer, validator int) []byte {
	b := []byte("dvmesh/dkg/v1/proof-of-possession")
	b = append(b, defHash[:]...)
	b = append(b, session[:]...)
	b = append(b, be32(dealer)...)
	return append(b, be32(validator)...)
}
