package consensus

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestConfigValidation(t *testing.T) {
	valid := func() Config {
		_, tr := raft.NewInmemTransport("a")
		return Config{
			ID:           "a",
			Peers:        []raft.Server{{ID: "a", Address: "a"}, {ID: "b", Address: "b"}},
			DataDir:      t.TempDir(),
			Transport:    tr,
			SlotDuration: time.Second,
		}
	}
	cases := []struct {
		name  string
		field string
		edit  func(*Config)
	}{
		{"missing ID", "ID", func(c *Config) { c.ID = "" }},
		{"no peers", "Peers", func(c *Config) { c.Peers = nil }},
		{"self not in peers", "ID", func(c *Config) { c.ID = "z" }},
		{"peer without address", "Peers[1].Address", func(c *Config) { c.Peers[1].Address = "" }},
		{"duplicate peer", "Peers[1].ID", func(c *Config) { c.Peers[1].ID = "a" }},
		{"empty DataDir", "DataDir", func(c *Config) { c.DataDir = "" }},
		{"nil Transport", "Transport", func(c *Config) { c.Transport = nil }},
		{"zero SlotDuration", "SlotDuration", func(c *Config) { c.SlotDuration = 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			n, err := New(cfg)
			if err == nil {
				_ = n.Shutdown()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestRaftTimings(t *testing.T) {
	for _, tc := range []struct {
		slot, hb time.Duration
	}{
		{100 * time.Millisecond, 50 * time.Millisecond},
		{2 * time.Second, 300 * time.Millisecond},
		{12 * time.Second, time.Second},
	} {
		c := raftConfig(Config{ID: "a", SlotDuration: tc.slot}, newHCLogger(testLogger(t)))
		if c.HeartbeatTimeout != tc.hb || c.ElectionTimeout != tc.hb || c.LeaderLeaseTimeout != tc.hb/2 {
			t.Errorf("slot %s: heartbeat %s election %s lease %s", tc.slot, c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
		}
		if err := raft.ValidateConfig(c); err != nil {
			t.Errorf("slot %s: %v", tc.slot, err)
		}
	}
}

func TestSecondOpenOfDataDirFails(t *testing.T) {
	c := newCluster(t, 1)
	c.leader()
	_, tr := raft.NewInmemTransport("x")
	_, err := New(Config{ID: c.ids[0], Peers: c.peers(), DataDir: c.dirs[0], Transport: tr, SlotDuration: testSlot})
	if err == nil {
		t.Fatal("second New on the same DataDir succeeded")
	}
}
