package simbeacon

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	apiv1electra "github.com/attestantio/go-eth2-client/api/v1/electra"
	apiv1fulu "github.com/attestantio/go-eth2-client/api/v1/fulu"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/capella"
	"github.com/attestantio/go-eth2-client/spec/deneb"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/holiman/uint256"

	"github.com/dvmesh/dvmesh/signing"
)

// Blocks. GET /eth/v3/validator/blocks/{slot} produces a Fulu block for the slot's proposer with
// the given randao reveal (verified) and graffiti, on top of the previous slot's block, paying the
// fee recipient the proposer registered (prepare_beacon_proposer; for blinded blocks
// register_validator first) or Config.DefaultFeeRecipient. Blocks carry no operations, no
// attestations, an empty sync aggregate and no blobs (so no KZG proofs), and an execution payload
// without transactions. POST /eth/v2/beacon/blocks and /eth/v2/beacon/blinded_blocks accept a
// signed block only if it is one the simulator produced for its slot (same root) and the
// proposer's signature verifies. Accepted blocks are recorded per slot but do not change the
// chain: block roots, heads and attestation data stay synthetic (see blockRoot).

// Block values announced in the v3 headers, in Wei.
const (
	localPayloadValue   = "20000000000000000" // 0.02 ETH
	builderPayloadValue = "40000000000000000" // 0.04 ETH
	consensusBlockValue = "5000000000000000"  // 0.005 ETH
)

// defaultGasLimit is the gas limit of payloads whose proposer registered none.
const defaultGasLimit = 30_000_000

// maxProducedSlots bounds the memory of produced blocks: slots this far behind the current one
// are forgotten (their blocks can no longer be submitted).
const maxProducedSlots = 64

// maxProducedPerSlot bounds the blocks produced for one slot (several nodes of a cluster may each
// ask, with different graffiti).
const maxProducedPerSlot = 64

// producedBlock is a block the simulator served.
type producedBlock struct {
	blinded bool
}

// slotStartUnix returns when slot begins, in unix seconds.
func (s *Sim) slotStartUnix(genesis time.Time, slot phase0.Slot) uint64 {
	return uint64(s.slotStart(genesis, slot).Unix())
}

// zeroHashes[i] is the root of a zero-filled subtree of depth i.
var zeroHashes = func() [41][32]byte {
	var z [41][32]byte
	for i := 1; i < len(z); i++ {
		z[i] = sha256.Sum256(append(z[i-1][:], z[i-1][:]...))
	}
	return z
}()

// emptyListRoot is the hash tree root of an empty SSZ list whose limit spans depth levels of
// chunks: mix_in_length(zero subtree, 0).
func emptyListRoot(depth int) phase0.Root {
	var zero [32]byte
	return sha256.Sum256(append(zeroHashes[depth][:], zero[:]...))
}

// Roots of the empty transaction list (limit 2^20) and withdrawal list (limit 16 = 2^4).
var (
	emptyTransactionsRoot = emptyListRoot(20)
	emptyWithdrawalsRoot  = emptyListRoot(4)
)

// payloadFor returns the execution payload of a block at slot: empty, deterministic; the
// builder's payload differs from the local one (another block hash).
func (s *Sim) payloadFor(genesis time.Time, slot phase0.Slot, feeRecipient bellatrix.ExecutionAddress, gasLimit uint64, builder bool) *deneb.ExecutionPayload {
	tag := "exec"
	if builder {
		tag = "builder"
	}
	var prevRandao [32]byte
	r := taggedRoot("prevrandao", uint64(slot))
	copy(prevRandao[:], r[:])
	return &deneb.ExecutionPayload{
		ParentHash:    phase0.Hash32(taggedRoot("exec", uint64(slot)-1)),
		FeeRecipient:  feeRecipient,
		StateRoot:     taggedRoot(tag+"state", uint64(slot)),
		ReceiptsRoot:  emptyTransactionsRoot,
		PrevRandao:    prevRandao,
		BlockNumber:   uint64(slot),
		GasLimit:      gasLimit,
		Timestamp:     s.slotStartUnix(genesis, slot),
		ExtraData:     []byte{},
		BaseFeePerGas: uint256.NewInt(7),
		BlockHash:     phase0.Hash32(taggedRoot(tag, uint64(slot))),
		Transactions:  []bellatrix.Transaction{},
		Withdrawals:   []*capella.Withdrawal{},
	}
}

