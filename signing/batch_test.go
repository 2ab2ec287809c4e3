package signing

import (
	"fmt"
	"slices"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
)

func batchOf(t testing.TB, n int, msg []byte) ([]*bls.PublicKey, []*bls.Sign, []*bls.SecretKey) {
	t.Helper()
	var pubs []*bls.PublicKey
	var sigs []*bls.Sign
	var sks []*bls.SecretKey
	for i := 0; i < n; i++ {
		sk := newSecret(t)
		sks = append(sks, sk)
		pubs = append(pubs, sk.GetPublicKey())
		sigs = append(sigs, sk.SignByte(msg))
	}
	return pubs, sigs, sks
}

func TestBatchVerifySameMessage(t *testing.T) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	pubs, sigs, sks := batchOf(t, 9, msg)
	if !BatchVerifySameMessage(pubs, sigs, msg) {
		t.Fatal("valid batch refused")
	}
	if BatchVerifySameMessage(pubs, sigs, []byte("another message, thirty-two byte")) {
		t.Fatal("batch accepted for another message")
	}
	if BatchVerifySameMessage(nil, nil, msg) || BatchVerifySameMessage(pubs[:2], sigs[:3], msg) {
		t.Fatal("empty or mismatched batch accepted")
	}
	// A single wrong signature (signed by another key) is caught and located.
	bad := slices.Clone(sigs)
	bad[4] = sks[5].SignByte(msg)
	if BatchVerifySameMessage(pubs, bad, msg) {
		t.Fatal("batch with a wrong signature accepted")
	}
	if got := InvalidSameMessage(pubs, bad, msg); !slices.Equal(got, []int{4}) {
		t.Fatalf("invalid = %v, want [4]", got)
	}
}

// TestBatchVerify_CancellingErrorsCaught is the attack a plain sum misses: add an error E to one
// signature and subtract it from another; the sum of signatures is unchanged, so an unweighted
// aggregate check passes, but the randomised check must refuse.
func TestBatchVerify_CancellingErrorsCaught(t *testing.T) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	pubs, sigs, _ := batchOf(t, 4, msg)
	errPoint := newSecret(t).SignByte([]byte("error point, thirty-two bytes!!!"))
	var plus, minus bls.G2
	bls.G2Add(&plus, bls.CastFromSign(sigs[1]), bls.CastFromSign(errPoint))
	bls.G2Sub(&minus, bls.CastFromSign(sigs[2]), bls.CastFromSign(errPoint))
	tampered := slices.Clone(sigs)
	tampered[1], tampered[2] = bls.CastToSign(&plus), bls.CastToSign(&minus)

	// The unsafe check: the plain sums still verify.
	var sumSig bls.Sign
	var sumPub bls.PublicKey
	sumSig = *tampered[0]
	sumPub = *pubs[0]
	for i := 1; i < 4; i++ {
		sumSig.Add(tampered[i])
		sumPub.Add(pubs[i])
	}
	if !sumSig.VerifyByte(&sumPub, msg) {
		t.Fatal("test setup: the cancelling errors should fool a plain sum")
	}
	for i := 0; i < 20; i++ {
		if BatchVerifySameMessage(pubs, tampered, msg) {
			t.Fatal("randomised batch check accepted cancelling errors")
		}
	}
	if got := InvalidSameMessage(pubs, tampered, msg); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("invalid = %v, want [1 2]", got)
	}
}

func BenchmarkBatchVerifySameMessage(b *testing.B) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	for _, n := range []int{100, 1000} {
		pubs, sigs, _ := batchOf(b, n, msg)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if !BatchVerifySameMessage(pubs, sigs, msg) {
					b.Fatal("refused")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/sig")
		})
	}
}
