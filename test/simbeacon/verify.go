package simbeacon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"

	"github.com/dvmesh/dvmesh/signing"
)

// Domain types the signing package does not define (consensus specs, Altair and builder specs).
var (
	domainSyncCommittee               = phase0.DomainType{0x07, 0x00, 0x00, 0x00}
	domainSyncCommitteeSelectionProof = phase0.DomainType{0x08, 0x00, 0x00, 0x00}
	domainContributionAndProof        = phase0.DomainType{0x09, 0x00, 0x00, 0x00}
	domainApplicationBuilder          = phase0.DomainType{0x00, 0x00, 0x00, 0x01}
)

// sszUint64 is an SSZ uint64 (a slot or an epoch as a signed object).
type sszUint64 uint64

// HashTreeRoot is the uint64 little endian, zero padded to 32 bytes.
func (v sszUint64) HashTreeRoot() ([32]byte, error) {
	var r [32]byte
	binary.LittleEndian.PutUint64(r[:8], uint64(v))
	return r, nil
}

// sszRoot is an SSZ Bytes32 (a block root as a signed object).
type sszRoot phase0.Root

// HashTreeRoot is the root itself.
func (r sszRoot) HashTreeRoot() ([32]byte, error) { return r, nil }

// hashRooter is what signed objects implement.
type hashRooter interface {
	HashTreeRoot() ([32]byte, error)
}

// keyCache holds the parsed public keys of the configured validators, parsed on first use.
type keyCache struct {
	raw  []phase0.BLSPubKey
	once []sync.Once
	keys []*bls.PublicKey
	errs []error
}

func newKeyCache(raw []phase0.BLSPubKey) *keyCache {
	return &keyCache{raw: raw, once: make([]sync.Once, len(raw)), keys: make([]*bls.PublicKey, len(raw)), errs: make([]error, len(raw))}
}

// errVirtual is the verification failure of a virtual validator's signature.
var errVirtual = errors.New("a virtual validator of the simulated network, which has no key and cannot sign")

// key returns the parsed public key of validator index.
func (k *keyCache) key(index phase0.ValidatorIndex) (*bls.PublicKey, error) {
	if uint64(index) >= uint64(len(k.raw)) {
		return nil, errVirtual
	}
	k.once[index].Do(func() {
		k.keys[index], k.errs[index] = signing.ParsePublicKey(bytes.Clone(k.raw[index][:]))
	})
	return k.keys[index], k.errs[index]
}

// domainAt computes the domain of type dt at epoch from the chain's own fork schedule and
// genesis validators root (the spec's get_domain; never go-eth2-client's helpers).
func (s *Sim) domainAt(dt phase0.DomainType, epoch phase0.Epoch) (phase0.Domain, error) {
	version, err := signing.ForkVersionAt(s.sched, epoch)
	if err != nil {
		return phase0.Domain{}, err
	}
	return signing.ComputeDomain(dt, version, s.cfg.GenesisValidatorsRoot)
}

// forkVersion returns the version of the named fork.
func (s *Sim) forkVersion(name string) phase0.Version {
	for _, f := range s.forks {
		if f.name == name {
			return f.version
		}
	}
	panic("simbeacon: unknown fork " + name)
}

// signingRoot is compute_signing_root(obj, domain).
func signingRoot(obj hashRooter, domain phase0.Domain) ([]byte, error) {
	root, err := signing.SigningRoot(obj, domain)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(root[:]), nil
}

// verifyBy checks that sig is validator index's signature of obj under domain. The error says
// what failed, for the failure message.
//
// Valid verdicts are remembered (as a beacon node remembers attestations it has seen), so that
// every node of a cluster submitting the same signature costs one pairing, not one each: the
// simulator must not be what a benchmark of the cluster measures.
func (s *Sim) verifyBy(index phase0.ValidatorIndex, obj hashRooter, domain phase0.Domain, sig phase0.BLSSignature) error {
	root, err := signingRoot(obj, domain)
	if err != nil {
		return fmt.Errorf("signing root: %w", err)
	}
	key := seenKey(index, root, sig)
	s.seenMu.Lock()
	_, seen := s.seen[key]
	s.seenMu.Unlock()
	if seen {
		return nil
	}
	pk, err := s.keys.key(index)
	if err != nil {
		return err
	}
	if err := verifyKey(pk, obj, domain, sig); err != nil {
		return err
	}
	s.remember(key)
	return nil
}

