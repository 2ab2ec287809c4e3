// Package simbeacon is a simulated beacon node for tests and local clusters: an HTTP server that
// speaks the subset of the standard Beacon API that dvmesh nodes (through go-eth2-client) use, on a
// chain with short slots that runs on Fulu from genesis (every fork at epoch 0, each with its own
// version).
//
// The chain is synthetic and fully deterministic given its configuration: every slot has a block
// whose root is sha256("block" || slot), every validator is active with 32 ETH, and justification
// and finality trail the head by one and two epochs. The network has Config.NetworkSize
// validators, the configured ones first and the rest virtual (see network.go): attester committees,
// aggregator odds, proposers and sync committees are those of a network of that size, computed per
// epoch on demand, so a network of millions costs no more memory than a small one.
//
// Served duties: attester, proposer and sync committee duties (with dependent roots; Reorg changes
// them and reshuffles), attestation data and the attestation pool, aggregate attestations built
// from the attestations received and aggregate and proofs, v3 block production (full or blinded,
// see Config.BuilderBlocks) and signed block submission, sync committee messages, contributions
// built from the messages received and contribution and proofs, committee subscriptions, proposer
// preparations, builder registrations, voluntary exits, liveness, and head events.
//
// What the simulator adds over a mock is judgement: every submitted signature of every type is
// verified against the real signing root, with the domain computed from the spec's formula and the
// chain's own fork schedule (the Capella version for exits, per EIP-7044; the builder domain with
// the genesis version and a zero root for registrations), and every submission is checked against
// what the simulator served and assigned. Refusals get the status the Beacon API gives (400, with
// the indexed failure list for array submissions). The outcomes are counted per slot for
// attestations (Stats.Slots) and per duty type and validator for every duty (Stats.Duties).
//
// The simulator starts no goroutines of its own; event streams run on their request's goroutine and
// end when the client disconnects or Close is called.
package simbeacon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// Version is what GET /eth/v1/node/version reports.
const Version = "dvmesh-simbeacon/v0.1.0"

// DefaultGenesisForkVersion is the genesis fork version used when Config leaves it zero.
var DefaultGenesisForkVersion = phase0.Version{0x10, 0x00, 0x00, 0x00}

// Config configures a simulated beacon node.
type Config struct {
	// SlotDuration is the length of a slot, e.g. 2s (tests use a few hundred ms). Required.
	SlotDuration time.Duration
	// SlotsPerEpoch is the number of slots in an epoch, e.g. 8. Required.
	SlotsPerEpoch uint64
	// Validators are the chain's configured validators: validator index i has public key
	// Validators[i]. All are active from genesis, never exit and hold 32 ETH.
	Validators []phase0.BLSPubKey
	// NetworkSize is the number of validators of the chain (0: len(Validators)). Validators beyond
	// the configured ones are virtual: they have fake public keys, hold duties and make committees
	// and aggregator odds realistic, but never sign (see network.go). It must not be below
	// len(Validators).
	NetworkSize uint64
	// BuilderBlocks makes block production answer blinded blocks (as if from an MEV relay)
	// whenever the request's builder_boost_factor is above 0; otherwise, and when the factor is 0,
	// blocks are full.
	BuilderBlocks bool
	// DefaultFeeRecipient is the fee recipient of blocks of validators that registered none with
	// prepare_beacon_proposer (nor, for blinded blocks, register_validator).
	DefaultFeeRecipient bellatrix.ExecutionAddress
	// GenesisValidatorsRoot defaults to 32 random bytes when zero.
	GenesisValidatorsRoot phase0.Root
	// GenesisForkVersion defaults to DefaultGenesisForkVersion (0x10000000) when zero. The later
	// forks (altair, bellatrix, capella, deneb, electra, fulu) all activate at epoch 0 and use this
	// version with the first byte raised by 0x10, 0x20, ... 0x60, so every fork has a distinct
	// version (0x20000000 ... 0x70000000 by default).
	GenesisForkVersion phase0.Version
	// Now is the clock; defaults to time.Now. Slot boundaries, lateness and the timing of events
	// are computed from it (event streams sleep on real timers for durations computed from Now).
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Sim is a simulated beacon node. Create it with New, serve Handler, and start the chain with
// SetGenesis. All methods are safe for concurrent use.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	forks  []forkInfo
	sched  []signing.Fork
	spec   map[string]string
	pubkey map[phase0.BLSPubKey]phase0.ValidatorIndex // configured validators
	n      uint64                                     // network size
	keys   *keyCache

	seenMu sync.Mutex
	seen   map[[8 + 32 + 96]byte]struct{} // (validator, signing root, signature) verified valid

	ctx    context.Context // cancelled by Close; ends event streams
	cancel context.CancelFunc

	mu          sync.Mutex
	genesis     time.Time
	genesisSet  bool
	genesisChan chan struct{}                // closed and replaced whenever the genesis changes
	reorgs      []phase0.Epoch               // the current epoch of every Reorg call, ascending
	assignments map[phase0.Epoch]*assignment // bounded cache
	dutyCounts  map[phase0.Epoch][]uint64    // expected configured attesters per slot of the epoch

	syncCommittees map[uint64]*syncCommittee // by period, bounded
	dl             dutyLog

	feeRecipients map[phase0.ValidatorIndex]bellatrix.ExecutionAddress      // prepare_beacon_proposer
	registrations map[phase0.ValidatorIndex]*apiv1.ValidatorRegistration    // register_validator
	produced      map[phase0.Slot]map[phase0.Root]producedBlock             // served blocks, recent slots
	proposed      map[phase0.Slot]phase0.Root                               // accepted signed blocks
	syncMsgs      map[syncKey]map[phase0.ValidatorIndex]phase0.BLSSignature // valid sync messages, recent slots
	exits         map[phase0.ValidatorIndex]phase0.Epoch                    // valid voluntary exits: exit epoch
	records       map[phase0.Slot]*slotRecord
	unattrWrong   uint64 // wrong submissions that cannot be attributed to an existing slot
	failures      []Failure
	marked        map[phase0.Epoch]map[phase0.ValidatorIndex]struct{} // MarkLive (see liveness)
	foreign       map[phase0.ValidatorIndex]phase0.Epoch              // SetForeignSigner on: since epoch
}

