package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/slashingdb"
)

func TestTracker_Outcomes(t *testing.T) {
	tr := newTracker(2)
	k := func(s uint64) dutyKey { return dutyKey{Slot: phase0.Slot(s), Type: dutyAttester} }

	tr.Start(k(1), 3)
	tr.Step(k(1), StepFetch, 300*time.Millisecond)
	tr.Submitted(k(1), 2, time.Second)
	tr.Submitted(k(1), 1, 1100*time.Millisecond)
	if r := tr.Finish(k(1)); r.Result != "success" || r.Reason != "" || r.Submitted != 3 || len(r.Steps) != 2 || r.Node != 2 {
		t.Errorf("all submitted: %+v", r)
	}

	tr.Start(k(2), 3)
	tr.Submitted(k(2), 1, time.Second)
	if r := tr.Finish(k(2)); r.Result != "partial" || r.Reason != ReasonInsufficientPartials {
		t.Errorf("one of three: %+v", r)
	}

	tr.Start(k(3), 1)
	tr.Fail(k(3), StepConsensus, ReasonNoConsensus, errors.New("timeout"))
	tr.Fail(k(3), StepSent, ReasonInternal, nil) // the first failure wins
	if r := tr.Finish(k(3)); r.Result != "failed" || r.Reason != ReasonNoConsensus || r.FailedStep != StepConsensus || r.Detail != "timeout" {
		t.Errorf("failed: %+v", r)
	}

	tr.AddPeer(DutyRecord{Slot: 3, Type: dutyAttester, Node: 4, Result: "success"})
	slot := uint64(3)
	if recs := tr.Records(&slot); len(recs) != 2 || recs[0].Node != 2 || recs[1].Node != 4 {
		t.Errorf("cluster view of slot 3: %+v", recs)
	}
	tr.Trim(3)
	if recs := tr.Records(nil); len(recs) != 2 {
		t.Errorf("after trim: %d records, want slot 3's two", len(recs))
	}
}

func TestTracker_ReasonMapping(t *testing.T) {
	for err, want := range map[error]string{
		context.DeadlineExceeded:                 ReasonLate,
		fmt.Errorf("x: %w", ErrHalted):           ReasonDuplicateInstance,
		ErrBlocked:                               ReasonDoppelganger,
		fmt.Errorf("%w: bad", ErrInvalidDecided): ReasonInvalidDecided,
		errors.New("disk on fire"):               ReasonInternal,
		// A shutdown cancels the duty's context too; the stop, not lateness, is the cause.
		errors.Join(fmt.Errorf("fetch: %w", errStopped), context.Canceled): ReasonStopping,
	} {
		if got := failureReason(err); got != want {
			t.Errorf("failureReason(%v) = %s, want %s", err, got, want)
		}
	}
	for err, want := range map[error]string{
		fmt.Errorf("submit 5 aggregates: %w", errStopped): ReasonStopping,
		context.DeadlineExceeded:                          ReasonLate,
		errors.New("400 Bad Request"):                     ReasonBeaconError,
	} {
		if got := beaconReason(err); got != want {
			t.Errorf("beaconReason(%v) = %s, want %s", err, got, want)
		}
	}
	for rule, want := range map[slashingdb.Rule]string{
		slashingdb.RuleStartupGuard:     ReasonStartupGuard,
		slashingdb.RuleUnknownValidator: ReasonUnknownValidator,
		slashingdb.RuleDoubleVote:       ReasonSlashingRefusal,
		slashingdb.RuleSurrounding:      ReasonSlashingRefusal,
	} {
		if got := refusalReason(rule); got != want {
			t.Errorf("refusalReason(%s) = %s, want %s", rule, got, want)
		}
	}
}

func TestDutyRecord_StepAt(t *testing.T) {
	r := DutyRecord{Steps: []StepTime{{Step: StepStart, AtMs: 2}, {Step: StepSubmitting, AtMs: 40}, {Step: StepSubmitting, AtMs: 90}}}
	if at, ok := r.StepAt(StepSubmitting); !ok || at != 40 {
		t.Fatalf("StepAt(submitting) = %d, %v; want the first, 40", at, ok)
	}
	if _, ok := r.StepAt(StepSent); ok {
		t.Fatal("StepAt of a step the record lacks reported it")
	}
}
