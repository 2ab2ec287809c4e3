package simbeacon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	eth2api "github.com/attestantio/go-eth2-client/api"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// liveness asks the simulator through go-eth2-client which of indices are live in epoch.
func (e *env) liveness(epoch phase0.Epoch, indices ...phase0.ValidatorIndex) (map[phase0.ValidatorIndex]bool, error) {
	resp, err := e.client.ValidatorLiveness(context.Background(), &eth2api.ValidatorLivenessOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		return nil, err
	}
	if len(resp.Data) != len(indices) {
		return nil, fmt.Errorf("%d answers for %d indices", len(resp.Data), len(indices))
	}
	live := map[phase0.ValidatorIndex]bool{}
	for i, l := range resp.Data {
		if l.Index != indices[i] {
			return nil, fmt.Errorf("answer %d is for validator %d, asked %d", i, l.Index, indices[i])
		}
		live[l.Index] = l.IsLive
	}
	return live, nil
}

// wantLive checks that exactly the validators in want are live in epoch, of all validators.
func (e *env) wantLive(t *testing.T, epoch phase0.Epoch, want ...phase0.ValidatorIndex) {
	t.Helper()
	all := make([]phase0.ValidatorIndex, testValidators)
	for i := range all {
		all[i] = phase0.ValidatorIndex(i)
	}
	got, err := e.liveness(epoch, all...)
	if err != nil {
		t.Fatalf("liveness in epoch %d: %v", epoch, err)
	}
	isWanted := map[phase0.ValidatorIndex]bool{}
	for _, i := range want {
		isWanted[i] = true
	}
	for _, i := range all {
		if got[i] != isWanted[i] {
			t.Errorf("epoch %d: validator %d live %v, want %v", epoch, i, got[i], isWanted[i])
		}
	}
}

// wantFuture checks that liveness in epoch is refused with 400.
func (e *env) wantFuture(t *testing.T, epoch phase0.Epoch) {
	t.Helper()
	_, err := e.liveness(epoch, 0)
	if code, body := errorStatus(err); code != http.StatusBadRequest || !strings.Contains(body, "future") {
		t.Errorf("liveness in epoch %d: %v (status %d), want 400 for a future epoch", epoch, err, code)
	}
}

func TestLivenessFromAttestations(t *testing.T) {
	e := newEnv(t, testSlot/2)
	bySlot, slot := dutiesAt(t, e) // a slot of epoch 1 with two attesters
	good, bad := bySlot[slot][0], bySlot[slot][1]
	e.atSlot(slot, 0.5)
	e.wantLive(t, 1)
	e.wantLive(t, 0)
	e.wantFuture(t, 2)

	// A valid attestation makes good live in epoch 1; bad's, signed with good's key, is refused
	// and does not.
	data := e.data(t, slot)
	if err := e.submit(versioned(good, data, e.sign(t, e.keys[good.ValidatorIndex], data))); err != nil {
		t.Fatalf("valid attestation refused: %v", err)
	}
	if code, _ := errorStatus(e.submit(versioned(bad, data, e.sign(t, e.keys[good.ValidatorIndex], data)))); code != 400 {
		t.Fatalf("bad signature: status %d, want 400", code)
	}
	e.wantLive(t, 1, good.ValidatorIndex)
	e.wantLive(t, 0)

	// In epoch 2, epoch 1 is the previous epoch and still answered; a late but valid attestation
	// of bad counts too. Nobody is live in epoch 2 yet, and epoch 3 is in the future.
	e.atSlot(2*testSlotsPerEpoch, 0.1)
	if err := e.submit(versioned(bad, data, e.sign(t, e.keys[bad.ValidatorIndex], data))); err != nil {
		t.Fatalf("late attestation refused: %v", err)
	}
	e.wantLive(t, 1, good.ValidatorIndex, bad.ValidatorIndex)
	e.wantLive(t, 2)
	e.wantFuture(t, 3)

	// Older epochs are answered from the records.
	e.atSlot(5*testSlotsPerEpoch, 0.1)
	e.wantLive(t, 1, good.ValidatorIndex, bad.ValidatorIndex)
	if st := e.sim.Stats(); st.Totals.Correct != 1 || st.Totals.Late != 1 || st.Totals.Wrong != 1 {
		t.Errorf("stats totals %+v", st.Totals)
	}
}

func TestMarkLive(t *testing.T) {
	e := newEnv(t, 3*testSlotsPerEpoch*testSlot+testSlot/2) // epoch 3
	e.sim.MarkLive(2, 4, 5)
	e.sim.MarkLive(2, 5) // again: no change
	e.sim.MarkLive(5, 7) // a future epoch
	e.wantLive(t, 2, 4, 5)
	e.wantLive(t, 3)
	e.wantFuture(t, 5)
	e.at(5 * testSlotsPerEpoch * testSlot)
	e.wantLive(t, 5, 7)
	e.wantLive(t, 4)
	e.wantLive(t, 2, 4, 5)

	// An index the chain does not know is answered: not live unless marked.
	e.sim.MarkLive(5, 1000)
	got, err := e.liveness(5, 999, 1000, 7)
	if err != nil || got[999] || !got[1000] || !got[7] {
		t.Errorf("unknown indices: %v, %v", got, err)
	}
}

