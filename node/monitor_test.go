package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/api"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// fakeSource serves a view the test changes between requests.
type fakeSource struct {
	mu sync.Mutex
	v  nodeView
}

func (f *fakeSource) view(context.Context) nodeView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.v
}

func (f *fakeSource) set(change func(v *nodeView)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.v)
}

// readyView is a 3-of-4 node with every readiness condition met.
func readyView() nodeView {
	return nodeView{
		PeerID: "16Uiu2HAmSelf", ShareIndex: 1, Instance: "inst-1", Version: "v0.0.0-test",
		Threshold: 3, Operators: 4, PeersConnected: 3,
		Peers: []peerView{
			{ShareIndex: 1, PeerID: "16Uiu2HAmSelf", Address: "/ip4/127.0.0.1/tcp/3610", Self: true},
			{ShareIndex: 2, PeerID: "16Uiu2HAmPeerTwo", Address: "/ip4/127.0.0.1/tcp/3611", Connected: true},
			{ShareIndex: 3, PeerID: "16Uiu2HAmPeerThree", Address: "/ip4/127.0.0.1/tcp/3612", Connected: true},
			{ShareIndex: 4, PeerID: "16Uiu2HAmPeerFour", Address: "/ip4/127.0.0.1/tcp/3613", Connected: true},
		},
		RaftRole: "follower", RaftTerm: 3, RaftLeader: "16Uiu2HAmPeerTwo", RaftLeaderIndex: 2,
		ChainConnected: true, Beacons: []beaconView{{URL: "http://127.0.0.1:5052"}},
		Beacon:    beaconProbe{At: time.Unix(1_700_000_000, 0), Answered: true, HeadSlot: 100, HasHead: true},
		ClockSlot: 101, ClockStarted: true, SlotsPerEpoch: 32,
		Doppelganger: "warm", Now: time.Unix(1_700_000_001, 0),
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(b), rec.Result().Header
}

func TestMonitor_Livez(t *testing.T) {
	src := &fakeSource{} // livez never looks at the node: even a zero view is alive
	code, body, _ := get(t, monitorHandler(src), "/livez")
	if code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/livez = %d %q, want 200 ok", code, body)
	}
}

// TestMonitor_ReadyzTransitions starts with every condition unmet, checks each reason line, then
// fixes them one at a time until /readyz answers 200.
func TestMonitor_ReadyzTransitions(t *testing.T) {
	src := &fakeSource{v: readyView()}
	src.set(func(v *nodeView) {
		v.ChainConnected = false
		v.Beacon = beaconProbe{Err: "dial tcp 127.0.0.1:5052: connection refused"}
		v.PeersConnected = 1
		v.RaftLeader, v.RaftLeaderIndex, v.RaftRole = "", 0, "candidate"
		v.Halted = "another process runs this node's identity"
	})
	h := monitorHandler(src)
	steps := []struct {
		want string // reason line that must be present before fix, and gone after
		fix  func(v *nodeView)
	}{
		{"beacon node not answering: dial tcp 127.0.0.1:5052: connection refused", func(v *nodeView) {
			v.Beacon = beaconProbe{Answered: true, PreGenesis: false}
		}},
		{"chain not connected: slashing DB not open", func(v *nodeView) {
			v.ChainConnected = true
			v.Beacon = beaconProbe{Answered: true, HeadSlot: 100, HasHead: true}
		}},
		{"peers: 1 of 3 connected, 2 needed for threshold 3", func(v *nodeView) { v.PeersConnected = 2 }},
		{"raft: no leader known (role candidate, term 3)", func(v *nodeView) { v.RaftLeader, v.RaftRole = "16Uiu2HAmPeerTwo", "follower" }},
		{"signing halted: another process runs this node's identity", func(v *nodeView) { v.Halted = "" }},
	}
	for i, s := range steps {
		code, body, _ := get(t, h, "/readyz")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("step %d: /readyz = %d, want 503", i, code)
		}
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if lines[0] != "not ready" || len(lines) != len(steps)-i+1 {
			t.Fatalf("step %d: body %q: want 'not ready' and %d reason lines", i, body, len(steps)-i)
		}
		if !strings.Contains(body, s.want) {
			t.Fatalf("step %d: body %q lacks %q", i, body, s.want)
		}
		var st Status
		_, js, _ := get(t, h, "/status")
		if err := json.Unmarshal([]byte(js), &st); err != nil || st.Ready || len(st.NotReady) != len(steps)-i {
			t.Fatalf("step %d: /status %s (err %v): want ready=false with %d reasons", i, js, err, len(steps)-i)
		}
		src.set(s.fix)
		if _, body, _ := get(t, h, "/readyz"); strings.Contains(body, s.want) {
			t.Fatalf("step %d: reason still reported after the fix: %q", i, body)
		}
	}
	code, body, _ := get(t, h, "/readyz")
	if code != http.StatusOK || body != "ok\n" {
		t.Fatalf("all conditions met: /readyz = %d %q, want 200 ok", code, body)
	}
}

