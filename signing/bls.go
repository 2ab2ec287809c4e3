// Package signing holds dvmesh's cryptography: BLS12-381 in Ethereum mode, threshold key shares
// (Shamir over the scalar field), Ethereum signing roots and EIP-2335 keystores.
//
// Every function here is safe for concurrent use. The BLS library is initialised once, when the
// package is loaded, so that no caller can forget to do it.
package signing

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// Sizes of serialised BLS values.
const (
	PublicKeyLength = 48
	SignatureLength = 96
	// UncompressedSignatureLength is a G2 point as affine (x, y): the partials' wire encoding.
	UncompressedSignatureLength = 192
	SecretKeyLength             = 32
)

// Sentinel errors. Callers test them with errors.Is.
var (
	ErrBadPublicKey = errors.New("invalid BLS public key")
	ErrBadSignature = errors.New("invalid BLS signature")
	ErrBadSecretKey = errors.New("invalid BLS secret key")
	ErrBadShareID   = errors.New("invalid share index: must be 1..n (0 would be the secret itself)")
	ErrThreshold    = errors.New("invalid threshold")
	ErrVerify       = errors.New("signature does not verify")
)

func init() {
	if err := bls.Init(bls.BLS12_381); err != nil {
		panic(fmt.Sprintf("initialise BLS12-381: %v", err))
	}
	if err := bls.SetETHmode(bls.EthModeDraft07); err != nil {
		panic(fmt.Sprintf("set BLS Ethereum mode: %v", err))
	}
	// Subgroup checks on every deserialisation: a point outside the prime-order subgroup from a
	// peer must be refused, never combined.
	bls.VerifyPublicKeyOrder(true)
	bls.VerifySignatureOrder(true)
}

// The BLS library is cgo: a slice of an array field inside a Go struct that holds pointers
// (most go-eth2-client types) fails cgo's pointer check and panics. Every byte slice handed to it
// from here is therefore copied first.

// ParsePublicKey deserialises a compressed G1 public key, refusing the point at infinity and points
// outside the subgroup (the spec's KeyValidate).
func ParsePublicKey(b []byte) (*bls.PublicKey, error) {
	if len(b) != PublicKeyLength {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadPublicKey, len(b), PublicKeyLength)
	}
	var pk bls.PublicKey
	if err := pk.Deserialize(bytes.Clone(b)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	if pk.IsZero() {
		return nil, fmt.Errorf("%w: point at infinity", ErrBadPublicKey)
	}
	return &pk, nil
}

// ParseSignature deserialises a compressed G2 signature with subgroup check. The point at infinity
// deserialises (the spec allows it) but never verifies against a valid public key.
func ParseSignature(b []byte) (*bls.Sign, error) {
	if len(b) != SignatureLength {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadSignature, len(b), SignatureLength)
	}
	var sig bls.Sign
	if err := sig.Deserialize(bytes.Clone(b)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return &sig, nil
}

// ParsePeerSignature deserialises a partial signature from a cluster peer, compressed (96 bytes) or
// uncompressed (192 bytes, see SerializeForPeer). The on-curve and subgroup checks are the same
// for both encodings; the point at infinity deserialises and never verifies, as in ParseSignature.
func ParsePeerSignature(b []byte) (*bls.Sign, error) {
	if len(b) == SignatureLength {
		return ParseSignature(b)
	}
	if len(b) != UncompressedSignatureLength {
		return nil, fmt.Errorf("%w: %d bytes, want %d or %d", ErrBadSignature, len(b), UncompressedSignatureLength, SignatureLength)
	}
	var sig bls.Sign
	if err := sig.DeserializeUncompressed(bytes.Clone(b)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return &sig, nil
}

// SerializeForPeer encodes a partial signature for the cluster's exchange: uncompressed, because
// a node parses n-1 partials per validator per duty and decompressing a G2 point (a square root
// in Fp2) is about 40% of parsing it (34 of 84 us here). The receiver's subgroup check, the rest
// of the cost, stays. The price is 96 more bytes per partial on the wire.
func SerializeForPeer(sig *bls.Sign) []byte { return sig.SerializeUncompressed() }

// ParseSecretKey deserialises a 32-byte big-endian secret key, refusing zero.
func ParseSecretKey(b []byte) (*bls.SecretKey, error) {
	if len(b) != SecretKeyLength {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadSecretKey, len(b), SecretKeyLength)
	}
	var sk bls.SecretKey
	if err := sk.Deserialize(bytes.Clone(b)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSecretKey, err)
	}
	if sk.IsZero() {
		return nil, fmt.Errorf("%w: zero", ErrBadSecretKey)
	}
	return &sk, nil
}

// Verify checks sig over the 32-byte message root under pubkey, all serialised.
func Verify(pubkey, root, sig []byte) error {
	pk, err := ParsePublicKey(pubkey)
	if err != nil {
		return err
	}
	s, err := ParseSignature(sig)
	if err != nil {
		return err
	}
	if !s.VerifyByte(pk, bytes.Clone(root)) {
		return ErrVerify
	}
	return nil
}
