package signing

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// curveOrder is r, the order of BLS12-381's G1 and G2 subgroups.
var curveOrder, _ = new(big.Int).SetString("52435875175126190479447740508185965837690552500527637822603658699938581184513", 10)

// InteropSecretKey returns the secret key of interop validator i, the deterministic key every
// client uses for test chains (Prysm's and Lighthouse's --interop validators, prysmctl's genesis
// states): SHA-256 of i as a 32-byte little-endian integer, read as a little-endian integer, mod
// the curve order r. These keys are public knowledge: never use them on a public network.
func InteropSecretKey(i uint64) (*bls.SecretKey, error) {
	var in [32]byte
	binary.LittleEndian.PutUint64(in[:8], i)
	h := sha256.Sum256(in[:])
	slices.Reverse(h[:]) // little-endian to big-endian
	n := new(big.Int).SetBytes(h[:])
	n.Mod(n, curveOrder)
	be := make([]byte, 32)
	n.FillBytes(be)
	var sk bls.SecretKey
	if err := sk.Deserialize(be); err != nil {
		return nil, fmt.Errorf("interop key %d: %w", i, err)
	}
	return &sk, nil
}
