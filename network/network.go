// Package network holds the built-in configurations of the Ethereum networks dvmesh knows:
// their genesis fork version, genesis validators root, fork schedule and deposit contract.
//
// A cluster records its network in the lock, so that a node can refuse a beacon node of another
// chain and so that one-off signatures made outside any beacon node (deposits, and exits signed
// offline) use the right domain. A devnet's values are not known in advance: they come from the
// lock (--genesis-fork-version at create-cluster) and from the beacon node at run time.
package network

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// Names of the built-in networks.
const (
	Mainnet = "mainnet"
	Hoodi   = "hoodi"
	Sepolia = "sepolia"
	Devnet  = "devnet"
)

// ErrUnknown is returned for a network name that is not built in.
var ErrUnknown = errors.New("unknown network")

// Config is one network's constants.
type Config struct {
	Name               string
	GenesisForkVersion phase0.Version
	// GenesisValidatorsRoot is zero when not known in advance (devnet).
	GenesisValidatorsRoot phase0.Root
	// Forks is the full schedule in order phase0, altair, bellatrix, capella, deneb, electra,
	// fulu: each fork's activation epoch and version. Empty for devnet.
	Forks []signing.Fork
	// DepositContract is the deposit contract's 0x address, "" for devnet.
	DepositContract string
	// Public is false for devnet: its values must come from the operator and the beacon node.
	Public bool
}

// Fork indices in Config.Forks.
const (
	ForkPhase0 = iota
	ForkAltair
	ForkBellatrix
	ForkCapella
	ForkDeneb
	ForkElectra
	ForkFulu
)

// The values below are copied from the networks' official configurations:
//   - mainnet: ethereum/consensus-specs configs/mainnet.yaml and Lighthouse's built-in
//     common/eth2_network_config/built_in_network_configs/mainnet/config.yaml (Fulu at 411392,
//     December 3, 2025); genesis validators root as published and used by every client.
//   - hoodi: eth-clients/hoodi metadata/config.yaml and README.md (genesis validators root), and
//     Lighthouse's built-in hoodi/config.yaml (Electra at 2048, Fulu at 50688).
//   - sepolia: eth-clients/sepolia metadata/config.yaml and README.md (Bepolia genesis validators
//     root), and Lighthouse's built-in sepolia/config.yaml (Fulu at 272640).
//
// They are checked by TestBuiltIn_KnownValues against the well-known values and against the
// domains computed by hand from the spec.
var builtIn = map[string]*Config{
	Mainnet: {
		Name:                  Mainnet,
		GenesisForkVersion:    phase0.Version{0x00, 0x00, 0x00, 0x00},
		GenesisValidatorsRoot: mustRoot("0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"),
		Forks: []signing.Fork{
			{Epoch: 0, Version: phase0.Version{0x00, 0x00, 0x00, 0x00}},
			{Epoch: 74240, Version: phase0.Version{0x01, 0x00, 0x00, 0x00}},
			{Epoch: 144896, Version: phase0.Version{0x02, 0x00, 0x00, 0x00}},
			{Epoch: 194048, Version: phase0.Version{0x03, 0x00, 0x00, 0x00}},
			{Epoch: 269568, Version: phase0.Version{0x04, 0x00, 0x00, 0x00}},
			{Epoch: 364032, Version: phase0.Version{0x05, 0x00, 0x00, 0x00}},
			{Epoch: 411392, Version: phase0.Version{0x06, 0x00, 0x00, 0x00}},
		},
		DepositContract: "0x00000000219ab540356cBB839Cbe05303d7705Fa",
		Public:          true,
	},
	Hoodi: {
		Name:                  Hoodi,
		GenesisForkVersion:    phase0.Version{0x10, 0x00, 0x09, 0x10},
		GenesisValidatorsRoot: mustRoot("0x212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f"),
		Forks: []signing.Fork{
			{Epoch: 0, Version: phase0.Version{0x10, 0x00, 0x09, 0x10}},
			{Epoch: 0, Version: phase0.Version{0x20, 0x00, 0x09, 0x10}},
			{Epoch: 0, Version: phase0.Version{0x30, 0x00, 0x09, 0x10}},
			{Epoch: 0, Version: phase0.Version{0x40, 0x00, 0x09, 0x10}},
			{Epoch: 0, Version: phase0.Version{0x50, 0x00, 0x09, 0x10}},
			{Epoch: 2048, Version: phase0.Version{0x60, 0x00, 0x09, 0x10}},
			{Epoch: 50688, Version: phase0.Version{0x70, 0x00, 0x09, 0x10}},
		},
		DepositContract: "0x00000000219ab540356cBB839Cbe05303d7705Fa",
		Public:          true,
	},
	Sepolia: {
		Name:                  Sepolia,
		GenesisForkVersion:    phase0.Version{0x90, 0x00, 0x00, 0x69},
		GenesisValidatorsRoot: mustRoot("0xd8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078"),
		Forks: []signing.Fork{
			{Epoch: 0, Version: phase0.Version{0x90, 0x00, 0x00, 0x69}},
			{Epoch: 50, Version: phase0.Version{0x90, 0x00, 0x00, 0x70}},
			{Epoch: 100, Version: phase0.Version{0x90, 0x00, 0x00, 0x71}},
			{Epoch: 56832, Version: phase0.Version{0x90, 0x00, 0x00, 0x72}},
			{Epoch: 132608, Version: phase0.Version{0x90, 0x00, 0x00, 0x73}},
			{Epoch: 222464, Version: phase0.Version{0x90, 0x00, 0x00, 0x74}},
			{Epoch: 272640, Version: phase0.Version{0x90, 0x00, 0x00, 0x75}},
		},
		DepositContract: "0x7f02C3E3c98b133055B8B348B2Ac625669Ed295D",
		Public:          true,
	},
	Devnet: {Name: Devnet},
}

