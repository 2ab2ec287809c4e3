package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	rtmetrics "runtime/metrics"
)

// metrics are one node's Prometheus series. Each node has its own registry so that several nodes
// can run in one process (tests) without sharing counters.
type metrics struct {
	reg                *prometheus.Registry
	duties             *prometheus.CounterVec
	stepSeconds        *prometheus.HistogramVec
	slashingRefusals   *prometheus.CounterVec
	partials           *prometheus.CounterVec
	partialsSent       prometheus.Counter
	submitted          *prometheus.CounterVec
	raftRole, raftTerm prometheus.Gauge
	peersConnected     prometheus.Gauge
	halted             prometheus.Gauge
	leaderChanges      prometheus.Counter
	reorgs             prometheus.Counter
	applyLag           prometheus.Gauge
	peerRTT            *prometheus.GaugeVec
	dutiesExpected     *prometheus.CounterVec
	doppelgangers      prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		duties: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dvmesh_duties_total", Help: "Duties this node finished, by type, result and failure reason.",
		}, []string{"type", "result", "reason"}),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dvmesh_duty_step_seconds", Help: "Time from slot start to the end of each pipeline step.",
			Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 4, 6, 8, 12},
		}, []string{"type", "step"}),
		slashingRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dvmesh_slashing_refusals_total", Help: "Signings the slashing-protection DB refused, by rule.",
		}, []string{"rule"}),
		partials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dvmesh_partials_received_total", Help: "Partial signatures received from peers, by verdict; own_dropped counts this node's own partials that did not combine (a wrong key share).",
		}, []string{"result"}),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dvmesh_submissions_total", Help: "Signed messages submitted to the beacon node, by type and result.",
		}, []string{"type", "result"}),
		raftRole: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dvmesh_raft_leader", Help: "1 when this node is the Raft leader.",
		}),
		raftTerm: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dvmesh_raft_term", Help: "Current Raft term.",
		}),
		peersConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dvmesh_peers_connected", Help: "Cluster peers with an open libp2p connection.",
		}),
		halted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dvmesh_signing_halted", Help: "1 when this node stopped signing (its identity runs in two processes).",
		}),
	}
	m.doppelgangers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dvmesh_doppelgangers_detected_total", Help: "Validators refused because the beacon node saw them live while this cluster did not sign.",
	})
	m.partialsSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dvmesh_partials_signed_total", Help: "Partial signatures this node made (after its slashing DB recorded them).",
	})
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dvmesh_raft_leader_changes_total", Help: "Raft leader changes this node observed.",
	})
	m.applyLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dvmesh_raft_apply_lag", Help: "Committed Raft entries this node has not applied yet.",
	})
	m.peerRTT = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dvmesh_p2p_rtt_seconds", Help: "Round-trip time of a libp2p ping to each peer (share index).",
	}, []string{"peer"})
	m.dutiesExpected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dvmesh_duties_expected_total", Help: "Validator duties scheduled on this node, by type.",
	}, []string{"type"})
	m.reorgs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dvmesh_reorg_duty_refetches_total", Help: "Head events whose duty dependent roots changed, so duties were fetched again.",
	})
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dvmesh_go_heap_live_bytes", Help: "Go heap live after the last garbage collection (runtime/metrics /gc/heap/live:bytes): flat over time unless memory leaks.",
	}, heapLive))
	m.reg.MustRegister(m.reorgs, m.leaderChanges, m.applyLag, m.peerRTT, m.dutiesExpected, m.halted, m.partialsSent, m.doppelgangers, m.duties, m.stepSeconds, m.slashingRefusals, m.partials, m.submitted,
		m.raftRole, m.raftTerm, m.peersConnected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// beaconCollector exports the redundant beacon client's per-node health at each scrape.
type beaconCollector struct {
	stats                func() []BeaconStat
	up, errors, duration *prometheus.Desc
}

func newBeaconCollector(stats func() []BeaconStat) *beaconCollector {
	return &beaconCollector{
		stats:    stats,
		up:       prometheus.NewDesc("dvmesh_beacon_node_up", "1 when the beacon node is healthy (answering, synced, not behind).", []string{"url"}, nil),
		errors:   prometheus.NewDesc("dvmesh_beacon_node_errors_total", "Failed requests to the beacon node.", []string{"url"}, nil),
		duration: prometheus.NewDesc("dvmesh_beacon_node_latency_seconds", "Latency of the beacon node's last answer.", []string{"url"}, nil),
	}
}

func (c *beaconCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.errors
	ch <- c.duration
}

func (c *beaconCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		up := 0.0
		if s.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.URL)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors), s.URL)
		ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, s.LastLatency.Seconds(), s.URL)
	}
}

// heapLive reads the heap marked live by the last GC.
func heapLive() float64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
}
