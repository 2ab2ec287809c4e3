package simbeacon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	bitfield "github.com/OffchainLabs/go-bitfield"
	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	eth2http "github.com/attestantio/go-eth2-client/http"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/electra"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/rs/zerolog"

	"github.com/dvmesh/dvmesh/signing"
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testGenesis is a whole-second genesis time for fake-clock tests.
var testGenesis = time.Unix(1_700_000_000, 0)

const (
	testSlot          = 2 * time.Second
	testSlotsPerEpoch = 8
	testValidators    = 16
)

// env is a simulator behind an httptest server with a go-eth2-client connected to it.
type env struct {
	sim    *Sim
	srv    *httptest.Server
	client *eth2http.Service
	keys   []*bls.SecretKey
	clock  *fakeClock
}

// newEnv starts a simulator with testValidators fresh keys and a fake clock at genesis + at.
func newEnv(t *testing.T, at time.Duration) *env {
	t.Helper()
	return newEnvWith(t, at, nil)
}

// newEnvWith is newEnv with the configuration changed by tweak (if not nil) before New.
func newEnvWith(t *testing.T, at time.Duration, tweak func(*Config)) *env {
	t.Helper()
	keys := make([]*bls.SecretKey, testValidators)
	pks := make([]phase0.BLSPubKey, testValidators)
	for i := range keys {
		keys[i] = testKey(t, i)
		copy(pks[i][:], keys[i].GetPublicKey().Serialize())
	}
	clk := &fakeClock{t: testGenesis.Add(at)}
	cfg := Config{
		SlotDuration:          testSlot,
		SlotsPerEpoch:         testSlotsPerEpoch,
		Validators:            pks,
		Now:                   clk.Now,
		GenesisValidatorsRoot: testGVR,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sim.SetGenesis(testGenesis)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return &env{sim: sim, srv: srv, client: newClient(t, srv.URL), keys: keys, clock: clk}
}

// testGVR is the genesis validators root of the test environments: with deterministic keys it
// makes every signature, hence every selection proof and aggregator verdict, reproducible.
var testGVR = phase0.Root{0x6e, 0x76, 0x72}

// testKey is the deterministic secret key of test validator i.
func testKey(t *testing.T, i int) *bls.SecretKey {
	t.Helper()
	seed := sha256.Sum256([]byte(fmt.Sprintf("dvmesh simbeacon test key %d", i)))
	var sk bls.SecretKey
	if err := sk.SetLittleEndianMod(seed[:]); err != nil {
		t.Fatal(err)
	}
	return &sk
}

// newClient connects a go-eth2-client to url; it is closed when the test ends.
func newClient(t *testing.T, url string) *eth2http.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := eth2http.New(ctx, eth2http.WithAddress(url), eth2http.WithLogLevel(zerolog.Disabled))
	if err != nil {
		t.Fatalf("connect go-eth2-client: %v", err)
	}
	return c.(*eth2http.Service)
}

// at sets the fake clock to genesis + d.
func (e *env) at(d time.Duration) { e.clock.Set(testGenesis.Add(d)) }

// atSlot sets the fake clock to frac of the way into slot.
func (e *env) atSlot(slot phase0.Slot, frac float64) {
	e.at(time.Duration(slot)*testSlot + time.Duration(frac*float64(testSlot)))
}

// fuluVersion is the Fulu fork version for the default genesis version 0x10000000.
var fuluVersion = phase0.Version{0x70, 0x00, 0x00, 0x00}

// sign signs data with sk under the attester domain of the Fulu fork.
func (e *env) sign(t *testing.T, sk *bls.SecretKey, data *phase0.AttestationData) phase0.BLSSignature {
	t.Helper()
	return e.signAt(t, sk, data, fuluVersion)
}

// signAt signs data with sk under the attester domain of fork version.
func (e *env) signAt(t *testing.T, sk *bls.SecretKey, data *phase0.AttestationData, version phase0.Version) phase0.BLSSignature {
	t.Helper()
	domain, err := signing.ComputeDomain(signing.DomainBeaconAttester, version, e.sim.GenesisValidatorsRoot())
	if err != nil {
		t.Fatal(err)
	}
	root, err := signing.SigningRoot(data, domain)
	if err != nil {
		t.Fatal(err)
	}
	var sig phase0.BLSSignature
	copy(sig[:], sk.SignByte(root[:]).Serialize())
	return sig
}

