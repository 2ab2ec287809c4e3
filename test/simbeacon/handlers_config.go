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
		"MAX_COMMITTEES_PER_SLOT":                  fmt.Sprint(maxCommitteesPerSlot),
		"TARGET_COMMITTEE_SIZE":                    fmt.Sprint(targetCommitteeSize),
		"MAX_VALIDATORS_PER_COMMITTEE":             "2048",
		"SHUFFLE_ROUND_COUNT":                      "90",
		"MIN_SEED_LOOKAHEAD":                       "1",
		"MAX_SEED_LOOKAHEAD":                       "4",
		"MIN_ATTESTATION_INCLUSION_DELAY":          "1",
		"ATTESTATION_PROPAGATION_SLOT_RANGE":       "32",
		"ATTESTATION_SUBNET_COUNT":                 "64",
		"TARGET_AGGREGATORS_PER_COMMITTEE":         fmt.Sprint(targetAggregatorsPerCommittee),
		"EPOCHS_PER_SYNC_COMMITTEE_PERIOD":         fmt.Sprint(epochsPerSyncCommitteePeriod),
		"SYNC_COMMITTEE_SIZE":                      fmt.Sprint(syncCommitteeSize),
		"SYNC_COMMITTEE_SUBNET_COUNT":              fmt.Sprint(syncCommitteeSubnetCount),
		"TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE": fmt.Sprint(targetAggregatorsPerSyncSubcomm),
		"MIN_SYNC_COMMITTEE_PARTICIPANTS":          "1",
		"VALIDATOR_REGISTRY_LIMIT":                 "1099511627776",
		"MAX_PROPOSER_SLASHINGS":                   "16",
		"MAX_ATTESTER_SLASHINGS":                   "2",
		"MAX_ATTESTATIONS":                         "128",
		"MAX_DEPOSITS":                             "16",
		"MAX_VOLUNTARY_EXITS":                      "16",
		"MAX_BLS_TO_EXECUTION_CHANGES":             "16",
		"MAX_WITHDRAWALS_PER_PAYLOAD":              "16",
		"MAX_EXTRA_DATA_BYTES":                     "32",
		"BYTES_PER_LOGS_BLOOM":                     "256",
		"MAX_TRANSACTIONS_PER_PAYLOAD":             "1048576",
		"MAX_BYTES_PER_TRANSACTION":                "1073741824",
		"MAX_BLOB_COMMITMENTS_PER_BLOCK":           "4096",
		"MAX_BLOBS_PER_BLOCK":                      "6",
		"FIELD_ELEMENTS_PER_BLOB":                  "4096",
		"FIELD_ELEMENTS_PER_CELL":                  "64",
		"FIELD_ELEMENTS_PER_EXT_BLOB":              "8192",
		"CELLS_PER_EXT_BLOB":                       "128",
		"NUMBER_OF_COLUMNS":                        "128",
		"KZG_COMMITMENT_INCLUSION_PROOF_DEPTH":     "17",
		"MAX_DEPOSIT_REQUESTS_PER_PAYLOAD":         "8192",
		"MAX_WITHDRAWAL_REQUESTS_PER_PAYLOAD":      "16",
		"MAX_CONSOLIDATION_REQUESTS_PER_PAYLOAD":   "2",
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
		"DOMAIN_SYNC_COMMITTEE":                    dom(domainSyncCommittee),
		"DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF":    dom(domainSyncCommitteeSelectionProof),
		"DOMAIN_CONTRIBUTION_AND_PROOF":            dom(domainContributionAndProof),
		"DOMAIN_BLS_TO_EXECUTION_CHANGE":           "0x0a000000",
		"DOMAIN_APPLICATION_MASK":                  "0x00000001",
		"DOMAIN_APPLICATION_BUILDER":               dom(domainApplicationBuilder),
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