// ByName returns a copy of the built-in network called name (case-insensitive).
func ByName(name string) (*Config, error) {
	c, ok := builtIn[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return nil, fmt.Errorf("%w %q: known networks are %s (use devnet, with its genesis fork version, for any other chain)",
			ErrUnknown, name, strings.Join(Names(), ", "))
	}
	cp := *c
	cp.Forks = slices.Clone(c.Forks)
	return &cp, nil
}

// Names returns the built-in network names, sorted.
func Names() []string {
	names := make([]string, 0, len(builtIn))
	for n := range builtIn {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CapellaForkVersion returns the Capella version of a fork schedule (EIP-7044: voluntary exits
// always sign with it, whatever fork is current, so that a signed exit stays valid for ever).
// The schedule must hold at least phase0 through Capella in order.
func CapellaForkVersion(forks []signing.Fork) (phase0.Version, error) {
	if len(forks) <= ForkCapella {
		return phase0.Version{}, fmt.Errorf("fork schedule has %d forks, so no Capella (the 4th): "+
			"give the full schedule (the beacon node's /eth/v1/config/fork_schedule)", len(forks))
	}
	return forks[ForkCapella].Version, nil
}

// VoluntaryExitDomain returns the domain a voluntary exit signs over on this network:
// DOMAIN_VOLUNTARY_EXIT with the Capella fork version and the genesis validators root (EIP-7044).
// It needs both, so it fails for a devnet, whose values come from its beacon node.
func (c *Config) VoluntaryExitDomain() (phase0.Domain, error) {
	if c.GenesisValidatorsRoot == (phase0.Root{}) {
		return phase0.Domain{}, fmt.Errorf("network %s: genesis validators root not known in advance: take it from the beacon node", c.Name)
	}
	v, err := CapellaForkVersion(c.Forks)
	if err != nil {
		return phase0.Domain{}, fmt.Errorf("network %s: %w", c.Name, err)
	}
	return signing.ComputeDomain(signing.DomainVoluntaryExit, v, c.GenesisValidatorsRoot)
}

// DepositDomain returns the domain deposits sign over: DOMAIN_DEPOSIT with the genesis fork
// version and a zero genesis validators root, so that deposits can be signed before genesis.
func DepositDomain(genesisForkVersion phase0.Version) (phase0.Domain, error) {
	return signing.ComputeDomain(signing.DomainDeposit, genesisForkVersion, phase0.Root{})
}

// mustRoot decodes a root of the table above; a typo there is a programming error that every
// test run catches at package load.
func mustRoot(s string) phase0.Root {
	var r phase0.Root
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != len(r) {
		panic("network: bad built-in root " + s)
	}
	copy(r[:], b)
	return r
}
