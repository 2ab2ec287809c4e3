package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// TestEpochStartHeadTrailsTransition: in an epoch's first slot, until its late block arrives,
// the head is the previous slot's block, whose state's justified checkpoint trails the source of
// the slot's attestation data (computed through the epoch transition), as on a real devnet.
func TestEpochStartHeadTrailsTransition(t *testing.T) {
	e := newEnv(t, 4*testSlotsPerEpoch*testSlot+testSlot/3) // a third into slot 32, the first of epoch 4
	if got := e.sim.headSlot(); got != 4*testSlotsPerEpoch-1 {
		t.Fatalf("head slot %d, want the previous slot's block", got)
	}
	var fin struct {
		Data struct {
			CurrentJustified struct {
				Epoch string `json:"epoch"`
			} `json:"current_justified"`
		} `json:"data"`
	}
	if code, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/states/head/finality_checkpoints", "", nil); code != 200 || json.Unmarshal([]byte(body), &fin) != nil {
		t.Fatalf("finality checkpoints: %d %s", code, body)
	}
	if src := e.sim.attestationData(4 * testSlotsPerEpoch).Source.Epoch; fin.Data.CurrentJustified.Epoch != "2" || src != 3 {
		t.Fatalf("head state justified %s, attestation source %d; want 2 and 3", fin.Data.CurrentJustified.Epoch, src)
	}
	// The state at the current slot is advanced through the transition.
	if code, body := rawDo(t, "GET", fmt.Sprintf("%s/eth/v1/beacon/states/%d/finality_checkpoints", e.srv.URL, 4*testSlotsPerEpoch), "", nil); code != 200 ||
		json.Unmarshal([]byte(body), &fin) != nil || fin.Data.CurrentJustified.Epoch != "3" {
		t.Fatalf("finality checkpoints of the current slot's state: %d %s, want justified epoch 3", code, body)
	}
	e.clock.Set(e.clock.Now().Add(testSlot / 2))
	if got := e.sim.headSlot(); got != 4*testSlotsPerEpoch {
		t.Fatalf("head slot %d after the block arrived", got)
	}
}

func TestStateIDs(t *testing.T) {
	e := newEnv(t, 4*testSlotsPerEpoch*testSlot+testSlot+testSlot/2) // mid-slot 33, epoch 4
	cases := map[string]phase0.Slot{
		"head":                            33,
		"genesis":                         0,
		"finalized":                       2 * testSlotsPerEpoch,
		"justified":                       3 * testSlotsPerEpoch,
		"17":                              17,
		fmt.Sprintf("%#x", stateRoot(21)): 21,
		fmt.Sprintf("%#x", stateRoot(33)): 33,
	}
	for id, want := range cases {
		got, err := e.sim.resolveState(id)
		if err != nil || got != want {
			t.Errorf("state %s: %d, %v; want %d", id, got, err, want)
		}
	}
	for id, code := range map[string]int{
		"34":                              http.StatusNotFound,
		fmt.Sprintf("%#x", stateRoot(34)): http.StatusNotFound,
		"0x1234":                          http.StatusBadRequest,
		"latest":                          http.StatusBadRequest,
	} {
		if got, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/states/"+id+"/finality_checkpoints", "", nil); got != code {
			t.Errorf("state %s: %d %s, want %d", id, got, body, code)
		}
	}
	if _, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/states/genesis/fork", "", nil); !strings.Contains(body, `"finalized":true`) {
		t.Errorf("genesis state not finalized at epoch 4: %s", body)
	}
}

func TestValidatorStatusFilter(t *testing.T) {
	e := newEnv(t, 0)
	for body, n := range map[string]int{
		`{"ids":["1","2"],"statuses":["active_ongoing"]}`: 2,
		`{"ids":["1","2"],"statuses":["active"]}`:         2,
		`{"ids":["1","2"],"statuses":["pending_queued"]}`: 0,
		`{"statuses":["active"]}`:                         testValidators,
		``:                                                testValidators,
	} {
		code, resp := rawDo(t, "POST", e.srv.URL+"/eth/v1/beacon/states/head/validators", body, nil)
		if code != 200 || strings.Count(resp, `"status":"active_ongoing"`) != n {
			t.Errorf("%s: %d, want %d validators: %s", body, code, n, resp)
		}
	}
}

func TestDutyCacheIsBoundedAndStable(t *testing.T) {
	e := newEnv(t, 0)
	first := e.sim.dutyOf(0, 5)
	e.sim.mu.Lock()
	cached := e.sim.assignmentLocked(0).duties[5]
	for epoch := phase0.Epoch(0); epoch < 3*maxCachedEpochs; epoch++ {
		e.sim.assignmentLocked(epoch)
	}
	n := len(e.sim.assignments)
	again := e.sim.assignmentLocked(0).duties[5]
	e.sim.mu.Unlock()
	if n > maxCachedEpochs {
		t.Errorf("%d epochs cached, want at most %d", n, maxCachedEpochs)
	}
	if again != first || cached != first {
		t.Errorf("duty after eviction %+v, cached %+v, computed %+v", again, cached, first)
	}
	if got := len(e.sim.ForkSchedule()); got != len(forkNames) {
		t.Errorf("fork schedule has %d forks", got)
	}
}

func TestEmitSlotAtEpochStart(t *testing.T) {
	e := newEnv(t, 0)
	rec := httptest.NewRecorder()
	slot := phase0.Slot(2 * testSlotsPerEpoch)
	if err := e.sim.emitSlot(rec, map[string]bool{"head": true, "block": true, "finalized_checkpoint": true}, slot); err != nil {
		t.Fatal(err)
	}
	out := rec.Body.String()
	for _, want := range []string{
		"event: block\ndata: {\"slot\":\"16\"",
		"event: head\ndata: {\"slot\":\"16\"",
		`"epoch_transition":true`,
		fmt.Sprintf(`"current_duty_dependent_root":"%#x"`, blockRoot(slot-1)),
		"event: finalized_checkpoint\ndata: ",
		`"epoch":"0"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("events lack %q:\n%s", want, out)
		}
	}
}