// versioned wraps a signed attestation of duty the way a validator client submits it.
func versioned(duty *apiv1.AttesterDuty, data *phase0.AttestationData, sig phase0.BLSSignature) *spec.VersionedAttestation {
	agg := bitfield.NewBitlist(duty.CommitteeLength)
	agg.SetBitAt(duty.ValidatorCommitteeIndex, true)
	committees := bitfield.NewBitvector64()
	committees.SetBitAt(uint64(duty.CommitteeIndex), true)
	idx := duty.ValidatorIndex
	return &spec.VersionedAttestation{
		Version:        spec.DataVersionFulu,
		ValidatorIndex: &idx,
		Fulu: &electra.Attestation{
			AggregationBits: agg,
			Data:            data,
			Signature:       sig,
			CommitteeBits:   committees,
		},
	}
}

// duties fetches every validator's duties for epoch through the client.
func (e *env) duties(t *testing.T, epoch phase0.Epoch) []*apiv1.AttesterDuty {
	t.Helper()
	indices := make([]phase0.ValidatorIndex, testValidators)
	for i := range indices {
		indices[i] = phase0.ValidatorIndex(i)
	}
	resp, err := e.client.AttesterDuties(context.Background(), &eth2api.AttesterDutiesOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		t.Fatalf("attester duties: %v", err)
	}
	return resp.Data
}

