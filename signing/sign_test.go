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