// payloadHeader returns the header of payload, which must have no transactions or withdrawals.
func payloadHeader(p *deneb.ExecutionPayload) *deneb.ExecutionPayloadHeader {
	return &deneb.ExecutionPayloadHeader{
		ParentHash:       p.ParentHash,
		FeeRecipient:     p.FeeRecipient,
		StateRoot:        p.StateRoot,
		ReceiptsRoot:     p.ReceiptsRoot,
		LogsBloom:        p.LogsBloom,
		PrevRandao:       p.PrevRandao,
		BlockNumber:      p.BlockNumber,
		GasLimit:         p.GasLimit,
		GasUsed:          p.GasUsed,
		Timestamp:        p.Timestamp,
		ExtraData:        p.ExtraData,
		BaseFeePerGas:    p.BaseFeePerGas,
		BlockHash:        p.BlockHash,
		TransactionsRoot: emptyTransactionsRoot,
		WithdrawalsRoot:  emptyWithdrawalsRoot,
		BlobGasUsed:      p.BlobGasUsed,
		ExcessBlobGas:    p.ExcessBlobGas,
	}
}

// blockBody returns the body of the block at slot, without its payload.
func blockBody(reveal phase0.BLSSignature, graffiti [32]byte) *electra.BeaconBlockBody {
	depositRoot := taggedRoot("deposit", 0)
	eth1Hash := taggedRoot("eth1", 0)
	return &electra.BeaconBlockBody{
		RANDAOReveal:          reveal,
		ETH1Data:              &phase0.ETH1Data{DepositRoot: depositRoot, DepositCount: 0, BlockHash: eth1Hash[:]},
		Graffiti:              graffiti,
		ProposerSlashings:     []*phase0.ProposerSlashing{},
		AttesterSlashings:     []*electra.AttesterSlashing{},
		Attestations:          []*electra.Attestation{},
		Deposits:              []*phase0.Deposit{},
		VoluntaryExits:        []*phase0.SignedVoluntaryExit{},
		SyncAggregate:         &altair.SyncAggregate{SyncCommitteeBits: bitfield.NewBitvector512(), SyncCommitteeSignature: infinitySignature},
		BLSToExecutionChanges: []*capella.SignedBLSToExecutionChange{},
		BlobKZGCommitments:    []deneb.KZGCommitment{},
		ExecutionRequests: &electra.ExecutionRequests{
			Deposits:       []*electra.DepositRequest{},
			Withdrawals:    []*electra.WithdrawalRequest{},
			Consolidations: []*electra.ConsolidationRequest{},
		},
	}
}

// produceResponse is the JSON of GET /eth/v3/validator/blocks/{slot}.
type produceResponse struct {
	Version                 string `json:"version"`
	ExecutionPayloadBlinded bool   `json:"execution_payload_blinded"`
	ExecutionPayloadValue   string `json:"execution_payload_value"`
	ConsensusBlockValue     string `json:"consensus_block_value"`
	Data                    any    `json:"data"`
}

// parseHexQuery parses an optional 0x-hex query value of exactly len(dst) bytes into dst.
func parseHexQuery(name, v string, dst []byte) error {
	b, err := decodeHex(v)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("invalid %s %q: want %d bytes of 0x hex", name, v, len(dst))
	}
	copy(dst, b)
	return nil
}

