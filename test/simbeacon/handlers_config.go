package simbeacon

import (
	"fmt"
	"net/http"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// depositContractAddress is the (fictional) deposit contract of the simulated chain.
var depositContractAddress = []byte{
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
}

// depositChainID is the execution chain id reported for the simulated chain.
const depositChainID = 1337

// farFutureEpoch is the spec's FAR_FUTURE_EPOCH.
const farFutureEpoch = phase0.Epoch(0xffffffffffffffff)

// makeSpec builds the /eth/v1/config/spec answer: every value a decimal or 0x-hex string.
//
// SECONDS_PER_SLOT is an integer in the spec, so sub-second slots cannot be expressed in it: it is
// the slot duration rounded down to whole seconds (0 for sub-second test slots). The exact value
// is in SLOT_DURATION_MS, the newer spec key; clients should prefer it when present.
func (s *Sim) makeSpec() map[string]string {
	hex := func(b []byte) string { return fmt.Sprintf("%#x", b) }
	dom := func(d phase0.DomainType) string { return hex(d[:]) }
	spec := map[string]string{
		"CONFIG_NAME":                              "dvmesh-sim",
		"PRESET_BASE":                              "mainnet",
		"SECONDS_PER_SLOT":                         fmt.Sprint(int64(s.cfg.SlotDuration.Seconds())),
		"SLOT_DURATION_MS":                         fmt.Sprint(s.cfg.SlotDuration.Milliseconds()),
		"SLOTS_PER_EPOCH":                          fmt.Sprint(s.cfg.SlotsPerEpoch),
		"INTERVALS_PER_SLOT":                       "3",
		"MIN_GENESIS_TIME":                         "0",
		"MIN_GENESIS_ACTIVE_VALIDATOR_COUNT":       "1",
		"GENESIS_DELAY":                            "0",
		"SECONDS_PER_ETH1_BLOCK":                   "14",
		"MAX_COMMITTEES_PER_SLOT":                  "64",
		"TARGET_COMMITTEE_SIZE":                    "128",
		"MAX_VALIDATORS_PER_COMMITTEE":             "2048",
		"SHUFFLE_ROUND_COUNT":                      "90",
		"MIN_SEED_LOOKAHEAD":                       "1",
		"MAX_SEED_LOOKAHEAD":                       "4",
		"MIN_ATTESTATION_INCLUSION_DELAY":          "1",
		"ATTESTATION_PROPAGATION_SLOT_RANGE":       "32",
		"ATTESTATION_SUBNET_COUNT":                 "64",
		"TARGET_AGGREGATORS_PER_COMMITTEE":         "16",
		"EPOCHS_PER_SYNC_COMMITTEE_PERIOD":         "256",
		"SYNC_COMMITTEE_SIZE":                      "512",
		"SYNC_COMMITTEE_SUBNET_COUNT":              "4",
		"TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE": "16",
		"EPOCHS_PER_ETH1_VOTING_PERIOD":            "64",
		"SLOTS_PER_HISTORICAL_ROOT":                "8192",
		"EPOCHS_PER_HISTORICAL_VECTOR":             "65536",
		"EPOCHS_PER_SLASHINGS_VECTOR":              "8192",
		"MIN_VALIDATOR_WITHDRAWABILITY_DELAY":      "256",
		"SHARD_COMMITTEE_PERIOD":                   "256",
		"FAR_FUTURE_EPOCH":                         fmt.Sprint(uint64(farFutureEpoch)),
		"BASE_REWARD_FACTOR":                       "64",
		"EFFECTIVE_BALANCE_INCREMENT":              "1000000000",
		"MAX_EFFECTIVE_BALANCE":                    "32000000000",
		"MIN_ACTIVATION_BALANCE":                   "32000000000",
		"MAX_EFFECTIVE_BALANCE_ELECTRA":            "2048000000000",
		"EJECTION_BALANCE":                         "16000000000",
		"MIN_DEPOSIT_AMOUNT":                       "1000000000",
		"MAX_ATTESTATIONS_ELECTRA":                 "8",
		"MAX_ATTESTER_SLASHINGS_ELECTRA":           "1",
		"MAX_BLOBS_PER_BLOCK_ELECTRA":              "9",
		"BLS_WITHDRAWAL_PREFIX":                    "0x00",
		"ETH1_ADDRESS_WITHDRAWAL_PREFIX":           "0x01",
		"COMPOUNDING_WITHDRAWAL_PREFIX":            "0x02",
		"DEPOSIT_CHAIN_ID":                         fmt.Sprint(depositChainID),
		"DEPOSIT_NETWORK_ID":                       fmt.Sprint(depositChainID),
		"DEPOSIT_CONTRACT_ADDRESS":                 hex(depositContractAddress),
		"DOMAIN_BEACON_PROPOSER":                   dom(signing.DomainBeaconProposer),
		"DOMAIN_BEACON_ATTESTER":                   dom(signing.DomainBeaconAttester),
		"DOMAIN_RANDAO":                            dom(signing.DomainRandao),
		"DOMAIN_DEPOSIT":                           dom(signing.DomainDeposit),
		"DOMAIN_VOLUNTARY_EXIT":                    dom(signing.DomainVoluntaryExit),
		"DOMAIN_SELECTION_PROOF":                   dom(signing.DomainSelectionProof),
		"DOMAIN_AGGREGATE_AND_PROOF":               dom(signing.DomainAggregateAndProof),
		"DOMAIN_SYNC_COMMITTEE":                    "0x07000000",
		"DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF":    "0x08000000",
		"DOMAIN_CONTRIBUTION_AND_PROOF":            "0x09000000",
		"DOMAIN_BLS_TO_EXECUTION_CHANGE":           "0x0a000000",
		"DOMAIN_APPLICATION_MASK":                  "0x00000001",
	}
	for _, f := range s.forks {
		spec[f.key+"_FORK_VERSION"] = hex(f.version[:])
		if f.key != "GENESIS" {
			spec[f.key+"_FORK_EPOCH"] = fmt.Sprint(uint64(f.epoch))
		}
	}
	return spec
}

// handleSpec serves GET /eth/v1/config/spec.
func (s *Sim) handleSpec(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, envelope{Data: s.spec})
}

// handleForkSchedule serves GET /eth/v1/config/fork_schedule: every fork, all at epoch 0.
func (s *Sim) handleForkSchedule(w http.ResponseWriter, _ *http.Request) {
	forks := make([]*phase0.Fork, len(s.forks))
	for i, f := range s.forks {
		prev := f.version
		if i > 0 {
			prev = s.forks[i-1].version
		}
		forks[i] = &phase0.Fork{PreviousVersion: prev, CurrentVersion: f.version, Epoch: f.epoch}
	}
	writeJSON(w, http.StatusOK, envelope{Data: forks})
}

// handleDepositContract serves GET /eth/v1/config/deposit_contract.
func (s *Sim) handleDepositContract(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, envelope{Data: &apiv1.DepositContract{ChainID: depositChainID, Address: depositContractAddress}})
}