func TestForeignSigner(t *testing.T) {
	e := newEnv(t, 2*testSlotsPerEpoch*testSlot+testSlot/2) // epoch 2
	e.sim.SetForeignSigner(9, true)
	e.sim.SetForeignSigner(9, true) // again: still on since epoch 2
	e.sim.SetForeignSigner(3, false)
	for epoch := phase0.Epoch(0); epoch <= 2; epoch++ {
		e.wantLive(t, epoch, 9)
	}
	e.wantFuture(t, 3)

	// It keeps signing in every epoch that starts.
	e.at(4 * testSlotsPerEpoch * testSlot)
	e.wantLive(t, 4, 9)

	// Switched off: the epochs it was on for (2 to 4) stay live, earlier ones and new ones not.
	e.sim.SetForeignSigner(9, false)
	for epoch := phase0.Epoch(0); epoch <= 4; epoch++ {
		if epoch >= 2 {
			e.wantLive(t, epoch, 9)
		} else {
			e.wantLive(t, epoch)
		}
	}
	e.at(5 * testSlotsPerEpoch * testSlot)
	e.wantLive(t, 5)
}

func TestForeignSignerBeforeGenesis(t *testing.T) {
	e := newEnv(t, -10*testSlot)
	e.sim.SetForeignSigner(1, true)
	// Before genesis epoch 0 is current but has not started; epoch 1 is in the future.
	code, body := rawDo(t, "POST", e.srv.URL+"/eth/v1/validator/liveness/0", `["1","2"]`, nil)
	if want := `{"data":[{"index":"1","is_live":false},{"index":"2","is_live":false}]}`; code != 200 || body != want {
		t.Errorf("before genesis: %d %s, want %s", code, body, want)
	}
	if code, body := rawDo(t, "POST", e.srv.URL+"/eth/v1/validator/liveness/1", `["1"]`, nil); code != 400 {
		t.Errorf("epoch 1 before genesis: %d %s, want 400", code, body)
	}
	e.at(testSlot / 2)
	e.wantLive(t, 0, 1)
	// Switched off before genesis had passed: nothing stays behind.
	e.at(-testSlot)
	e.sim.SetForeignSigner(1, false)
	e.at(testSlot / 2)
	e.wantLive(t, 0)
}

func TestLivenessMalformed(t *testing.T) {
	e := newEnv(t, 2*testSlotsPerEpoch*testSlot) // epoch 2
	path := e.srv.URL + "/eth/v1/validator/liveness/"
	cases := []struct{ epoch, body string }{
		{"1", ""},
		{"1", "null"},
		{"1", "{"},
		{"1", `{"a":1}`},
		{"1", `[1]`},
		{"1", `["x"]`},
		{"1", `["-1"]`},
		{"1", `["1", null]`},
		{"1", `["18446744073709551616"]`},
		{"zz", `["1"]`},
		{"-1", `["1"]`},
		{"3", `["1"]`},
		{"18446744073709551615", `["1"]`},
		{"18446744073709551616", `["1"]`},
	}
	for _, c := range cases {
		code, body := rawDo(t, "POST", path+c.epoch, c.body, map[string]string{"Content-Type": "application/json"})
		if code != http.StatusBadRequest || !strings.Contains(body, `"message"`) {
			t.Errorf("epoch %s, body %q: %d %s, want 400 with a message", c.epoch, c.body, code, body)
		}
	}
	if code, body := rawDo(t, "POST", path+"2", `[]`, nil); code != 200 || body != `{"data":[]}` {
		t.Errorf("empty list: %d %s", code, body)
	}
	if code, body := rawDo(t, "GET", path+"2", "", nil); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %s", code, body)
	}
	// Duplicates are answered as asked.
	e.sim.MarkLive(2, 3)
	if code, body := rawDo(t, "POST", path+"2", `["3","0","3"]`, nil); code != 200 ||
		body != `{"data":[{"index":"3","is_live":true},{"index":"0","is_live":false},{"index":"3","is_live":true}]}` {
		t.Errorf("duplicates: %d %s", code, body)
	}
	// The client refuses to send an empty list itself.
	if _, err := e.liveness(2); err == nil {
		t.Error("client sent an empty liveness request")
	}
}

func TestLivenessConcurrent(t *testing.T) {
	e := newEnv(t, 2*testSlotsPerEpoch*testSlot) // epoch 2
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx := phase0.ValidatorIndex(g)
			for i := range 20 {
				e.sim.MarkLive(phase0.Epoch(i%3), idx)
				e.sim.SetForeignSigner(idx+8, i%2 == 0)
				if _, err := e.liveness(phase0.Epoch(i%3), idx, idx+8); err != nil {
					t.Errorf("liveness: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every foreign signer was last switched off after being on in epoch 2.
	e.wantLive(t, 1, 0, 1, 2, 3)
	e.wantLive(t, 2, 0, 1, 2, 3, 8, 9, 10, 11)
}