// New validates cfg, fills in defaults and returns a simulator whose chain has not started yet.
func New(cfg Config) (*Sim, error) {
	if cfg.SlotDuration <= 0 {
		return nil, errors.New("simbeacon: SlotDuration must be positive")
	}
	if cfg.SlotsPerEpoch == 0 {
		return nil, errors.New("simbeacon: SlotsPerEpoch must be positive")
	}
	if cfg.GenesisValidatorsRoot == (phase0.Root{}) {
		if _, err := rand.Read(cfg.GenesisValidatorsRoot[:]); err != nil {
			return nil, fmt.Errorf("simbeacon: random genesis validators root: %w", err)
		}
	}
	if cfg.GenesisForkVersion == (phase0.Version{}) {
		cfg.GenesisForkVersion = DefaultGenesisForkVersion
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Validators = append([]phase0.BLSPubKey(nil), cfg.Validators...)
	if cfg.NetworkSize == 0 {
		cfg.NetworkSize = uint64(len(cfg.Validators))
	}
	if cfg.NetworkSize < uint64(len(cfg.Validators)) {
		return nil, fmt.Errorf("simbeacon: NetworkSize %d is below the %d configured validators", cfg.NetworkSize, len(cfg.Validators))
	}
	if cfg.NetworkSize > 1<<40 {
		return nil, fmt.Errorf("simbeacon: NetworkSize %d is too large", cfg.NetworkSize)
	}

	pubkeys := make(map[phase0.BLSPubKey]phase0.ValidatorIndex, len(cfg.Validators))
	for i, pk := range cfg.Validators {
		if _, dup := pubkeys[pk]; dup {
			return nil, fmt.Errorf("simbeacon: validator %d repeats public key %#x", i, pk)
		}
		pubkeys[pk] = phase0.ValidatorIndex(i)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		cfg:         cfg,
		log:         cfg.Logger,
		now:         cfg.Now,
		pubkey:      pubkeys,
		n:           cfg.NetworkSize,
		keys:        newKeyCache(cfg.Validators),
		ctx:         ctx,
		cancel:      cancel,
		genesisChan: make(chan struct{}),
		assignments: make(map[phase0.Epoch]*assignment),
		dutyCounts:  make(map[phase0.Epoch][]uint64),

		syncCommittees: make(map[uint64]*syncCommittee),
		dl:             newDutyLog(),
		feeRecipients:  make(map[phase0.ValidatorIndex]bellatrix.ExecutionAddress),
		registrations:  make(map[phase0.ValidatorIndex]*apiv1.ValidatorRegistration),
		produced:       make(map[phase0.Slot]map[phase0.Root]producedBlock),
		proposed:       make(map[phase0.Slot]phase0.Root),
		syncMsgs:       make(map[syncKey]map[phase0.ValidatorIndex]phase0.BLSSignature),
		exits:          make(map[phase0.ValidatorIndex]phase0.Epoch),
		records:        make(map[phase0.Slot]*slotRecord),
		marked:         make(map[phase0.Epoch]map[phase0.ValidatorIndex]struct{}),
		foreign:        make(map[phase0.ValidatorIndex]phase0.Epoch),
	}
	s.forks = makeForks(cfg.GenesisForkVersion)
	for _, f := range s.forks {
		s.sched = append(s.sched, signing.Fork{Epoch: f.epoch, Version: f.version})
	}
	s.spec = s.makeSpec()
	return s, nil
}

// SetGenesis starts the chain: slot 0 begins at t truncated to whole seconds (genesis_time in the
// Beacon API is in seconds, and nodes must agree with the simulator on slot boundaries). t may be
// in the future; until then the head is slot 0 but no attestation data is served. Before the first call GET
// /eth/v1/beacon/genesis answers 404, as a beacon node before genesis does. Calling it again moves
// genesis; that is meant only for setting it before any node has started working.
func (s *Sim) SetGenesis(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.genesis = t.Truncate(time.Second)
	s.genesisSet = true
	close(s.genesisChan)
	s.genesisChan = make(chan struct{})
	s.log.Info("genesis set", "time", t)
}

// Genesis returns the genesis time and whether it has been set.
func (s *Sim) Genesis() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.genesis, s.genesisSet
}

