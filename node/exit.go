package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

// Voluntary exits are irreversible, so no single operator may cause one: a node makes its exit
// partial only when its own operator asks it through the local admin endpoint, and shares it
// with the peers, which keep it (on disk) until t operators have asked. Then every node that
// holds t partials combines them, checks the signature under the group key, and submits it if
// its operator asked for submission.

const exitProtocol = "/dvmesh/exit/1.0.0"

// ExitsFileName holds the pending exits and their partials in the data directory.
const ExitsFileName = "exits.json"

// ExitRequest is what `dvmesh exit` sends to the admin endpoint.
type ExitRequest struct {
	Validator string `json:"validator"` // 0x group public key or validator index
	// Epoch is the exit's epoch; nil means the current epoch. The first request of any operator
	// fixes it for the validator.
	Epoch *uint64 `json:"epoch,omitempty"`
	// Submit asks this node to submit the exit to its beacon node once it combines.
	Submit bool `json:"submit"`
}

// ExitStatus is the admin endpoint's answer.
type ExitStatus struct {
	Pubkey         string   `json:"pubkey"`
	ValidatorIndex uint64   `json:"validator_index"`
	Epoch          uint64   `json:"epoch"`
	Partials       []uint64 `json:"partials"` // share indices whose operators consented
	Threshold      int      `json:"threshold"`
	// SignedExit is the combined, verified exit (beacon-API JSON) once threshold partials exist.
	SignedExit json.RawMessage `json:"signed_exit,omitempty"`
	Submitted  bool            `json:"submitted"`
	SubmitErr  string          `json:"submit_error,omitempty"`
}

// pendingExit is one validator's exit being consented to.
type pendingExit struct {
	Pubkey    phase0.BLSPubKey      `json:"pubkey"`
	Index     phase0.ValidatorIndex `json:"validator_index"`
	Epoch     phase0.Epoch          `json:"epoch"`
	Partials  map[uint64][]byte     `json:"partials"`
	Submit    bool                  `json:"submit"`
	Signed    []byte                `json:"signed,omitempty"` // combined signature
	Submitted bool                  `json:"submitted"`
	SubmitErr string                `json:"submit_error,omitempty"`
}

// exitBook keeps the pending exits, persisted so that consent survives restarts.
type exitBook struct {
	mu      sync.Mutex
	path    string
	pending map[phase0.BLSPubKey]*pendingExit
}

func openExitBook(dataDir string) (*exitBook, error) {
	b := &exitBook{path: filepath.Join(dataDir, ExitsFileName), pending: map[phase0.BLSPubKey]*pendingExit{}}
	raw, err := os.ReadFile(b.path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pending exits: %w", err)
	}
	var list []*pendingExit
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("pending exits file %s: %w", b.path, err)
	}
	for _, p := range list {
		b.pending[p.Pubkey] = p
	}
	return b, nil
}

// saveLocked writes the book atomically (temp file, fsync, rename).
func (b *exitBook) saveLocked() error {
	list := make([]*pendingExit, 0, len(b.pending))
	for _, p := range b.pending {
		list = append(list, p)
	}
	raw, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := b.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write pending exits: %w", err)
	}
	if _, err = f.Write(raw); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write pending exits: %w", err)
	}
	if err := os.Rename(tmp, b.path); err != nil {
		return fmt.Errorf("write pending exits: %w", err)
	}
	return nil
}

// exitRoot is the exit's signing root: EIP-7044 fixes the domain to the Capella fork version.
func (n *Node) exitRoot(index phase0.ValidatorIndex, epoch phase0.Epoch) (phase0.Root, error) {
	version, err := network.CapellaForkVersion(n.chain.Forks)
	if err != nil {
		return phase0.Root{}, err
	}
	domain, err := signing.ComputeDomain(signing.DomainVoluntaryExit, version, n.chain.GenesisValidatorsRoot)
	if err != nil {
		return phase0.Root{}, err
	}
	return signing.SigningRoot(&phase0.VoluntaryExit{Epoch: epoch, ValidatorIndex: index}, domain)
}

// resolveValidator finds a lock validator by 0x public key or validator index.
func (n *Node) resolveValidator(s string) (phase0.BLSPubKey, phase0.ValidatorIndex, error) {
	var pk phase0.BLSPubKey
	n.mu.Lock()
	defer n.mu.Unlock()
	if strings.HasPrefix(s, "0x") {
		b, err := lock.DecodeHex(s, len(pk))
		if err != nil {
			return pk, 0, fmt.Errorf("validator %q: %w", s, err)
		}
		copy(pk[:], b)
		if _, ok := n.id.Shares[pk]; !ok {
			return pk, 0, fmt.Errorf("validator %s is not in this cluster's lock", s)
		}
		idx, ok := n.indices[pk]
		if !ok {
			return pk, 0, fmt.Errorf("validator %s has no index on the beacon node (not deposited or not yet active)", s)
		}
		return pk, idx, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return pk, 0, fmt.Errorf("validator %q: give a 0x public key or a validator index", s)
	}
	for p, idx := range n.indices {
		if uint64(idx) == v {
			return p, idx, nil
		}
	}
	return pk, 0, fmt.Errorf("validator index %d is not one of this cluster's validators", v)
}

