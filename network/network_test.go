package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/signing"
)

// specDomain is the spec's compute_domain written out by hand, independent of go-eth2-client's
// SSZ code: hash_tree_root(ForkData) of a Bytes4 and a Bytes32 is sha256 over two 32-byte chunks
// (the version right-padded with zeros, then the root), and the domain is the domain type
// followed by the first 28 bytes of that root.
func specDomain(domainType [4]byte, version [4]byte, gvr [32]byte) [32]byte {
	var chunks [64]byte
	copy(chunks[:4], version[:])
	copy(chunks[32:], gvr[:])
	root := sha256.Sum256(chunks[:])
	var d [32]byte
	copy(d[:4], domainType[:])
	copy(d[4:], root[:28])
	return d
}

func hex32(t *testing.T, s string) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != 32 {
		t.Fatalf("bad hex %q", s)
	}
	return [32]byte(b)
}

func TestBuiltIn_KnownValues(t *testing.T) {
	main, err := ByName("mainnet")
	if err != nil {
		t.Fatal(err)
	}
	// The well-known mainnet values, typed in independently of the table.
	if main.GenesisForkVersion != (phase0.Version{0, 0, 0, 0}) {
		t.Errorf("mainnet genesis fork version %#x", main.GenesisForkVersion)
	}
	if want := hex32(t, "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"); main.GenesisValidatorsRoot != want {
		t.Errorf("mainnet genesis validators root %#x", main.GenesisValidatorsRoot)
	}
	for _, c := range []struct {
		idx     int
		epoch   phase0.Epoch
		version phase0.Version
	}{
		{ForkCapella, 194048, phase0.Version{3, 0, 0, 0}},
		{ForkElectra, 364032, phase0.Version{5, 0, 0, 0}},
		{ForkFulu, 411392, phase0.Version{6, 0, 0, 0}},
	} {
		if f := main.Forks[c.idx]; f.Epoch != c.epoch || f.Version != c.version {
			t.Errorf("mainnet fork %d: epoch %d version %#x, want %d %#x", c.idx, f.Epoch, f.Version, c.epoch, c.version)
		}
	}
	if !strings.EqualFold(main.DepositContract, "0x00000000219ab540356cbb839cbe05303d7705fa") {
		t.Errorf("mainnet deposit contract %s", main.DepositContract)
	}

	for _, name := range []string{Mainnet, Hoodi, Sepolia} {
		c, _ := ByName(name)
		if !c.Public || len(c.Forks) != 7 || c.GenesisValidatorsRoot == (phase0.Root{}) || c.DepositContract == "" {
			t.Errorf("%s: incomplete config %+v", name, c)
		}
		if c.Forks[0].Version != c.GenesisForkVersion || c.Forks[0].Epoch != 0 {
			t.Errorf("%s: schedule does not start with the genesis fork", name)
		}
		if !slices.IsSortedFunc(c.Forks, func(a, b signing.Fork) int { return int(a.Epoch) - int(b.Epoch) }) {
			t.Errorf("%s: fork schedule not sorted by epoch", name)
		}
		seen := map[phase0.Version]bool{}
		for _, f := range c.Forks {
			if seen[f.Version] {
				t.Errorf("%s: version %#x twice", name, f.Version)
			}
			seen[f.Version] = true
		}
	}
	// Spot checks of the testnets against their published configs.
	hoodi, _ := ByName("Hoodi")
	if hoodi.GenesisForkVersion != (phase0.Version{0x10, 0x00, 0x09, 0x10}) || hoodi.Forks[ForkElectra].Epoch != 2048 ||
		hoodi.GenesisValidatorsRoot != hex32(t, "212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f") {
		t.Errorf("hoodi: %+v", hoodi)
	}
	sep, _ := ByName("sepolia")
	if sep.GenesisForkVersion != (phase0.Version{0x90, 0x00, 0x00, 0x69}) || sep.Forks[ForkCapella].Version != (phase0.Version{0x90, 0, 0, 0x72}) ||
		sep.GenesisValidatorsRoot != hex32(t, "d8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078") {
		t.Errorf("sepolia: %+v", sep)
	}

	dev, _ := ByName("devnet")
	if dev.Public || dev.GenesisValidatorsRoot != (phase0.Root{}) || len(dev.Forks) != 0 || dev.DepositContract != "" {
		t.Errorf("devnet must carry no values: %+v", dev)
	}
}

func TestByName_Unknown(t *testing.T) {
	_, err := ByName("holesky")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("got %v, want ErrUnknown", err)
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
	if got := Names(); !slices.Equal(got, []string{"devnet", "hoodi", "mainnet", "sepolia"}) {
		t.Errorf("Names() = %v", got)
	}
}

func TestByName_ReturnsCopy(t *testing.T) {
	a, _ := ByName(Mainnet)
	a.Forks[ForkCapella].Version = phase0.Version{9, 9, 9, 9}
	a.GenesisForkVersion = phase0.Version{9}
	b, _ := ByName(Mainnet)
	if b.Forks[ForkCapella].Version != (phase0.Version{3, 0, 0, 0}) || b.GenesisForkVersion != (phase0.Version{}) {
		t.Fatal("a caller changed the built-in table")
	}
}

