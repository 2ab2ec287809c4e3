package signing

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// sharesAt evaluates a random degree t-1 polynomial whose value at 0 is secret at each index.
func sharesAt(t *testing.T, secret *bls.SecretKey, threshold int, idxs []uint64) map[uint64]*bls.SecretKey {
	t.Helper()
	poly := secret.GetMasterSecretKey(threshold)
	out := map[uint64]*bls.SecretKey{}
	for _, x := range idxs {
		var id bls.ID
		if err := id.SetDecString(new(big.Int).SetUint64(x).String()); err != nil {
			t.Fatal(err)
		}
		var sk bls.SecretKey
		if err := sk.Set(poly, &id); err != nil {
			t.Fatal(err)
		}
		out[x] = &sk
	}
	return out
}

// herumiRecover is herumi's own interpolation, the reference for the integer one.
func herumiRecover(t *testing.T, partials map[uint64]*bls.Sign, idxs []uint64) *bls.Sign {
	t.Helper()
	ids := make([]bls.ID, len(idxs))
	sigs := make([]bls.Sign, len(idxs))
	for i, x := range idxs {
		if err := ids[i].SetDecString(new(big.Int).SetUint64(x).String()); err != nil {
			t.Fatal(err)
		}
		sigs[i] = *partials[x]
	}
	var s bls.Sign
	if err := s.Recover(sigs, ids); err != nil {
		t.Fatal(err)
	}
	return &s
}

// subsets calls fn with every k-subset of xs, in increasing order.
func subsets(xs []uint64, k int, fn func([]uint64)) {
	var pick func(start int, cur []uint64)
	pick = func(start int, cur []uint64) {
		if len(cur) == k {
			fn(append([]uint64(nil), cur...))
			return
		}
		for i := start; i < len(xs); i++ {
			pick(i+1, append(cur, xs[i]))
		}
	}
	pick(0, nil)
}

// Every t-subset of every cluster size up to 7 recovers the secret key's own signature, the same
// as herumi's Recover: this covers the integer coefficients with D = 1 and with D > 1.
func TestRecoverParsed_EverySubsetMatchesSecret(t *testing.T) {
	msg := []byte("0123456789abcdef0123456789abcdef")
	for n := 1; n <= 7; n++ {
		idxs := make([]uint64, n)
		for i := range idxs {
			idxs[i] = uint64(i + 1)
		}
		for threshold := n/2 + 1; threshold <= n; threshold++ {
			var secret bls.SecretKey
			secret.SetByCSPRNG()
			want := secret.SignByte(msg)
			shares := sharesAt(t, &secret, threshold, idxs)
			partials := map[uint64]*bls.Sign{}
			for x, sk := range shares {
				partials[x] = sk.SignByte(msg)
			}
			subsets(idxs, threshold, func(sub []uint64) {
				m := map[uint64]*bls.Sign{}
				for _, x := range sub {
					m[x] = partials[x]
				}
				got, err := RecoverParsed(m, threshold)
				if err != nil {
					t.Fatalf("%d-of-%d %v: %v", threshold, n, sub, err)
				}
				if !got.IsEqual(want) {
					t.Fatalf("%d-of-%d %v: recovered signature is not the secret's", threshold, n, sub)
				}
				if !got.IsEqual(herumiRecover(t, m, sub)) {
					t.Fatalf("%d-of-%d %v: differs from herumi's Recover", threshold, n, sub)
				}
			})
		}
	}
}

// Large and scattered indices give numerators beyond 64 bits: the full-multiplication path.
func TestRecoverParsed_LargeIndices(t *testing.T) {
	msg := []byte("large indices")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		threshold := 2 + rng.IntN(4)
		seen := map[uint64]bool{}
		var idxs []uint64
		for len(idxs) < threshold {
			x := rng.Uint64()>>uint(rng.IntN(64)) | 1
			if !seen[x] {
				seen[x] = true
				idxs = append(idxs, x)
			}
		}
		var secret bls.SecretKey
		secret.SetByCSPRNG()
		partials := map[uint64]*bls.Sign{}
		for x, sk := range sharesAt(t, &secret, threshold, idxs) {
			partials[x] = sk.SignByte(msg)
		}
		got, err := RecoverParsed(partials, threshold)
		if err != nil {
			t.Fatalf("indices %v: %v", idxs, err)
		}
		if !got.IsEqual(secret.SignByte(msg)) {
			t.Fatalf("indices %v: recovered signature is not the secret's", idxs)
		}
	}
}

// The coefficients of a 3-of-4 cluster, spelled out: these are what make recovery cheap.
func TestInterpolation_ThreeOfFour(t *testing.T) {
	cases := []struct {
		idxs   []uint64
		nums   []int64
		denOne bool
	}{
		{[]uint64{1, 2, 3}, []int64{3, -3, 1}, true},
		{[]uint64{1, 2, 4}, []int64{8, -6, 1}, false}, // over D = 3
		{[]uint64{1, 3, 4}, []int64{2, -2, 1}, true},
		{[]uint64{2, 3, 4}, []int64{6, -8, 3}, true},
	}
	for _, c := range cases {
		ip, err := newInterpolation(c.idxs)
		if err != nil {
			t.Fatal(err)
		}
		for j, term := range ip.terms {
			got := int64(term.mag)
			if term.neg {
				got = -got
			}
			if term.fr != nil || got != c.nums[j] {
				t.Errorf("%v: N_%d = %+v, want %d", c.idxs, c.idxs[j], term, c.nums[j])
			}
		}
		if (ip.denInv == nil) != c.denOne {
			t.Errorf("%v: D = 1 is %v, want %v", c.idxs, ip.denInv == nil, c.denOne)
		}
	}
}

func TestInterpolation_RefusesBadIndices(t *testing.T) {
	for _, idxs := range [][]uint64{nil, {0, 1}, {1, 0}, {2, 2}, {0}} {
		if _, err := newInterpolation(idxs); err == nil {
			t.Errorf("indices %v accepted", idxs)
		}
	}
}

// The interop keys' hard-coded r must be herumi's.
func TestCurveOrderIsHerumis(t *testing.T) {
	if curveOrder.String() != bls.GetCurveOrder() {
		t.Fatalf("curveOrder %v, herumi %s", curveOrder, bls.GetCurveOrder())
	}
}

func BenchmarkRecoverParsed3of4(b *testing.B) {
	secret := newSecret(b)
	shares, _ := Split(secret, 3, 4)
	msg := []byte("0123456789abcdef0123456789abcdef")
	for _, set := range [][]uint64{{1, 2, 3}, {1, 2, 4}} {
		partials := map[uint64]*bls.Sign{}
		for _, x := range set {
			partials[x] = shares[x-1].SignByte(msg)
		}
		b.Run(fmt.Sprint(set), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := RecoverParsed(partials, 3); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
