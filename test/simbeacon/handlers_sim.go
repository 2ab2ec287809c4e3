package simbeacon

import (
	"net/http"
	"strconv"
	"time"
)

// handleSimStats serves GET /dvmesh/sim/stats: the JSON of Stats.
func (s *Sim) handleSimStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// handleSimGenesis serves POST /dvmesh/sim/genesis?time=<unix seconds>: calls SetGenesis and
// answers the genesis as GET /eth/v1/beacon/genesis would.
func (s *Sim) handleSimGenesis(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("time")
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		writeError(w, http.StatusBadRequest, "invalid time %q: want unix seconds", v)
		return
	}
	s.SetGenesis(time.Unix(sec, 0))
	s.handleGenesis(w, r)
}

// handleSimReorg serves POST /dvmesh/sim/reorg: calls Reorg and answers its ReorgResult.
func (s *Sim) handleSimReorg(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Reorg())
}