// handleProduceBlock serves GET /eth/v3/validator/blocks/{slot}?randao_reveal=..&graffiti=..
// &builder_boost_factor=..&skip_randao_verification. The slot must be the current or the next
// one and have a proposer; the randao reveal must be the proposer's signature of the slot's epoch
// (DOMAIN_RANDAO), unless skip_randao_verification is given with the point at infinity. Invalid
// requests get 400. The block is blinded when Config.BuilderBlocks is set and
// builder_boost_factor (default 100) is above 0.
func (s *Sim) handleProduceBlock(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	n, err := parseUint("slot", r.PathValue("slot"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	slot := phase0.Slot(n)
	q := r.URL.Query()
	var reveal phase0.BLSSignature
	if err := parseHexQuery("randao_reveal", q.Get("randao_reveal"), reveal[:]); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var graffiti [32]byte
	if v := q.Get("graffiti"); v != "" {
		if err := parseHexQuery("graffiti", v, graffiti[:]); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	boost := uint64(100)
	if v := q.Get("builder_boost_factor"); v != "" {
		if boost, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "invalid builder_boost_factor %q", v)
			return
		}
	}
	_, skipRandao := q["skip_randao_verification"]
	if skipRandao && reveal != infinitySignature {
		writeError(w, http.StatusBadRequest, "skip_randao_verification needs the point at infinity as randao_reveal")
		return
	}

	c := s.clock()
	switch {
	case !c.started:
		writeError(w, http.StatusBadRequest, "the chain has not started")
		return
	case slot < c.slot:
		writeError(w, http.StatusBadRequest, "slot %d is in the past (current slot %d)", slot, c.slot)
		return
	case slot > c.slot+1:
		writeError(w, http.StatusBadRequest, "slot %d is too far in the future (current slot %d)", slot, c.slot)
		return
	}
	proposer, ok := s.proposer(slot)
	if !ok {
		writeError(w, http.StatusBadRequest, "slot %d has no proposer", slot)
		return
	}
	epoch := s.epoch(slot)
	if !skipRandao {
		s.noteSubmitted(DutyRandao, proposer)
		domain, err := s.domainAt(signing.DomainRandao, epoch)
		if err == nil {
			err = s.verifyBy(proposer, sszUint64(epoch), domain, reveal)
		}
		if err != nil {
			reason := fmt.Sprintf("randao reveal of proposer %d for epoch %d: %v", proposer, epoch, err)
			s.noteInvalid(now, DutyRandao, slot, proposer, reason)
			writeError(w, http.StatusBadRequest, "%s", reason)
			return
		}
		s.noteValid(dutyKey{typ: DutyRandao, slot: slot, validator: proposer}, now.Before(s.slotStart(c.genesis, slot+1)))
	}

	blinded := s.cfg.BuilderBlocks && boost > 0
	s.mu.Lock()
	feeRecipient, haveFee := s.feeRecipients[proposer]
	gasLimit := uint64(defaultGasLimit)
	if reg, ok := s.registrations[proposer]; ok && blinded {
		feeRecipient, haveFee, gasLimit = reg.FeeRecipient, true, reg.GasLimit
	}
	s.mu.Unlock()
	if !haveFee {
		feeRecipient = s.cfg.DefaultFeeRecipient
	}

	payload := s.payloadFor(c.genesis, slot, feeRecipient, gasLimit, blinded)
	body := blockBody(reveal, graffiti)
	resp := produceResponse{Version: consensusVersion, ExecutionPayloadBlinded: blinded, ConsensusBlockValue: consensusBlockValue}
	var root phase0.Root
	if blinded {
		block := &apiv1electra.BlindedBeaconBlock{
			Slot: slot, ProposerIndex: proposer, ParentRoot: blockRoot(slot - 1), StateRoot: stateRoot(slot),
			Body: &apiv1electra.BlindedBeaconBlockBody{
				RANDAOReveal: body.RANDAOReveal, ETH1Data: body.ETH1Data, Graffiti: body.Graffiti,
				ProposerSlashings: body.ProposerSlashings, AttesterSlashings: body.AttesterSlashings,
				Attestations: body.Attestations, Deposits: body.Deposits, VoluntaryExits: body.VoluntaryExits,
				SyncAggregate: body.SyncAggregate, ExecutionPayloadHeader: payloadHeader(payload),
				BLSToExecutionChanges: body.BLSToExecutionChanges, BlobKZGCommitments: body.BlobKZGCommitments,
				ExecutionRequests: body.ExecutionRequests,
			},
		}
		root, err = block.HashTreeRoot()
		resp.ExecutionPayloadValue, resp.Data = builderPayloadValue, block
	} else {
		body.ExecutionPayload = payload
		block := &electra.BeaconBlock{Slot: slot, ProposerIndex: proposer, ParentRoot: blockRoot(slot - 1), StateRoot: stateRoot(slot), Body: body}
		root, err = block.HashTreeRoot()
		resp.ExecutionPayloadValue = localPayloadValue
		resp.Data = &apiv1fulu.BlockContents{Block: block, KZGProofs: []deneb.KZGProof{}, Blobs: []deneb.Blob{}}
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "block root: %v", err)
		return
	}
	s.recordProduced(c.slot, slot, root, blinded)

	w.Header().Set("Eth-Consensus-Version", consensusVersion)
	w.Header().Set("Eth-Execution-Payload-Blinded", strconv.FormatBool(blinded))
	w.Header().Set("Eth-Execution-Payload-Value", resp.ExecutionPayloadValue)
	w.Header().Set("Eth-Consensus-Block-Value", consensusBlockValue)
	writeJSON(w, http.StatusOK, resp)
}

