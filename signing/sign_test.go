package signing

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
)

func TestSignSameMessage_EqualsSignByte(t *testing.T) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	for _, n := range []int{0, 1, 3, parallelSignMin + 5} {
		var keys []*bls.SecretKey
		for i := 0; i < n; i++ {
			keys = append(keys, newSecret(t))
		}
		got := SignSameMessage(keys, msg)
		if len(got) != n {
			t.Fatalf("%d keys: %d signatures", n, len(got))
		}
		for i, k := range keys {
			if want := k.SignByte(msg).Serialize(); !bytes.Equal(got[i], want) {
				t.Fatalf("%d keys: signature %d differs from SignByte", n, i)
			}
		}
	}
}

func BenchmarkSign(b *testing.B) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	for _, n := range []int{1000} {
		var keys []*bls.SecretKey
		for i := 0; i < n; i++ {
			keys = append(keys, newSecret(b))
		}
		b.Run(fmt.Sprintf("SignByte/%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, k := range keys {
					k.SignByte(msg)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/sig")
		})
		b.Run(fmt.Sprintf("SignSameMessage/%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				SignSameMessage(keys, msg)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/sig")
		})
	}
}

// The constant-time multiplication (called through cgo, bypassing the binding) gives the
// binding's variable-time result, for random scalars and the edge cases 0, 1 and r-1.
func TestG2MulCT_MatchesG2Mul(t *testing.T) {
	h := bls.HashAndMapToSignature([]byte("ct"))
	var scalars []bls.Fr
	for _, v := range []int64{0, 1, -1} {
		var fr bls.Fr
		fr.SetInt64(v)
		scalars = append(scalars, fr)
	}
	for range 8 {
		var fr bls.Fr
		fr.SetByCSPRNG()
		scalars = append(scalars, fr)
	}
	for i := range scalars {
		var want, got bls.G2
		bls.G2Mul(&want, bls.CastFromSign(h), &scalars[i])
		g2MulCT(&got, bls.CastFromSign(h), &scalars[i])
		if !got.IsEqual(&want) {
			t.Fatalf("scalar %s: constant-time product differs", scalars[i].GetString(10))
		}
	}
}
