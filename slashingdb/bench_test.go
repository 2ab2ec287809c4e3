package slashingdb

import (
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// BenchmarkAttestationDuty measures one duty: a batch of attestations for 1,000
// validators that each already have 64 epochs of history.
func BenchmarkAttestationDuty(b *testing.B) {
	const validators, history = 1000, 64
	db := openTestDB(b, testGVR)
	keys := make([]phase0.BLSPubKey, validators)
	for i := range keys {
		keys[i] = phase0.BLSPubKey{0xb0, byte(i >> 8), byte(i)}
	}
	batch := func(epoch uint64) []AttestationRequest {
		reqs := make([]AttestationRequest, validators)
		for i, k := range keys {
			reqs[i] = AttestationRequest{Pubkey: k, SourceEpoch: phase0.Epoch(epoch - 1), TargetEpoch: phase0.Epoch(epoch), SigningRoot: phase0.Root{byte(epoch)}}
		}
		return reqs
	}
	for e := uint64(1); e <= history; e++ {
		if _, err := db.CheckAndRecordAttestations(batch(e)); err != nil {
			b.Fatal(err)
		}
	}
	before := db.bolt.Stats().TxStats
	b.ResetTimer()
	for i := range b.N {
		vs, err := db.CheckAndRecordAttestations(batch(uint64(history + 1 + i)))
		if err != nil {
			b.Fatal(err)
		}
		if !vs[0].Allowed {
			b.Fatal(vs[0])
		}
	}
	b.StopTimer()
	after := db.bolt.Stats().TxStats
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "pagewrites/op")
	b.ReportMetric(float64(after.GetPageCount()-before.GetPageCount())/float64(b.N), "pagesalloc/op")
}