// recordProduced remembers a served block, forgetting those of old slots.
func (s *Sim) recordProduced(cur, slot phase0.Slot, root phase0.Root, blinded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for old := range s.produced {
		if old+maxProducedSlots < cur {
			delete(s.produced, old)
		}
	}
	m := s.produced[slot]
	if m == nil {
		m = map[phase0.Root]producedBlock{}
		s.produced[slot] = m
	}
	if len(m) < maxProducedPerSlot {
		m[root] = producedBlock{blinded: blinded}
	}
}

// isSSZ reports whether the request body is SSZ (else JSON).
func isSSZ(r *http.Request) bool {
	return strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/octet-stream")
}

// readRawBody reads the request body.
func readRawBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := readAll(w, r)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, errors.New("body missing")
	}
	return body, nil
}

// handleSubmitBlock serves POST /eth/v2/beacon/blocks: a Fulu SignedBlockContents, JSON or SSZ
// (Content-Type application/octet-stream), with Eth-Consensus-Version: fulu.
func (s *Sim) handleSubmitBlock(w http.ResponseWriter, r *http.Request) {
	s.submitBlock(w, r, false)
}

// handleSubmitBlindedBlock serves POST /eth/v2/beacon/blinded_blocks: a Fulu (Electra layout)
// SignedBlindedBeaconBlock, JSON or SSZ, with Eth-Consensus-Version: fulu.
func (s *Sim) handleSubmitBlindedBlock(w http.ResponseWriter, r *http.Request) {
	s.submitBlock(w, r, true)
}

