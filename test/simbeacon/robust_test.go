package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/altair"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// mutations returns v's JSON with, in turn, every object member deleted and set to null, every
// array emptied and every string replaced by "0x" (recursively).
func mutations(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var root any
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var out []string
	emit := func() {
		b, _ := json.Marshal(root)
		out = append(out, string(b))
	}
	var walk func(node any)
	walk = func(node any) {
		switch n := node.(type) {
		case map[string]any:
			keys := make([]string, 0, len(n))
			for k := range n {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				child := n[k]
				delete(n, k)
				emit()
				n[k] = nil
				emit()
				switch c := child.(type) {
				case string:
					n[k] = "0x"
					emit()
				case []any:
					n[k] = []any{}
					emit()
					n[k] = c
				}
				n[k] = child
				walk(child)
			}
		case []any:
			for _, child := range n {
				walk(child)
			}
		}
	}
	walk(root)
	return out
}

// serve sends a request straight to the handler, so that a panic fails the test.
func serve(h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMalformedSubmissionsNeverPanic(t *testing.T) {
	e := newEnv(t, 0)
	slot := phase0.Slot(9)
	e.atSlot(slot, 0.5)
	h := e.sim.Handler()
	data := e.sim.attestationData(slot)
	sig := e.sign(t, e.keys[0], data)
	att := &electra.Attestation{AggregationBits: []byte{0x03}, Data: data, Signature: sig, CommitteeBits: []byte{1, 0, 0, 0, 0, 0, 0, 0}}
	full, err := e.propose(t, slot, e.reveal(t, 9, slot), nil)
	if err != nil {
		t.Fatal(err)
	}
	fullSigned := e.signedFull(t, full, e.keys[9], fuluVersion).Fulu
	valid := map[string]any{
		"/eth/v2/beacon/pool/attestations": []any{&electra.SingleAttestation{CommitteeIndex: 0, AttesterIndex: 1, Data: data, Signature: sig}},
		"/eth/v2/validator/aggregate_and_proofs": []any{&electra.SignedAggregateAndProof{
			Message: &electra.AggregateAndProof{AggregatorIndex: 1, Aggregate: att, SelectionProof: sig}, Signature: sig}},
		"/eth/v1/beacon/pool/sync_committees": []any{&altair.SyncCommitteeMessage{Slot: slot, BeaconBlockRoot: blockRoot(slot), ValidatorIndex: 1, Signature: sig}},
		"/eth/v1/validator/contribution_and_proofs": []any{&altair.SignedContributionAndProof{Message: &altair.ContributionAndProof{
			AggregatorIndex: 1, SelectionProof: sig,
			Contribution: &altair.SyncCommitteeContribution{Slot: slot, BeaconBlockRoot: blockRoot(slot), AggregationBits: make([]byte, 16), Signature: sig},
		}, Signature: sig}},
		"/eth/v1/validator/beacon_committee_subscriptions": []any{&apiv1.BeaconCommitteeSubscription{ValidatorIndex: 1, Slot: slot, CommitteesAtSlot: 1}},
		"/eth/v1/validator/sync_committee_subscriptions":   []any{&apiv1.SyncCommitteeSubscription{ValidatorIndex: 1, SyncCommitteeIndices: []phase0.CommitteeIndex{1}, UntilEpoch: 3}},
		"/eth/v1/validator/prepare_beacon_proposer":        []any{&apiv1.ProposalPreparation{ValidatorIndex: 1}},
		"/eth/v1/validator/register_validator": []any{&apiv1.SignedValidatorRegistration{
			Message: &apiv1.ValidatorRegistration{Timestamp: testGenesis, Pubkey: e.sim.cfg.Validators[1]}, Signature: sig}},
		"/eth/v1/beacon/pool/voluntary_exits":      &phase0.SignedVoluntaryExit{Message: &phase0.VoluntaryExit{Epoch: 1, ValidatorIndex: 1}, Signature: sig},
		"/eth/v2/beacon/blocks":                    fullSigned,
		"/eth/v1/validator/duties/attester/1":      []string{"1"},
		"/eth/v1/validator/duties/sync/1":          []string{"1"},
		"/eth/v1/validator/liveness/1":             []string{"1"},
		"/eth/v1/beacon/states/head/validators":    map[string]any{"ids": []string{"1"}},
		"/eth/v2/beacon/blinded_blocks":            map[string]any{"message": map[string]any{"slot": "9"}, "signature": fmt.Sprintf("%#x", sig)},
		"/dvmesh/sim/reorg":                        nil,
		"/eth/v1/validator/duties/proposer/1":      nil,
		"/eth/v1/validator/sync_committee_nothing": nil,
	}
	header := map[string]string{"Eth-Consensus-Version": "fulu", "Content-Type": "application/json"}
	requests := 0
	for path, v := range valid {
		bodies := []string{"", "{", "null", "[]", "[null]", "[{}]", `[{"message":null}]`, `{"message":{}}`, `[1,"x",[]]`, `"\u0000"`}
		if v != nil {
			bodies = append(bodies, mutations(t, v)...)
		}
		for _, body := range bodies {
			rec := serve(h, "POST", path, body, header)
			requests++
			if rec.Code >= 500 {
				t.Errorf("POST %s %.200s: %d %s", path, body, rec.Code, rec.Body.String())
			}
		}
	}
	for _, q := range []string{
		"/eth/v2/validator/aggregate_attestation?slot=9&committee_index=0&attestation_data_root=0x12",
		"/eth/v2/validator/aggregate_attestation?slot=99&committee_index=0&attestation_data_root=0x" + strings.Repeat("00", 32),
		"/eth/v2/validator/aggregate_attestation?slot=9&committee_index=70&attestation_data_root=0x" + strings.Repeat("00", 32),
		"/eth/v1/validator/sync_committee_contribution?slot=9&subcommittee_index=9&beacon_block_root=0x00",
		"/eth/v1/validator/sync_committee_contribution?slot=x",
		"/eth/v1/beacon/blocks/0xzz/root",
		"/eth/v1/validator/duties/proposer/zz",
		"/eth/v3/validator/blocks/9?randao_reveal=0x&graffiti=0x",
	} {
		if rec := serve(h, "GET", q, "", nil); rec.Code != 400 && rec.Code != 404 {
			t.Errorf("GET %s: %d %s", q, rec.Code, rec.Body.String())
		}
	}
	if requests < 500 {
		t.Errorf("only %d requests", requests)
	}
	// Nothing of all that was valid, except preparations and subscriptions, which need no
	// signature, and the one block and exit body that survived mutation unchanged in meaning.
	st := e.sim.Stats()
	for _, typ := range []string{DutyAttester, DutyAggregator, DutySyncMessage, DutySyncContribution, DutyRegistration} {
		if d := st.Duties[typ]; d.Valid != 0 || d.Invalid == 0 {
			t.Errorf("%s: %+v", typ, d)
		}
	}
	if d := st.Duties[DutyExit]; d.Valid != 0 {
		t.Errorf("exit signed by the attester domain accepted: %+v", d)
	}
}