func TestMonitor_ReadyzBeforeGenesisAndSync(t *testing.T) {
	src := &fakeSource{v: readyView()}
	h := monitorHandler(src)
	// Before genesis the DB cannot be open; a beacon node that says "no genesis yet" is enough.
	src.set(func(v *nodeView) {
		v.ChainConnected, v.ClockStarted = false, false
		v.Beacon = beaconProbe{Answered: true, PreGenesis: true}
	})
	if code, body, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("before genesis: /readyz = %d %q, want 200", code, body)
	}
	// Genesis reached, chain not connected yet.
	src.set(func(v *nodeView) { v.Beacon.PreGenesis = false })
	if code, body, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "chain not connected") {
		t.Fatalf("after genesis, chain not connected: /readyz = %d %q", code, body)
	}
	// A beacon node more than an epoch behind the clock is not synced.
	src.set(func(v *nodeView) {
		v.ChainConnected, v.ClockStarted = true, true
		v.Beacon = beaconProbe{Answered: true, HasHead: true, HeadSlot: 10}
		v.ClockSlot = 100
	})
	if code, body, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "beacon node not synced: its head is slot 10, this machine's clock says slot 100 (90 slots apart") {
		t.Fatalf("beacon behind: /readyz = %d %q", code, body)
	}
	src.set(func(v *nodeView) { v.Beacon.HeadSlot = 100 - 32 })
	if code, body, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("beacon an epoch behind: /readyz = %d %q, want 200", code, body)
	}
}

func TestMonitor_ReadyzReasonIsOneLine(t *testing.T) {
	src := &fakeSource{v: readyView()}
	src.set(func(v *nodeView) { v.Halted = "line one\nline two\r\nthree" })
	_, body, _ := get(t, monitorHandler(src), "/readyz")
	if want := "not ready\nsigning halted: line one line two  three\n"; body != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

// TestMonitor_StatusJSON keeps /status's field names, which run-local and test/ decode.
func TestMonitor_StatusJSON(t *testing.T) {
	src := &fakeSource{v: readyView()}
	code, body, hdr := get(t, monitorHandler(src), "/status")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("/status = %d %s", code, hdr.Get("Content-Type"))
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peer_id", "share_index", "raft_role", "raft_term", "raft_leader", "peers_connected", "chain_connected", "ready", "doppelganger", "instance", "version"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status lacks %q: %s", k, body)
		}
	}
	for _, k := range []string{"halted", "not_ready"} {
		if _, ok := raw[k]; ok {
			t.Errorf("/status of a ready node has %q: %s", k, body)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.RaftRole != "follower" || st.RaftLeader != "16Uiu2HAmPeerTwo" || st.PeersConnected != 3 || !st.ChainConnected || st.Doppelganger != "warm" {
		t.Fatalf("/status = %+v", st)
	}
}

func TestMonitor_UnknownPath404(t *testing.T) {
	h := monitorHandler(&fakeSource{v: readyView()})
	if code, _, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Fatalf("/nope = %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST / = %d, want 405", rec.Code)
	}
}

