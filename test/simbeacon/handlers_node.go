package simbeacon

import (
	"net/http"

	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
)

// handleNodeVersion serves GET /eth/v1/node/version.
func (s *Sim) handleNodeVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, envelope{Data: map[string]string{"version": Version}})
}

// handleNodeSyncing serves GET /eth/v1/node/syncing: always synced, the head is the current slot
// (0 before genesis).
func (s *Sim) handleNodeSyncing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, envelope{Data: &apiv1.SyncState{HeadSlot: s.headSlot()}})
}

// handleNodeHealth serves GET /eth/v1/node/health: always 200 (ready).
func (s *Sim) handleNodeHealth(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
}
