package signing

import (
	"fmt"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// Domain types from the consensus specs.
var (
	DomainBeaconProposer    = phase0.DomainType{0x00, 0x00, 0x00, 0x00}
	DomainBeaconAttester    = phase0.DomainType{0x01, 0x00, 0x00, 0x00}
	DomainRandao            = phase0.DomainType{0x02, 0x00, 0x00, 0x00}
	DomainDeposit           = phase0.DomainType{0x03, 0x00, 0x00, 0x00}
	DomainVoluntaryExit     = phase0.DomainType{0x04, 0x00, 0x00, 0x00}
	DomainSelectionProof    = phase0.DomainType{0x05, 0x00, 0x00, 0x00}
	DomainAggregateAndProof = phase0.DomainType{0x06, 0x00, 0x00, 0x00}
	// Altair sync committees.
	DomainSyncCommittee               = phase0.DomainType{0x07, 0x00, 0x00, 0x00}
	DomainSyncCommitteeSelectionProof = phase0.DomainType{0x08, 0x00, 0x00, 0x00}
	DomainContributionAndProof        = phase0.DomainType{0x09, 0x00, 0x00, 0x00}
	// DomainApplicationBuilder signs builder-API validator registrations (MEV-boost), with the
	// genesis fork version and a zero genesis validators root, like deposits.
	DomainApplicationBuilder = phase0.DomainType{0x00, 0x00, 0x00, 0x01}
)

// hashRooter is what SSZ containers of go-eth2-client implement.
type hashRooter interface {
	HashTreeRoot() ([32]byte, error)
}

// ComputeDomain is the spec's compute_domain: the domain type followed by the first 28 bytes of
// hash_tree_root(ForkData(fork_version, genesis_validators_root)).
func ComputeDomain(domainType phase0.DomainType, forkVersion phase0.Version, genesisValidatorsRoot phase0.Root) (phase0.Domain, error) {
	fd := phase0.ForkData{CurrentVersion: forkVersion, GenesisValidatorsRoot: genesisValidatorsRoot}
	root, err := fd.HashTreeRoot()
	if err != nil {
		return phase0.Domain{}, fmt.Errorf("fork data root: %w", err)
	}
	var d phase0.Domain
	copy(d[:4], domainType[:])
	copy(d[4:], root[:28])
	return d, nil
}

// SigningRoot is the spec's compute_signing_root: hash_tree_root(SigningData(hash_tree_root(obj), domain)).
func SigningRoot(obj hashRooter, domain phase0.Domain) (phase0.Root, error) {
	objRoot, err := obj.HashTreeRoot()
	if err != nil {
		return phase0.Root{}, fmt.Errorf("object root: %w", err)
	}
	sd := phase0.SigningData{ObjectRoot: objRoot, Domain: domain}
	root, err := sd.HashTreeRoot()
	if err != nil {
		return phase0.Root{}, fmt.Errorf("signing data root: %w", err)
	}
	return root, nil
}

// Fork is one entry of a chain's fork schedule.
type Fork struct {
	Epoch   phase0.Epoch
	Version phase0.Version
}

// ForkVersionAt returns the version of the last fork at or before epoch. The schedule must be
// sorted by epoch; an epoch before the first fork is an error.
func ForkVersionAt(schedule []Fork, epoch phase0.Epoch) (phase0.Version, error) {
	var (
		v     phase0.Version
		found bool
	)
	for _, f := range schedule {
		if f.Epoch > epoch {
			break
		}
		v, found = f.Version, true
	}
	if !found {
		return v, fmt.Errorf("no fork scheduled at or before epoch %d", epoch)
	}
	return v, nil
}