// TestMonitor_GenesisProbeHTTP covers the probe before the chain is connected, over plain HTTP:
// 404 is "no genesis yet", 200 "genesis known", a dead server an error without the password.
func TestMonitor_GenesisProbeHTTP(t *testing.T) {
	var status, hits atomic.Int32
	status.Store(http.StatusNotFound)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/eth/v1/beacon/genesis" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	m := &monitor{n: &Node{cfg: Config{BeaconURLs: []string{srv.URL + "/"}}}, client: srv.Client()}
	ctx := context.Background()

	p := m.probeBeacon(ctx)
	if !p.Answered || !p.PreGenesis || p.Err != "" {
		t.Fatalf("404: probe %+v, want answered, pre-genesis", p)
	}
	// Cached for a second: no second request.
	status.Store(http.StatusOK)
	if m.probeBeacon(ctx); hits.Load() != 1 {
		t.Fatalf("%d requests within the cache period, want 1", hits.Load())
	}
	m.probeMu.Lock()
	m.probe.At = time.Now().Add(-2 * beaconProbeCache)
	m.probeMu.Unlock()
	if p := m.probeBeacon(ctx); !p.Answered || p.PreGenesis {
		t.Fatalf("200: probe %+v, want answered, genesis known", p)
	}

	status.Store(http.StatusInternalServerError)
	if known, err := m.genesisKnown(ctx); known || err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("500: known %v err %v", known, err)
	}
	srv.Close()
	m.n.cfg.BeaconURLs = []string{strings.Replace(srv.URL, "http://", "http://user:secretpw@", 1) + "/?apikey=secrettoken"}
	known, err := m.genesisKnown(ctx)
	if known || err == nil {
		t.Fatalf("dead server: known %v err %v", known, err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks a credential: %v", err)
	}
}

type chainBeacon struct {
	Beacon
	err error
}

func (b chainBeacon) Chain(context.Context) (*Chain, error) {
	if b.err != nil {
		return nil, b.err
	}
	return &Chain{}, nil
}

// TestMonitor_GenesisProbeClient covers the probe through Config.Beacon.
func TestMonitor_GenesisProbeClient(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		err        error
		known, bad bool
	}{
		{nil, true, false},
		{&api.Error{StatusCode: 404}, false, false},
		{errors.Join(errors.New("genesis"), &api.Error{StatusCode: 404}), false, false},
		{&api.Error{StatusCode: 503}, false, true},
		{errors.New("connection refused"), false, true},
	} {
		m := &monitor{n: &Node{cfg: Config{Beacon: chainBeacon{err: c.err}}}}
		known, err := m.genesisKnown(ctx)
		if known != c.known || (err != nil) != c.bad {
			t.Errorf("Chain error %v: known %v err %v", c.err, known, err)
		}
	}
}

// TestMonitor_ProbeHeadSlot: once the chain is connected the probe asks for the head slot.
func TestMonitor_ProbeHeadSlot(t *testing.T) {
	m := &monitor{n: &Node{beacon: headBeacon{head: 42}}}
	if p := m.probeBeacon(context.Background()); !p.Answered || !p.HasHead || p.HeadSlot != phase0.Slot(42) {
		t.Fatalf("probe %+v, want head 42", p)
	}
}

func TestMonitor_DisplayURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:5052":                    "http://127.0.0.1:5052",
		"https://user:pw@beacon.example/x?key=abc": "https://xxxxx@beacon.example/x",
		"http://bn:5052/#frag":                     "http://bn:5052/",
		"http://[::1:5052":                         "(unparsable URL)",
	} {
		if got := displayURL(in); got != want {
			t.Errorf("displayURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := beaconViews(Config{BeaconURLs: []string{"http://a:1", " http://b:2"}}, nil); len(got) != 2 || got[1].URL != "http://b:2" {
		t.Errorf("beaconViews = %+v", got)
	}
}