// rawDo sends a request to the simulator and returns status and body.
func rawDo(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGenesisNotFoundBeforeSetGenesis(t *testing.T) {
	sim, err := New(Config{SlotDuration: time.Second, SlotsPerEpoch: 8})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	defer sim.Close()

	if code, body := rawDo(t, "GET", srv.URL+"/eth/v1/beacon/genesis", "", nil); code != http.StatusNotFound {
		t.Fatalf("genesis before SetGenesis: status %d (%s), want 404", code, body)
	}
	// The node is up (syncing answers), so the client connects, but has no genesis yet.
	c := newClient(t, srv.URL)
	if _, err := c.Genesis(context.Background(), &eth2api.GenesisOpts{}); err == nil {
		t.Fatal("client Genesis before SetGenesis succeeded")
	}
	if _, ok := sim.Genesis(); ok {
		t.Fatal("Genesis reports set before SetGenesis")
	}

	g := time.Unix(1_800_000_000, 0)
	sim.SetGenesis(g.Add(300 * time.Millisecond)) // truncated to whole seconds
	resp, err := c.Genesis(context.Background(), &eth2api.GenesisOpts{})
	if err != nil {
		t.Fatalf("client Genesis: %v", err)
	}
	if !resp.Data.GenesisTime.Equal(g) {
		t.Errorf("genesis time %v, want %v", resp.Data.GenesisTime, g)
	}
	if resp.Data.GenesisValidatorsRoot != sim.GenesisValidatorsRoot() || resp.Data.GenesisForkVersion != DefaultGenesisForkVersion {
		t.Errorf("genesis %+v does not match the simulator", resp.Data)
	}
	if got, ok := sim.Genesis(); !ok || !got.Equal(g) {
		t.Errorf("Genesis() = %v, %v", got, ok)
	}
}

func TestConfigEndpointsWithClient(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()

	specResp, err := e.client.Spec(ctx, &eth2api.SpecOpts{})
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	sp := specResp.Data
	if sp["SLOTS_PER_EPOCH"] != uint64(testSlotsPerEpoch) {
		t.Errorf("SLOTS_PER_EPOCH %v", sp["SLOTS_PER_EPOCH"])
	}
	if sp["SECONDS_PER_SLOT"] != testSlot {
		t.Errorf("SECONDS_PER_SLOT %v", sp["SECONDS_PER_SLOT"])
	}
	if sp["SLOT_DURATION_MS"] != uint64(testSlot.Milliseconds()) {
		t.Errorf("SLOT_DURATION_MS %v", sp["SLOT_DURATION_MS"])
	}
	if sp["CONFIG_NAME"] != "dvmesh-sim" {
		t.Errorf("CONFIG_NAME %v", sp["CONFIG_NAME"])
	}
	if sp["FULU_FORK_VERSION"] != fuluVersion || sp["FULU_FORK_EPOCH"] != uint64(0) || sp["ELECTRA_FORK_EPOCH"] != uint64(0) {
		t.Errorf("fulu fork %v at %v", sp["FULU_FORK_VERSION"], sp["FULU_FORK_EPOCH"])
	}
	if sp["DOMAIN_BEACON_ATTESTER"] != signing.DomainBeaconAttester {
		t.Errorf("DOMAIN_BEACON_ATTESTER %v", sp["DOMAIN_BEACON_ATTESTER"])
	}
	for _, k := range []string{"EPOCHS_PER_SYNC_COMMITTEE_PERIOD", "SYNC_COMMITTEE_SIZE", "TARGET_AGGREGATORS_PER_COMMITTEE", "MAX_COMMITTEES_PER_SLOT", "GENESIS_FORK_VERSION"} {
		if _, ok := sp[k]; !ok {
			t.Errorf("spec lacks %s", k)
		}
	}
	if d, err := e.client.SlotDuration(ctx); err != nil || d != testSlot {
		t.Errorf("SlotDuration %v, %v", d, err)
	}
	if n, err := e.client.TargetAggregatorsPerCommittee(ctx); err != nil || n != 16 {
		t.Errorf("TargetAggregatorsPerCommittee %v, %v", n, err)
	}

	fs, err := e.client.ForkSchedule(ctx, &eth2api.ForkScheduleOpts{})
	if err != nil {
		t.Fatalf("fork schedule: %v", err)
	}
	if len(fs.Data) != 7 {
		t.Fatalf("%d forks, want 7", len(fs.Data))
	}
	seen := map[phase0.Version]bool{}
	for i, f := range fs.Data {
		if f.Epoch != 0 || seen[f.CurrentVersion] {
			t.Errorf("fork %d: %+v (all at epoch 0 with distinct versions)", i, f)
		}
		seen[f.CurrentVersion] = true
	}
	if last := fs.Data[6]; last.CurrentVersion != fuluVersion {
		t.Errorf("last fork %+v, want fulu %#x", last, fuluVersion)
	}

	fork, err := e.client.Fork(ctx, &eth2api.ForkOpts{State: "head"})
	if err != nil {
		t.Fatalf("fork: %v", err)
	}
	if fork.Data.CurrentVersion != fuluVersion {
		t.Errorf("state fork %+v", fork.Data)
	}

	dc, err := e.client.DepositContract(ctx, &eth2api.DepositContractOpts{})
	if err != nil || dc.Data.ChainID != depositChainID || len(dc.Data.Address) != 20 {
		t.Errorf("deposit contract %+v, %v", dc, err)
	}

	nv, err := e.client.NodeVersion(ctx, &eth2api.NodeVersionOpts{})
	if err != nil || nv.Data != Version {
		t.Errorf("node version %v, %v", nv, err)
	}
	if code, _ := rawDo(t, "GET", e.srv.URL+"/eth/v1/node/health", "", nil); code != http.StatusOK {
		t.Errorf("health %d", code)
	}
}

func TestValidatorsAndFinalityWithClient(t *testing.T) {
	e := newEnv(t, 3*testSlotsPerEpoch*testSlot+testSlot/2) // epoch 3, slot 24
	ctx := context.Background()

	vals, err := e.client.Validators(ctx, &eth2api.ValidatorsOpts{State: "head", Indices: []phase0.ValidatorIndex{0, 3, 99}})
	if err != nil {
		t.Fatalf("validators by index: %v", err)
	}
	if len(vals.Data) != 2 || vals.Data[3] == nil || vals.Data[3].Validator.PublicKey != e.sim.cfg.Validators[3] {
		t.Fatalf("validators by index: %+v", vals.Data)
	}
	v := vals.Data[0]
	if v.Status != apiv1.ValidatorStateActiveOngoing || v.Balance != 32_000_000_000 || v.Validator.ExitEpoch != farFutureEpoch {
		t.Errorf("validator 0: %+v", v)
	}
	byKey, err := e.client.Validators(ctx, &eth2api.ValidatorsOpts{State: "head", PubKeys: []phase0.BLSPubKey{e.sim.cfg.Validators[5]}})
	if err != nil || len(byKey.Data) != 1 || byKey.Data[5] == nil {
		t.Fatalf("validators by pubkey: %+v, %v", byKey, err)
	}
	if code, body := rawDo(t, "GET", e.srv.URL+"/eth/v1/beacon/states/head/validators?id=1,2&id=7", "", nil); code != 200 || strings.Count(body, `"index"`) != 3 {
		t.Errorf("GET validators: %d %s", code, body)
	}

	fin, err := e.client.Finality(ctx, &eth2api.FinalityOpts{State: "head"})
	if err != nil {
		t.Fatalf("finality: %v", err)
	}
	if fin.Data.Justified.Epoch != 2 || fin.Data.Finalized.Epoch != 1 || fin.Data.PreviousJustified.Epoch != 1 {
		t.Errorf("finality at epoch 3: %+v", fin.Data)
	}
	if fin.Data.Justified.Root != blockRoot(2*testSlotsPerEpoch) {
		t.Errorf("justified root %#x", fin.Data.Justified.Root)
	}
	fin0, err := e.client.Finality(ctx, &eth2api.FinalityOpts{State: "3"})
	if err != nil || fin0.Data.Justified.Epoch != 0 || fin0.Data.Finalized.Epoch != 0 {
		t.Errorf("finality at slot 3: %+v, %v", fin0, err)
	}
	if _, err := e.client.Finality(ctx, &eth2api.FinalityOpts{State: "1000"}); err == nil {
		t.Error("finality of a future slot succeeded")
	}
}

func TestDutiesDeterministicOnePerValidatorPerEpoch(t *testing.T) {
	e := newEnv(t, testSlot/2)
	for epoch := phase0.Epoch(0); epoch <= 1; epoch++ {
		duties := e.duties(t, epoch)
		if len(duties) != testValidators {
			t.Fatalf("epoch %d: %d duties, want %d", epoch, len(duties), testValidators)
		}
		perSlot := map[phase0.Slot][]*apiv1.AttesterDuty{}
		for i, d := range duties {
			if d.ValidatorIndex != phase0.ValidatorIndex(i) || d.PubKey != e.sim.cfg.Validators[i] {
				t.Errorf("duty %d is for validator %d", i, d.ValidatorIndex)
			}
			if e.sim.epoch(d.Slot) != epoch || d.CommitteeIndex != 0 || d.CommitteesAtSlot != 1 {
				t.Errorf("duty %+v", d)
			}
			perSlot[d.Slot] = append(perSlot[d.Slot], d)
		}
		for slot, ds := range perSlot {
			pos := map[uint64]bool{}
			for _, d := range ds {
				if d.CommitteeLength != uint64(len(ds)) || d.ValidatorCommitteeIndex >= d.CommitteeLength || pos[d.ValidatorCommitteeIndex] {
					t.Errorf("slot %d: duty %+v inconsistent with %d attesters", slot, d, len(ds))
				}
				pos[d.ValidatorCommitteeIndex] = true
			}
		}
		// Same answer again, from a fresh simulator (determinism does not depend on the cache or
		// on the random genesis validators root), and for a subset in another order.
		other, err := New(Config{SlotDuration: testSlot, SlotsPerEpoch: testSlotsPerEpoch, Validators: e.sim.cfg.Validators})
		if err != nil {
			t.Fatal(err)
		}
		for i := testValidators - 1; i >= 0; i -= 3 {
			a := e.sim.dutyOf(epoch, phase0.ValidatorIndex(i))
			b := other.dutyOf(epoch, phase0.ValidatorIndex(i))
			if a != b || a.slot != duties[i].Slot || a.position != duties[i].ValidatorCommitteeIndex {
				t.Errorf("validator %d: duty %+v, again %+v, served %+v", i, a, b, duties[i])
			}
		}
	}
	resp, err := e.client.AttesterDuties(context.Background(), &eth2api.AttesterDutiesOpts{Epoch: 1, Indices: []phase0.ValidatorIndex{9, 2}})
	if err != nil || len(resp.Data) != 2 || resp.Data[0].ValidatorIndex != 9 || resp.Data[1].ValidatorIndex != 2 {
		t.Errorf("subset: %+v, %v", resp, err)
	}
	if resp.Metadata["dependent_root"] != blockRoot(0) {
		t.Errorf("dependent root %v", resp.Metadata["dependent_root"])
	}
	if _, err := e.client.AttesterDuties(context.Background(), &eth2api.AttesterDutiesOpts{Epoch: 2, Indices: []phase0.ValidatorIndex{0}}); err == nil {
		t.Error("duties two epochs ahead were served")
	}
}

func TestAttestationData(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	e.atSlot(19, 0.4) // epoch 2
	resp, err := e.client.AttestationData(ctx, &eth2api.AttestationDataOpts{Slot: 19, CommitteeIndex: 0})
	if err != nil {
		t.Fatalf("attestation data: %v", err)
	}
	d := resp.Data
	if d.Slot != 19 || d.Index != 0 || d.BeaconBlockRoot != blockRoot(19) ||
		d.Source.Epoch != 1 || d.Source.Root != blockRoot(8) || d.Target.Epoch != 2 || d.Target.Root != blockRoot(16) {
		t.Errorf("attestation data %+v", d)
	}
	if _, err := e.client.AttestationData(ctx, &eth2api.AttestationDataOpts{Slot: 20}); err == nil {
		t.Error("attestation data for a future slot was served")
	}
	for _, q := range []string{"slot=20&committee_index=0", "slot=x&committee_index=0", "committee_index=0", "slot=1&committee_index=64"} {
		if code, _ := rawDo(t, "GET", e.srv.URL+"/eth/v1/validator/attestation_data?"+q, "", nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
}

func TestMalformedRequestsGet400(t *testing.T) {
	e := newEnv(t, testSlot/2)
	fulu := map[string]string{"Eth-Consensus-Version": "fulu", "Content-Type": "application/json"}
	cases := []struct{ method, path, body string }{
		{"POST", "/eth/v2/beacon/pool/attestations", "{"},
		{"POST", "/eth/v2/beacon/pool/attestations", ""},
		{"POST", "/eth/v2/beacon/pool/attestations", `{"a":1}`},
		{"POST", "/eth/v2/beacon/pool/attestations", `[1, {}, {"data": null}]`},
		{"POST", "/eth/v1/validator/duties/attester/0", "{"},
		{"POST", "/eth/v1/validator/duties/attester/0", `["x"]`},
		{"POST", "/eth/v1/validator/duties/attester/0", ""},
		{"POST", "/eth/v1/validator/duties/attester/zz", `["1"]`},
		{"POST", "/eth/v1/beacon/states/head/validators", `{"ids": [7]}`},
		{"POST", "/eth/v1/beacon/states/head/validators", `{"ids": ["0xzz"]}`},
		{"GET", "/eth/v1/beacon/states/nonsense/fork", ""},
		{"GET", "/eth/v1/events", ""},
		{"GET", "/eth/v1/events?topics=bogus", ""},
		{"POST", "/dvmesh/sim/genesis?time=soon", ""},
	}
	for _, c := range cases {
		code, body := rawDo(t, c.method, e.srv.URL+c.path, c.body, fulu)
		if code != http.StatusBadRequest || !strings.Contains(body, `"message"`) {
			t.Errorf("%s %s %q: %d %s, want 400 with a message", c.method, c.path, c.body, code, body)
		}
	}
	if st := e.sim.Stats(); st.Totals.Wrong != 6 || st.Totals.Correct != 0 {
		t.Errorf("malformed submissions: totals %+v, want 6 wrong", st.Totals)
	}
}

// errorStatus returns the HTTP status of a go-eth2-client API error, or 0.
func errorStatus(err error) (int, string) {
	var apiErr *eth2api.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode, string(apiErr.Data)
	}
	return 0, ""
}