func TestCapellaForkVersion(t *testing.T) {
	main, _ := ByName(Mainnet)
	v, err := CapellaForkVersion(main.Forks)
	if err != nil || v != (phase0.Version{3, 0, 0, 0}) {
		t.Fatalf("mainnet Capella: %#x %v", v, err)
	}
	if _, err := CapellaForkVersion(main.Forks[:3]); err == nil {
		t.Fatal("accepted a schedule without Capella")
	}
	dev, _ := ByName(Devnet)
	if _, err := CapellaForkVersion(dev.Forks); err == nil {
		t.Fatal("accepted devnet's empty schedule")
	}
	if _, err := dev.VoluntaryExitDomain(); err == nil {
		t.Fatal("devnet has no exit domain known in advance")
	}
}

// TestMainnetDomains checks each domain type on mainnet against the spec formula computed by hand.
func TestMainnetDomains(t *testing.T) {
	main, _ := ByName(Mainnet)
	gvr := main.GenesisValidatorsRoot
	electra := main.Forks[ForkElectra].Version
	for _, c := range []struct {
		name    string
		typ     phase0.DomainType
		wantTyp [4]byte
		version phase0.Version
		gvr     phase0.Root
	}{
		// Deposits and builder registrations: genesis fork version, ZERO root (signable before genesis).
		{"deposit", signing.DomainDeposit, [4]byte{3, 0, 0, 0}, main.GenesisForkVersion, phase0.Root{}},
		{"builder", signing.DomainApplicationBuilder, [4]byte{0, 0, 0, 1}, main.GenesisForkVersion, phase0.Root{}},
		// Voluntary exits: Capella version with the real root, for ever (EIP-7044).
		{"voluntary exit", signing.DomainVoluntaryExit, [4]byte{4, 0, 0, 0}, main.Forks[ForkCapella].Version, gvr},
		// Everything else: the current fork's version and the real root.
		{"proposer", signing.DomainBeaconProposer, [4]byte{0, 0, 0, 0}, electra, gvr},
		{"attester", signing.DomainBeaconAttester, [4]byte{1, 0, 0, 0}, electra, gvr},
		{"randao", signing.DomainRandao, [4]byte{2, 0, 0, 0}, electra, gvr},
		{"selection proof", signing.DomainSelectionProof, [4]byte{5, 0, 0, 0}, electra, gvr},
		{"aggregate and proof", signing.DomainAggregateAndProof, [4]byte{6, 0, 0, 0}, electra, gvr},
		{"sync committee", signing.DomainSyncCommittee, [4]byte{7, 0, 0, 0}, electra, gvr},
		{"sync committee selection proof", signing.DomainSyncCommitteeSelectionProof, [4]byte{8, 0, 0, 0}, electra, gvr},
		{"contribution and proof", signing.DomainContributionAndProof, [4]byte{9, 0, 0, 0}, electra, gvr},
	} {
		t.Run(c.name, func(t *testing.T) {
			if [4]byte(c.typ) != c.wantTyp {
				t.Fatalf("domain type %#x, spec says %#x", c.typ, c.wantTyp)
			}
			got, err := signing.ComputeDomain(c.typ, c.version, c.gvr)
			if err != nil {
				t.Fatal(err)
			}
			if want := specDomain(c.wantTyp, c.version, c.gvr); [32]byte(got) != want {
				t.Fatalf("domain %#x, spec formula gives %#x", got, want)
			}
		})
	}

	// The same through the package's helpers.
	dep, err := DepositDomain(main.GenesisForkVersion)
	if err != nil {
		t.Fatal(err)
	}
	// Mainnet's deposit domain as published: sha256 of 64 zero bytes (version 0, zero root),
	// truncated, behind 0x03000000.
	if hex.EncodeToString(dep[:]) != "03000000f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9" {
		t.Fatalf("mainnet deposit domain %#x", dep)
	}
	exit, err := main.VoluntaryExitDomain()
	if err != nil {
		t.Fatal(err)
	}
	if want := specDomain([4]byte{4, 0, 0, 0}, [4]byte{3, 0, 0, 0}, gvr); [32]byte(exit) != want {
		t.Fatalf("exit domain %#x, want %#x", exit, want)
	}
	// A deposit signed with the real root, or an exit with the current fork, would be invalid on chain.
	if wrong := specDomain([4]byte{3, 0, 0, 0}, [4]byte{}, gvr); [32]byte(dep) == wrong {
		t.Fatal("deposit domain must not depend on the genesis validators root")
	}
	if wrong := specDomain([4]byte{4, 0, 0, 0}, [4]byte(electra), gvr); [32]byte(exit) == wrong {
		t.Fatal("exit domain must use Capella, not the current fork")
	}
}
