package simbeacon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// verdict is the judgement of one submitted item: the validator it is attributed to
// (unattributed if none), the slot it names, and why it is refused ("" if valid).
type verdict struct {
	validator phase0.ValidatorIndex
	slot      phase0.Slot
	reason    string
}

// refuse returns a refusing verdict.
func refuse(v phase0.ValidatorIndex, slot phase0.Slot, format string, args ...any) verdict {
	return verdict{validator: v, slot: slot, reason: fmt.Sprintf(format, args...)}
}

// servePool serves a submission endpoint whose body is a JSON array of items of duty type typ
// (what names the item type in messages). If version is not empty, the request must carry it as
// Eth-Consensus-Version (otherwise every item is refused unjudged and unattributed). Every item
// is judged by judge, which records valid duties itself; every
// item counts as submitted, every refused one as invalid. The answer is 200, or 400 with the
// beacon API's indexed error list (the valid items still count), or plain 400 for a body that is
// not an array.
func (s *Sim) servePool(w http.ResponseWriter, r *http.Request, typ, what, version string, judge func(now time.Time, c clock, raw json.RawMessage) verdict) {
	now := s.now()
	var raw []json.RawMessage
	present, err := decodeBody(r, w, &raw)
	if err == nil && (!present || raw == nil) {
		err = fmt.Errorf("body missing")
	}
	if err != nil {
		reason := fmt.Sprintf("%v: want a JSON array of %s", err, what)
		s.noteSubmitted(typ, unattributed)
		s.noteInvalid(now, typ, 0, unattributed, reason)
		writeError(w, http.StatusBadRequest, "%s", reason)
		return
	}
	var versionErr string
	if version != "" {
		if v := r.Header.Get("Eth-Consensus-Version"); !strings.EqualFold(v, version) {
			versionErr = fmt.Sprintf("Eth-Consensus-Version %q: the chain is at %s", v, version)
		}
	}
	c := s.clock()
	var failures []indexedFailure
	for i, m := range raw {
		v := verdict{validator: unattributed, reason: versionErr}
		if versionErr == "" {
			v = judge(now, c, m)
		}
		s.noteSubmitted(typ, v.validator)
		if v.reason != "" {
			s.noteInvalid(now, typ, v.slot, v.validator, v.reason)
			failures = append(failures, indexedFailure{Index: i, Message: v.reason})
		}
	}
	if len(failures) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{
			Code:     http.StatusBadRequest,
			Message:  fmt.Sprintf("%d of %d %s failed validation", len(failures), len(raw), what),
			Failures: failures,
		})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// onTime reports whether now is before the end of slot.
func (s *Sim) onTime(c clock, now time.Time, slot phase0.Slot) bool {
	return now.Before(s.slotStart(c.genesis, slot+1))
}
