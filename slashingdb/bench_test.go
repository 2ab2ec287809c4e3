package slashingdb

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// benchKeys registers n keys in db.
func benchKeys(b *testing.B, db *DB, n int) []phase0.BLSPubKey {
	keys := make([]phase0.BLSPubKey, n)
	for i := range keys {
		keys[i] = phase0.BLSPubKey{0xb0, byte(i >> 16), byte(i >> 8), byte(i)}
	}
	if err := db.Register(keys); err != nil {
		b.Fatal(err)
	}
	return keys
}

func dutyBatch(keys []phase0.BLSPubKey, epoch uint64) []AttestationRequest {
	reqs := make([]AttestationRequest, len(keys))
	for i, k := range keys {
		reqs[i] = AttestationRequest{Pubkey: k, SourceEpoch: phase0.Epoch(epoch - 1), TargetEpoch: phase0.Epoch(epoch), SigningRoot: phase0.Root{byte(epoch), byte(epoch >> 8)}}
	}
	return reqs
}

// BenchmarkDeepHistory: one validator with 100,000 prior attestations.
// "record" is one CheckAndRecordAttestations call (one fsynced commit);
// "check" is the in-memory check alone, to show it is O(log n).
func BenchmarkDeepHistory(b *testing.B) {
	const history = 100_000
	db := openEmptyTestDB(b, testGVR)
	keys := benchKeys(b, db, 1)
	for e := uint64(1); e <= history; e += 10_000 {
		reqs := make([]AttestationRequest, 0, 10_000)
		for t := e; t < e+10_000; t++ {
			reqs = append(reqs, dutyBatch(keys, t)...)
		}
		if _, err := db.CheckAndRecordAttestations(reqs); err != nil {
			b.Fatal(err)
		}
	}
	if n := len(db.vals[keys[0]].atts); n != history {
		b.Fatalf("%d records", n)
	}
	b.Run("record", func(b *testing.B) {
		for i := range b.N {
			vs, err := db.CheckAndRecordAttestations(dutyBatch(keys, uint64(history+1+i)))
			if err != nil || !vs[0].Allowed {
				b.Fatal(err, vs)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		v := db.vals[keys[0]]
		req := dutyBatch(keys, 50_000)[0]
		req.SourceEpoch = 49_990 // surrounds stored records: refused after two binary searches
		for range b.N {
			if verdict, _ := db.checkAttestation(v, nil, req); verdict.Allowed {
				b.Fatal(verdict)
			}
		}
	})
}

// BenchmarkDuty: 10,000 validators with 32 epochs of history each; one op is a
// duty batch of 300 or 1,000 of them (a rotating window), including the fsync.
// Reports p50/p99 latency per batch and µs per validator. Run with enough
// iterations for a meaningful p99, e.g. -benchtime 400x.
func BenchmarkDuty(b *testing.B) {
	const validators, history = 10_000, 32
	db := openEmptyTestDB(b, testGVR)
	keys := benchKeys(b, db, validators)
	for e := uint64(1); e <= history; e++ {
		if _, err := db.CheckAndRecordAttestations(dutyBatch(keys, e)); err != nil {
			b.Fatal(err)
		}
	}
	epoch := uint64(history)
	for _, size := range []int{300, 1000} {
		b.Run(fmt.Sprintf("validators=%d", size), func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			before := db.bolt.Stats().TxStats
			off := 0
			b.ResetTimer()
			for range b.N {
				if off+size > validators {
					off = 0
				}
				if off == 0 {
					epoch++
				}
				reqs := dutyBatch(keys[off:off+size], epoch)
				off += size
				start := time.Now()
				vs, err := db.CheckAndRecordAttestations(reqs)
				lat = append(lat, time.Since(start))
				if err != nil || !vs[0].Allowed || !vs[size-1].Allowed {
					b.Fatal(err, vs[0])
				}
			}
			b.StopTimer()
			after := db.bolt.Stats().TxStats
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			var total time.Duration
			for _, d := range lat {
				total += d
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(total.Microseconds())/float64(len(lat)*size), "µs/validator")
			b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "pagewrites/op")
		})
	}
}
