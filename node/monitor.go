package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the node's state as /status reports it.
type Status struct {
	PeerID         string `json:"peer_id"`
	ShareIndex     uint64 `json:"share_index"`
	RaftRole       string `json:"raft_role"`
	RaftTerm       uint64 `json:"raft_term"`
	RaftLeader     string `json:"raft_leader"`
	PeersConnected int    `json:"peers_connected"`
	ChainConnected bool   `json:"chain_connected"`
	Ready          bool   `json:"ready"`
	Halted         string `json:"halted,omitempty"`
	Doppelganger   string `json:"doppelganger,omitempty"`
}

func (n *Node) status() Status {
	role, term, leader := n.cons.State()
	s := Status{
		PeerID: n.id.PeerID.String(), ShareIndex: n.id.ShareIndex,
		RaftRole: role, RaftTerm: term, RaftLeader: string(leader),
	}
	for _, p := range n.peers {
		if p != n.host.ID() && len(n.host.Network().ConnsToPeer(p)) > 0 {
			s.PeersConnected++
		}
	}
	select {
	case <-n.ready:
		s.ChainConnected = true
	default:
	}
	// Ready for duties: a Raft leader exists and enough peers are connected to reach the threshold.
	s.Halted = n.haltedReason()
	n.mu.Lock()
	s.Doppelganger = n.dgState
	n.mu.Unlock()
	s.Ready = leader != "" && s.PeersConnected+1 >= n.id.Lock.Threshold && s.Halted == ""
	return s
}

// serveMonitoring serves /metrics, /readyz and /status on addr.
func (n *Node) serveMonitoring(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.status())
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s := n.status(); !s.Ready {
			http.Error(w, fmt.Sprintf("not ready: raft leader %q, %d peers connected, halted: %q", s.RaftLeader, s.PeersConnected, s.Halted), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitoring address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("Monitoring server stopped", "err", err)
		}
	}()
	return srv, nil
}