// seenKey is the verdict cache's key of (validator, signing root, signature).
func seenKey(index phase0.ValidatorIndex, root []byte, sig phase0.BLSSignature) (key [8 + 32 + 96]byte) {
	binary.LittleEndian.PutUint64(key[:8], uint64(index))
	copy(key[8:40], root)
	copy(key[40:], sig[:])
	return key
}

func (s *Sim) remember(key [8 + 32 + 96]byte) {
	s.seenMu.Lock()
	if s.seen == nil || len(s.seen) >= 1<<18 {
		s.seen = map[[8 + 32 + 96]byte]struct{}{}
	}
	s.seen[key] = struct{}{}
	s.seenMu.Unlock()
}

// signedBy is one signature a submission claims, for batchVerify.
type signedBy struct {
	index phase0.ValidatorIndex
	root  []byte // signing root
	sig   phase0.BLSSignature
}

// batchVerify checks a submission's signatures in one randomised batch per signing root (as a
// beacon node does) and remembers them as valid when their batch holds; nothing is remembered
// from a batch that fails, so verifyBy then checks each of them alone and names the bad ones.
// It only saves time: every verdict still comes from verifyBy.
func (s *Sim) batchVerify(items []signedBy) {
	byRoot := map[string][]signedBy{}
	for _, it := range items {
		byRoot[string(it.root)] = append(byRoot[string(it.root)], it)
	}
	for root, group := range byRoot {
		if len(group) < 2 {
			continue
		}
		pubs := make([]*bls.PublicKey, 0, len(group))
		sigs := make([]*bls.Sign, 0, len(group))
		for _, it := range group {
			pk, err := s.keys.key(it.index)
			if err != nil {
				return
			}
			sig, err := signing.ParseSignature(bytes.Clone(it.sig[:]))
			if err != nil {
				return
			}
			pubs, sigs = append(pubs, pk), append(sigs, sig)
		}
		if !signing.BatchVerifySameMessage(pubs, sigs, []byte(root)) {
			continue
		}
		for _, it := range group {
			s.remember(seenKey(it.index, it.root, it.sig))
		}
	}
}

// verifyKey checks sig over obj under domain with the parsed public key pk.
func verifyKey(pk *bls.PublicKey, obj hashRooter, domain phase0.Domain, sig phase0.BLSSignature) error {
	root, err := signingRoot(obj, domain)
	if err != nil {
		return fmt.Errorf("signing root: %w", err)
	}
	s, err := signing.ParseSignature(bytes.Clone(sig[:]))
	if err != nil {
		return err
	}
	if !s.VerifyByte(pk, root) {
		return signing.ErrVerify
	}
	return nil
}

// verifyAggregate checks that sig is the aggregate of the signatures of validators (repetitions
// count repeatedly, as in eth_fast_aggregate_verify over a participant list) over obj under
// domain.
func (s *Sim) verifyAggregate(validators []phase0.ValidatorIndex, obj hashRooter, domain phase0.Domain, sig phase0.BLSSignature) error {
	if len(validators) == 0 {
		return errors.New("no participants")
	}
	var agg bls.PublicKey
	for i, v := range validators {
		pk, err := s.keys.key(v)
		if err != nil {
			return fmt.Errorf("participant %d: %w", v, err)
		}
		if i == 0 {
			agg = *pk
		} else {
			agg.Add(pk)
		}
	}
	return verifyKey(&agg, obj, domain, sig)
}

// aggregateSignatures returns the aggregate of sigs, which must be valid.
func aggregateSignatures(sigs []phase0.BLSSignature) (phase0.BLSSignature, error) {
	var agg bls.Sign
	for i, raw := range sigs {
		sig, err := signing.ParseSignature(bytes.Clone(raw[:]))
		if err != nil {
			return phase0.BLSSignature{}, err
		}
		if i == 0 {
			agg = *sig
		} else {
			agg.Add(sig)
		}
	}
	var out phase0.BLSSignature
	copy(out[:], agg.Serialize())
	return out, nil
}

// infinitySignature is the point at infinity, the signature of an empty aggregate.
var infinitySignature = phase0.BLSSignature{0xc0}
