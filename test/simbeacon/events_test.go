package simbeacon

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eth2api "github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	"github.com/attestantio/go-eth2-client/spec/phase0"
)

const eventSlot = 250 * time.Millisecond

// newEventSim starts a simulator on the real clock whose genesis has passed. The server counts
// requests in flight so tests can see streams end.
func newEventSim(t *testing.T) (*Sim, *httptest.Server, *atomic.Int64) {
	t.Helper()
	sim, err := New(Config{SlotDuration: eventSlot, SlotsPerEpoch: 4})
	if err != nil {
		t.Fatal(err)
	}
	sim.SetGenesis(time.Now().Add(-time.Second))
	var inFlight atomic.Int64
	h := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return sim, srv, &inFlight
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHeadEventsWithClient(t *testing.T) {
	sim, srv, _ := newEventSim(t)
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	heads := make(chan *apiv1.HeadEvent, 16)
	err := c.Events(ctx, &eth2api.EventsOpts{
		Topics: []string{"head"},
		HeadHandler: func(_ context.Context, ev *apiv1.HeadEvent) {
			select {
			case heads <- ev:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// go-eth2-client connects after a one second delay.
	var got []*apiv1.HeadEvent
	timeout := time.After(4 * time.Second)
	for len(got) < 3 {
		select {
		case ev := <-heads:
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("got %d head events, want 3", len(got))
		}
	}
	genesis, _ := sim.Genesis()
	for i, ev := range got {
		if i > 0 && ev.Slot != got[i-1].Slot+1 {
			t.Errorf("head slots %d then %d", got[i-1].Slot, ev.Slot)
		}
		if ev.Block != blockRoot(ev.Slot) || ev.State != stateRoot(ev.Slot) {
			t.Errorf("head %+v: wrong roots", ev)
		}
		if ev.EpochTransition != (ev.Slot%4 == 0) || ev.PreviousDutyDependentRoot != sim.attesterDependentRoot(sim.epoch(ev.Slot)) {
			t.Errorf("head %+v: wrong epoch transition or dependent root", ev)
		}
	}
	// The last one arrived during its slot.
	if cur := phase0.Slot(time.Since(genesis) / eventSlot); cur < got[2].Slot || cur > got[2].Slot+1 {
		t.Errorf("head event for slot %d at slot %d", got[2].Slot, cur)
	}
}

// openStream opens a raw event stream and returns its reader.
func openStream(t *testing.T, ctx context.Context, url string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/eth/v1/events?topics=head,block&topics=finalized_checkpoint", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body)
}

func TestEventStreamEndsOnCloseAndDisconnect(t *testing.T) {
	sim, srv, inFlight := newEventSim(t)

	// Disconnect: the handler returns.
	ctx, cancel := context.WithCancel(context.Background())
	rd := openStream(t, ctx, srv.URL)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "event: block") {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	waitFor(t, "the stream handler to return after the client left", func() bool { return inFlight.Load() == 0 })

	// Close: the stream ends from the server side.
	rd = openStream(t, context.Background(), srv.URL)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	sim.Close()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := rd.ReadString('\n'); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("stream still open after Close")
	}
	waitFor(t, "the stream handler to return after Close", func() bool { return inFlight.Load() == 0 })
}

func TestEventStreamWaitsForGenesis(t *testing.T) {
	sim, err := New(Config{SlotDuration: eventSlot, SlotsPerEpoch: 4})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	defer sim.Close()

	rd := openStream(t, context.Background(), srv.URL)
	lines := make(chan string, 8)
	go func() {
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- l
		}
	}()
	select {
	case l := <-lines:
		t.Fatalf("event %q before genesis", l)
	case <-time.After(2 * eventSlot):
	}
	sim.SetGenesis(time.Now())
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "event: ") {
			t.Errorf("line %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no event after genesis")
	}
}