// exitMessage is one operator's consent: its partial signature over the exit.
type exitMessage struct {
	Pubkey    phase0.BLSPubKey `json:"pubkey"`
	Epoch     phase0.Epoch     `json:"epoch"`
	Signature []byte           `json:"signature"`
}

// requestExit is the operator's own request: sign this node's partial (the only place one is
// ever made), record it, share it, and combine if threshold is reached.
func (n *Node) requestExit(ctx context.Context, req ExitRequest) (*ExitStatus, error) {
	if reason := n.haltedReason(); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrHalted, reason)
	}
	pk, idx, err := n.resolveValidator(req.Validator)
	if err != nil {
		return nil, err
	}
	cur, _ := n.chain.SlotAt(time.Now())
	epoch := n.chain.EpochOf(cur)
	if req.Epoch != nil {
		epoch = phase0.Epoch(*req.Epoch)
	}
	root, err := n.exitRoot(idx, epoch)
	if err != nil {
		return nil, err
	}
	share := n.id.Shares[pk]
	sig := share.SignByte(root[:]).Serialize()
	n.exits.mu.Lock()
	p, err := n.exits.addLocked(pk, idx, epoch, n.id.ShareIndex, sig)
	if err == nil {
		p.Submit = p.Submit || req.Submit
		err = n.exits.saveLocked()
	}
	n.exits.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.log.Warn("VOLUNTARY EXIT consented to by this node's operator", "pubkey", fmt.Sprintf("%#x", pk), "validator_index", idx, "epoch", epoch)
	msg, _ := json.Marshal(exitMessage{Pubkey: pk, Epoch: epoch, Signature: sig})
	n.askPeers(ctx, exitProtocol, msg, func(p peer.ID, resp []byte, err error) {
		if err != nil || string(resp) != "ok" {
			n.log.Warn("Peer did not take this node's exit partial", "peer", p, "err", err, "answer", string(resp))
		}
	})
	n.combineExit(ctx, pk)
	return n.exitStatus(pk)
}

// addLocked records a verified partial from share index from; the first exit of a validator
// fixes its epoch.
func (b *exitBook) addLocked(pk phase0.BLSPubKey, idx phase0.ValidatorIndex, epoch phase0.Epoch, from uint64, sig []byte) (*pendingExit, error) {
	p, ok := b.pending[pk]
	if !ok {
		p = &pendingExit{Pubkey: pk, Index: idx, Epoch: epoch, Partials: map[uint64][]byte{}}
		b.pending[pk] = p
	}
	if p.Epoch != epoch || p.Index != idx {
		return nil, fmt.Errorf("an exit of validator %#x for epoch %d is already pending; the first request fixes the epoch", pk, p.Epoch)
	}
	p.Partials[from] = sig
	return p, nil
}

// serveExits takes the peers' exit partials: verified against the sender's public share before
// they are kept.
func (n *Node) serveExits() {
	p2p.Serve(n.host, exitProtocol, 5*time.Second, func(from peer.ID, req []byte) []byte {
		idx, ok := n.id.Lock.ShareIndex(from)
		var m exitMessage
		if !ok || json.Unmarshal(req, &m) != nil {
			return []byte("refused: malformed")
		}
		if err := n.takeExitPartial(idx, m); err != nil {
			n.log.Warn("Exit partial from a peer refused", "peer", idx, "err", err)
			return []byte("refused: " + err.Error())
		}
		n.log.Warn("A peer operator consented to a VOLUNTARY EXIT", "peer", idx, "pubkey", fmt.Sprintf("%#x", m.Pubkey), "epoch", m.Epoch)
		go n.combineExit(context.Background(), m.Pubkey)
		return []byte("ok")
	})
}

func (n *Node) takeExitPartial(from uint64, m exitMessage) error {
	chain := n.currentChain()
	if chain == nil {
		return errors.New("not connected to the chain yet")
	}
	n.mu.Lock()
	idx, ok := n.indices[m.Pubkey]
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("validator %#x is not one of this cluster's known validators", m.Pubkey)
	}
	root, err := n.exitRoot(idx, m.Epoch)
	if err != nil {
		return err
	}
	share, ok := n.id.PublicShares[m.Pubkey][from]
	if !ok {
		return fmt.Errorf("no public share %d", from)
	}
	sig, err := signing.ParseSignature(m.Signature)
	if err != nil {
		return err
	}
	if !sig.VerifyByte(share, root[:]) {
		return errors.New("partial signature does not verify under the sender's public share")
	}
	n.exits.mu.Lock()
	defer n.exits.mu.Unlock()
	if _, err := n.exits.addLocked(m.Pubkey, idx, m.Epoch, from, m.Signature); err != nil {
		return err
	}
	return n.exits.saveLocked()
}