// submitBlock decodes, checks and records a signed block; 400 if it is refused.
func (s *Sim) submitBlock(w http.ResponseWriter, r *http.Request, blinded bool) {
	now := s.now()
	fail := func(slot phase0.Slot, proposer phase0.ValidatorIndex, format string, args ...any) {
		reason := fmt.Sprintf(format, args...)
		s.noteInvalid(now, DutyProposer, slot, proposer, reason)
		writeError(w, http.StatusBadRequest, "%s", reason)
	}
	body, err := readRawBody(w, r)
	if err != nil {
		s.noteSubmitted(DutyProposer, unattributed)
		fail(0, unattributed, "%v", err)
		return
	}
	var (
		slot     phase0.Slot
		proposer phase0.ValidatorIndex
		sig      phase0.BLSSignature
		obj      hashRooter
		blobs    string // why the blob sidecar data is wrong, or ""
	)
	if blinded {
		var b apiv1electra.SignedBlindedBeaconBlock
		if isSSZ(r) {
			err = b.UnmarshalSSZ(body)
		} else {
			err = json.Unmarshal(body, &b)
		}
		if err == nil && (b.Message == nil || b.Message.Body == nil) {
			err = errors.New("no message")
		}
		if err == nil {
			slot, proposer, sig, obj = b.Message.Slot, b.Message.ProposerIndex, b.Signature, b.Message
		}
	} else {
		var b apiv1fulu.SignedBlockContents
		if isSSZ(r) {
			err = b.UnmarshalSSZ(body)
		} else {
			err = json.Unmarshal(body, &b)
		}
		if err == nil && (b.SignedBlock == nil || b.SignedBlock.Message == nil || b.SignedBlock.Message.Body == nil) {
			err = errors.New("no signed block")
		}
		if err == nil {
			m := b.SignedBlock.Message
			slot, proposer, sig, obj = m.Slot, m.ProposerIndex, b.SignedBlock.Signature, m
			if n := len(m.Body.BlobKZGCommitments); len(b.Blobs) != n || len(b.KZGProofs) != n*cellsPerExtBlob {
				blobs = fmt.Sprintf("%d blobs and %d KZG proofs for %d commitments (Fulu needs %d cell proofs per blob)",
					len(b.Blobs), len(b.KZGProofs), n, cellsPerExtBlob)
			}
		}
	}
	if err != nil {
		s.noteSubmitted(DutyProposer, unattributed)
		fail(0, unattributed, "invalid signed block (blinded: %v): %v", blinded, err)
		return
	}
	s.noteSubmitted(DutyProposer, proposer)
	if v := r.Header.Get("Eth-Consensus-Version"); !strings.EqualFold(v, consensusVersion) {
		fail(slot, proposer, "Eth-Consensus-Version %q: the chain is at %s", v, consensusVersion)
		return
	}
	if blobs != "" {
		fail(slot, proposer, "%s", blobs)
		return
	}
	c := s.clock()
	if !c.started || slot > c.slot+1 {
		fail(slot, proposer, "slot %d is in the future (current slot %d)", slot, c.slot)
		return
	}
	if want, ok := s.proposer(slot); !ok || want != proposer {
		fail(slot, proposer, "validator %d is not the proposer of slot %d", proposer, slot)
		return
	}
	root, err := obj.HashTreeRoot()
	if err != nil {
		fail(slot, proposer, "block root: %v", err)
		return
	}
	s.mu.Lock()
	produced, ok := s.produced[slot][root]
	s.mu.Unlock()
	if !ok || produced.blinded != blinded {
		fail(slot, proposer, "block %#x (blinded: %v) at slot %d is not one the beacon node produced", root, blinded, slot)
		return
	}
	domain, err := s.domainAt(signing.DomainBeaconProposer, s.epoch(slot))
	if err == nil {
		err = s.verifyBy(proposer, obj, domain, sig)
	}
	if err != nil {
		fail(slot, proposer, "signature of proposer %d at slot %d: %v", proposer, slot, err)
		return
	}
	s.noteValid(dutyKey{typ: DutyProposer, slot: slot, validator: proposer}, now.Before(s.slotStart(c.genesis, slot+1)))
	s.mu.Lock()
	s.proposed[slot] = root
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// cellsPerExtBlob is the spec's CELLS_PER_EXT_BLOB: the KZG cell proofs per blob in Fulu.
const cellsPerExtBlob = 128

// ProposedBlock returns the root of the valid signed block submitted for slot, if any.
func (s *Sim) ProposedBlock(slot phase0.Slot) (phase0.Root, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.proposed[slot]
	return r, ok
}
