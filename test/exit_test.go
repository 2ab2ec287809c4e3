package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

// exitCall talks to a node's admin endpoint as `dvmesh exit` does.
func exitCall(t *testing.T, admin, method string, req *node.ExitRequest, validator string) (*node.ExitStatus, int) {
	t.Helper()
	var body []byte
	u := "http://" + admin + "/admin/v1/exit"
	if req != nil {
		body, _ = json.Marshal(req)
	} else {
		u += "?validator=" + validator
	}
	r, _ := http.NewRequest(method, u, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st node.ExitStatus
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return &st, resp.StatusCode
}

// TestCluster_ExitNeedsThresholdConsent: one operator (or two, below the threshold of three)
// cannot produce a valid exit; the third operator's consent combines one that verifies under
// the group key with the EIP-7044 domain (Capella fork version), computed here independently.
func TestCluster_ExitNeedsThresholdConsent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster")
	}
	c := newCluster(t, 2)
	c.doppelgangerEpochs = -1
	c.start(nil)
	genesis := c.waitReadyAndStart()
	time.Sleep(time.Until(genesis.Add(testSlot)))
	pk := c.lock.GroupPubkeys()[0]
	pkHex := fmt.Sprintf("%#x", pk)
	epoch := uint64(0)

	// A validator that is not in the lock is refused.
	if _, code := exitCall(t, c.admin[0], http.MethodPost, &node.ExitRequest{Validator: "0x" + fmt.Sprintf("%096x", 1), Submit: true}, ""); code != http.StatusBadRequest {
		t.Fatalf("exit of a foreign validator: status %d, want 400", code)
	}
	st, code := exitCall(t, c.admin[0], http.MethodPost, &node.ExitRequest{Validator: pkHex, Epoch: &epoch, Submit: true}, "")
	if code != http.StatusOK || len(st.Partials) != 1 || len(st.SignedExit) != 0 {
		t.Fatalf("first consent: status %d, %+v", code, st)
	}
	// A second request for another epoch is refused: the first fixed it.
	other := uint64(1)
	if _, code := exitCall(t, c.admin[1], http.MethodPost, &node.ExitRequest{Validator: pkHex, Epoch: &other}, ""); code != http.StatusBadRequest {
		t.Fatalf("exit for another epoch: status %d, want 400", code)
	}
	st, code = exitCall(t, c.admin[1], http.MethodPost, &node.ExitRequest{Validator: pkHex, Epoch: &epoch, Submit: true}, "")
	if code != http.StatusOK || len(st.Partials) != 2 || len(st.SignedExit) != 0 {
		t.Fatalf("second consent: status %d, %+v", code, st)
	}
	// Node 4's operator consented to nothing, yet it keeps the peers' partials.
	if st, code := exitCall(t, c.admin[3], http.MethodGet, nil, pkHex); code != http.StatusOK || len(st.Partials) != 2 || len(st.SignedExit) != 0 {
		t.Fatalf("node 4 view: status %d, %+v", code, st)
	}
	if ex := c.sim.Stats().Duties["exit"]; ex.Submitted != 0 {
		t.Fatalf("an exit reached the beacon node with two of three consents: %+v", ex)
	}
	st, code = exitCall(t, c.admin[2], http.MethodPost, &node.ExitRequest{Validator: pkHex, Epoch: &epoch, Submit: true}, "")
	if code != http.StatusOK || len(st.SignedExit) == 0 {
		t.Fatalf("third consent: status %d, %+v", code, st)
	}
	var signed phase0.SignedVoluntaryExit
	if err := json.Unmarshal(st.SignedExit, &signed); err != nil {
		t.Fatal(err)
	}
	sched := c.sim.ForkSchedule()
	domain, err := signing.ComputeDomain(signing.DomainVoluntaryExit, sched[3].Version, c.sim.GenesisValidatorsRoot())
	if err != nil {
		t.Fatal(err)
	}
	root, err := signing.SigningRoot(signed.Message, domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.Verify(pk[:], root[:], signed.Signature[:]); err != nil {
		t.Fatalf("combined exit does not verify under the group key with the Capella domain: %v", err)
	}
	if signed.Message.Epoch != 0 || signed.Message.ValidatorIndex != 0 {
		t.Fatalf("exit message %+v", signed.Message)
	}
	// The consenting nodes submitted it, and the simulated beacon node verified it.
	if !st.Submitted {
		t.Fatalf("not submitted: %+v", st)
	}
	if ex := c.sim.Stats().Duties["exit"]; ex.Valid != 1 || ex.Invalid != 0 {
		t.Fatalf("beacon node's exit verdicts: %+v", ex)
	}
}
