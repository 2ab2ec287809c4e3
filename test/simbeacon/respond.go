package simbeacon

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 16 << 20

// envelope is the standard response wrapper. Optional fields are omitted when nil.
type envelope struct {
	Version             string       `json:"version,omitempty"`
	ExecutionOptimistic *bool        `json:"execution_optimistic,omitempty"`
	Finalized           *bool        `json:"finalized,omitempty"`
	DependentRoot       *phase0.Root `json:"dependent_root,omitempty"`
	Data                any          `json:"data"`
}

// apiError is the standard error body; Failures is set for indexed errors of pool submissions.
type apiError struct {
	Code     int              `json:"code"`
	Message  string           `json:"message"`
	Failures []indexedFailure `json:"failures,omitempty"`
}

type indexedFailure struct {
	Index   int    `json:"index"`
	Message string `json:"message"`
}

// falsePtr returns a new pointer to false, for the optional flags of envelope.
func falsePtr() *bool { b := false; return &b }

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"code":500,"message":%q}`, err.Error()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeData writes {"data": data} with execution_optimistic false and the given finalized flag
// (omitted when nil).
func writeData(w http.ResponseWriter, data any, finalized *bool) {
	writeJSON(w, http.StatusOK, envelope{ExecutionOptimistic: falsePtr(), Finalized: finalized, Data: data})
}

// writeError writes the standard error body.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Code: status, Message: fmt.Sprintf(format, args...)})
}

// decodeBody decodes a JSON request body into v; it reports whether the body was present (an
// empty body leaves v untouched).
func decodeBody(r *http.Request, w http.ResponseWriter, v any) (bool, error) {
	body, err := readAll(w, r)
	if err != nil {
		return false, err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return true, fmt.Errorf("invalid JSON body: %w", err)
	}
	return true, nil
}

// readAll reads the request body, at most maxBodyBytes.
func readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return body, nil
}

// decodeHex decodes a 0x-prefixed hex string.
func decodeHex(v string) ([]byte, error) {
	if !strings.HasPrefix(v, "0x") {
		return nil, errors.New("no 0x prefix")
	}
	return hex.DecodeString(v[2:])
}

// errStateNotFound is returned for state ids naming a state the chain does not have (yet).
var errStateNotFound = errors.New("state not found")

// resolveState maps a state_id (head, genesis, finalized, justified, a slot or a 0x state root)
// to a slot at or before the head. Before genesis only slot 0 exists.
func (s *Sim) resolveState(id string) (phase0.Slot, error) {
	head := s.headSlot()
	switch id {
	case "head":
		return head, nil
	case "genesis":
		return 0, nil
	case "finalized":
		f, _, _ := s.finality(head)
		return s.startSlot(f.Epoch), nil
	case "justified":
		_, j, _ := s.finality(head)
		return s.startSlot(j.Epoch), nil
	}
	if strings.HasPrefix(id, "0x") {
		b, err := hex.DecodeString(id[2:])
		if err != nil || len(b) != 32 {
			return 0, fmt.Errorf("invalid state id %q: not a 32-byte hex root", id)
		}
		var root phase0.Root
		copy(root[:], b)
		for slot := head; ; slot-- { // newest first: recent states are the ones asked for
			if stateRoot(slot) == root {
				return slot, nil
			}
			if slot == 0 {
				return 0, errStateNotFound
			}
		}
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid state id %q", id)
	}
	// A slot's state exists up to the current slot, advanced through empty slots and epoch
	// transitions (as Prysm replays to a slot), even before the current slot's block arrived.
	if c := s.clock(); phase0.Slot(n) > head && (!c.started || phase0.Slot(n) > c.slot) {
		return 0, errStateNotFound
	}
	return phase0.Slot(n), nil
}

// stateOrError resolves the request's state_id or writes the error response and returns false.
func (s *Sim) stateOrError(w http.ResponseWriter, r *http.Request) (phase0.Slot, bool) {
	slot, err := s.resolveState(r.PathValue("state_id"))
	switch {
	case errors.Is(err, errStateNotFound):
		writeError(w, http.StatusNotFound, "state %s not found", r.PathValue("state_id"))
		return 0, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
		return 0, false
	}
	return slot, true
}

// parseUint parses a decimal uint64 request value.
func parseUint(name, v string) (uint64, error) {
	if v == "" {
		return 0, fmt.Errorf("%s missing", name)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: want a decimal integer", name, v)
	}
	return n, nil
}