// GenesisValidatorsRoot returns the chain's genesis validators root.
func (s *Sim) GenesisValidatorsRoot() phase0.Root { return s.cfg.GenesisValidatorsRoot }

// ForkSchedule returns the chain's forks in order, all at epoch 0, in the form signing uses.
func (s *Sim) ForkSchedule() []signing.Fork { return append([]signing.Fork(nil), s.sched...) }

// Close ends all open event streams. Call it before (or register it with) http.Server.Shutdown,
// which otherwise waits for the streams forever. The other endpoints keep working.
func (s *Sim) Close() { s.cancel() }

// Handler returns the HTTP handler serving the Beacon API subset and the /dvmesh/sim/ endpoints.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()

	// Node.
	mux.HandleFunc("GET /eth/v1/node/version", s.handleNodeVersion)
	mux.HandleFunc("GET /eth/v1/node/syncing", s.handleNodeSyncing)
	mux.HandleFunc("GET /eth/v1/node/health", s.handleNodeHealth)

	// Config.
	mux.HandleFunc("GET /eth/v1/config/spec", s.handleSpec)
	mux.HandleFunc("GET /eth/v1/config/fork_schedule", s.handleForkSchedule)
	mux.HandleFunc("GET /eth/v1/config/deposit_contract", s.handleDepositContract)

	// Beacon.
	mux.HandleFunc("GET /eth/v1/beacon/genesis", s.handleGenesis)
	mux.HandleFunc("GET /eth/v1/beacon/states/{state_id}/fork", s.handleStateFork)
	mux.HandleFunc("GET /eth/v1/beacon/states/{state_id}/finality_checkpoints", s.handleFinality)
	mux.HandleFunc("GET /eth/v1/beacon/states/{state_id}/validators", s.handleValidatorsGet)
	mux.HandleFunc("POST /eth/v1/beacon/states/{state_id}/validators", s.handleValidatorsPost)
	mux.HandleFunc("POST /eth/v2/beacon/pool/attestations", s.handleSubmitAttestations)
	mux.HandleFunc("POST /eth/v2/beacon/blocks", s.handleSubmitBlock)
	mux.HandleFunc("POST /eth/v2/beacon/blinded_blocks", s.handleSubmitBlindedBlock)
	mux.HandleFunc("GET /eth/v1/beacon/blocks/{block_id}/root", s.handleBlockRoot)
	mux.HandleFunc("POST /eth/v1/beacon/pool/sync_committees", s.handleSubmitSyncMessages)
	mux.HandleFunc("POST /eth/v1/beacon/pool/voluntary_exits", s.handleVoluntaryExit)

	// Validator.
	mux.HandleFunc("POST /eth/v1/validator/duties/attester/{epoch}", s.handleAttesterDuties)
	mux.HandleFunc("GET /eth/v1/validator/duties/proposer/{epoch}", s.handleProposerDuties)
	mux.HandleFunc("POST /eth/v1/validator/duties/sync/{epoch}", s.handleSyncDuties)
	mux.HandleFunc("GET /eth/v1/validator/attestation_data", s.handleAttestationData)
	mux.HandleFunc("GET /eth/v3/validator/blocks/{slot}", s.handleProduceBlock)
	mux.HandleFunc("POST /eth/v1/validator/beacon_committee_subscriptions", s.handleBeaconCommitteeSubscriptions)
	mux.HandleFunc("GET /eth/v2/validator/aggregate_attestation", s.handleAggregateAttestation)
	mux.HandleFunc("POST /eth/v2/validator/aggregate_and_proofs", s.handleSubmitAggregates)
	mux.HandleFunc("POST /eth/v1/validator/sync_committee_subscriptions", s.handleSyncCommitteeSubscriptions)
	mux.HandleFunc("GET /eth/v1/validator/sync_committee_contribution", s.handleSyncContribution)
	mux.HandleFunc("POST /eth/v1/validator/contribution_and_proofs", s.handleSubmitContributions)
	mux.HandleFunc("POST /eth/v1/validator/prepare_beacon_proposer", s.handlePrepareProposer)
	mux.HandleFunc("POST /eth/v1/validator/register_validator", s.handleRegisterValidator)
	mux.HandleFunc("POST /eth/v1/validator/liveness/{epoch}", s.handleValidatorLiveness)

	// Events.
	mux.HandleFunc("GET /eth/v1/events", s.handleEvents)

	// Simulator control.
	mux.HandleFunc("GET /dvmesh/sim/stats", s.handleSimStats)
	mux.HandleFunc("POST /dvmesh/sim/genesis", s.handleSimGenesis)
	mux.HandleFunc("POST /dvmesh/sim/reorg", s.handleSimReorg)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "simbeacon does not serve %s %s", r.Method, r.URL.Path)
	})
	return mux
}
