package signing

import (
	"bytes"
	"crypto/rand"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// randomScalarBytes is the size of each batch coefficient: 64 bits, the standard randomised
// batch check's (Ethereum's BLS libraries use the same). A batch with a wrong signature passes
// only if the coefficients hit one linear relation, probability 2^-64 per check, and every check
// draws fresh ones. 64-bit scalars make the two multi-scalar multiplications about a third
// cheaper than 128-bit ones: BenchmarkBatchVerifySameMessage measured 33.4 -> 24.5 µs per
// signature in a batch of 1,000 and 69.7 -> 51.4 in a batch of 100.
const randomScalarBytes = 8

// BatchVerifySameMessage reports whether every sigs[i] is a valid signature of msg under
// pubs[i], with one pairing check: it draws a fresh random coefficient r_i per signature and
// checks that sum(r_i*sig_i) verifies under sum(r_i*pk_i). A plain sum (all r_i = 1) would be
// unsafe: two wrong signatures whose errors cancel would pass. Points must come from
// ParsePublicKey/ParseSignature (subgroup-checked). An empty batch is invalid.
func BatchVerifySameMessage(pubs []*bls.PublicKey, sigs []*bls.Sign, msg []byte) bool {
	n := len(sigs)
	if n == 0 || len(pubs) != n {
		return false
	}
	if n == 1 {
		return sigs[0].VerifyByte(pubs[0], bytes.Clone(msg))
	}
	coeffs := make([]bls.Fr, n)
	buf := make([]byte, n*randomScalarBytes)
	if _, err := rand.Read(buf); err != nil {
		return false
	}
	g1 := make([]bls.G1, n)
	g2 := make([]bls.G2, n)
	for i := range sigs {
		if err := coeffs[i].SetLittleEndian(buf[i*randomScalarBytes : (i+1)*randomScalarBytes]); err != nil {
			return false
		}
		g1[i] = *bls.CastFromPublicKey(pubs[i])
		g2[i] = *bls.CastFromSign(sigs[i])
	}
	var aggPub bls.G1
	var aggSig bls.G2
	bls.G1MulVec(&aggPub, g1, coeffs)
	bls.G2MulVec(&aggSig, g2, coeffs)
	return bls.CastToSign(&aggSig).VerifyByte(bls.CastToPublicKey(&aggPub), bytes.Clone(msg))
}

// InvalidSameMessage returns the indices of the signatures in the batch that do not verify,
// by bisection with batch checks: cheap when all or almost all are valid.
func InvalidSameMessage(pubs []*bls.PublicKey, sigs []*bls.Sign, msg []byte) []int {
	var bad []int
	var walk func(lo, hi int)
	walk = func(lo, hi int) {
		if lo >= hi || BatchVerifySameMessage(pubs[lo:hi], sigs[lo:hi], msg) {
			return
		}
		if hi-lo == 1 {
			bad = append(bad, lo)
			return
		}
		mid := (lo + hi) / 2
		walk(lo, mid)
		walk(mid, hi)
	}
	if len(pubs) == len(sigs) {
		walk(0, len(sigs))
	}
	return bad
}