// combineExit recovers and verifies the exit once threshold partials exist, and submits it if
// this node's operator asked to.
func (n *Node) combineExit(ctx context.Context, pk phase0.BLSPubKey) {
	n.exits.mu.Lock()
	p, ok := n.exits.pending[pk]
	if !ok || len(p.Partials) < n.id.Lock.Threshold || p.Submitted {
		n.exits.mu.Unlock()
		return
	}
	if p.Signed == nil {
		sig, err := signing.RecoverSignature(p.Partials, n.id.Lock.Threshold)
		if err == nil {
			var root phase0.Root
			if root, err = n.exitRoot(p.Index, p.Epoch); err == nil {
				err = signing.Verify(pk[:], root[:], sig)
			}
		}
		if err != nil {
			n.exits.mu.Unlock()
			n.log.Error("Exit partials do not combine to a valid signature", "pubkey", fmt.Sprintf("%#x", pk), "err", err)
			return
		}
		p.Signed = sig
		_ = n.exits.saveLocked()
		n.log.Warn("VOLUNTARY EXIT combined: threshold operators consented", "pubkey", fmt.Sprintf("%#x", pk), "epoch", p.Epoch)
	}
	submit, signed := p.Submit, n.signedExit(p)
	n.exits.mu.Unlock()
	if !submit {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := n.beacon.SubmitVoluntaryExit(sctx, signed)
	cancel()
	n.exits.mu.Lock()
	p.Submitted, p.SubmitErr = err == nil, ""
	if err != nil {
		p.SubmitErr = err.Error()
	}
	_ = n.exits.saveLocked()
	n.exits.mu.Unlock()
	if err != nil {
		n.log.Error("Voluntary exit submission failed; ask again to retry", "pubkey", fmt.Sprintf("%#x", pk), "err", err)
		return
	}
	n.log.Warn("VOLUNTARY EXIT submitted", "pubkey", fmt.Sprintf("%#x", pk), "epoch", p.Epoch)
}

func (n *Node) signedExit(p *pendingExit) *phase0.SignedVoluntaryExit {
	if p.Signed == nil {
		return nil
	}
	s := &phase0.SignedVoluntaryExit{Message: &phase0.VoluntaryExit{Epoch: p.Epoch, ValidatorIndex: p.Index}}
	copy(s.Signature[:], p.Signed)
	return s
}

func (n *Node) exitStatus(pk phase0.BLSPubKey) (*ExitStatus, error) {
	n.exits.mu.Lock()
	defer n.exits.mu.Unlock()
	p, ok := n.exits.pending[pk]
	if !ok {
		return nil, fmt.Errorf("no exit pending for %#x", pk)
	}
	st := &ExitStatus{Pubkey: fmt.Sprintf("%#x", pk), ValidatorIndex: uint64(p.Index), Epoch: uint64(p.Epoch),
		Threshold: n.id.Lock.Threshold, Submitted: p.Submitted, SubmitErr: p.SubmitErr}
	for i := range p.Partials {
		st.Partials = append(st.Partials, i)
	}
	if s := n.signedExit(p); s != nil {
		st.SignedExit, _ = json.Marshal(s)
	}
	return st, nil
}

// serveAdmin serves the local admin endpoint: POST /admin/v1/exit (consent to an exit),
// GET /admin/v1/exit?validator=... (its status). It has no authentication, so it listens on a
// loopback address only (checked in Config).
func (n *Node) serveAdmin(ctx context.Context, addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/v1/exit", func(w http.ResponseWriter, r *http.Request) {
		var req ExitRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeJSONError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
			return
		}
		select {
		case <-n.ready:
		default:
			writeJSONError(w, http.StatusServiceUnavailable, errors.New("node not connected to the chain yet"))
			return
		}
		st, err := n.requestExit(r.Context(), req)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /admin/v1/exit", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-n.ready:
		default:
			writeJSONError(w, http.StatusServiceUnavailable, errors.New("node not connected to the chain yet"))
			return
		}
		pk, _, err := n.resolveValidator(r.URL.Query().Get("validator"))
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return
		}
		st, err := n.exitStatus(pk)
		if err != nil {
			writeJSONError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, st)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("Admin server stopped", "err", err)
		}
	}()
	return srv, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
