package node

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestConfig_ValidationNamesTheSetting(t *testing.T) {
	dir, _ := createTestCluster(t, 1)
	nd := filepath.Join(dir, NodeDirName(1))
	good := func() Config { return Config{NodeDir: nd, BeaconURLs: []string{"http://127.0.0.1:5052"}} }
	cases := map[string]struct {
		mutate func(c *Config)
		want   string
	}{
		"no node dir or paths": {func(c *Config) { *c = Config{BeaconURLs: c.BeaconURLs} }, "lock-file is not set"},
		"missing lock":         {func(c *Config) { c.LockFile = filepath.Join(dir, "nope.json") }, "setting lock-file"},
		"missing keys":         {func(c *Config) { c.KeysDir = filepath.Join(dir, "nope") }, "setting keys-dir"},
		"no beacon":            {func(c *Config) { c.BeaconURLs = nil }, "beacon-url is not set"},
		"beacon not a URL":     {func(c *Config) { c.BeaconURLs = []string{"127.0.0.1:5052"} }, "setting beacon-url"},
		"bad listen":           {func(c *Config) { c.P2PListen = "0.0.0.0:3610" }, "setting p2p-listen"},
		"bad monitoring":       {func(c *Config) { c.MonitoringAddr = "3620" }, "setting monitoring-addr"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := good()
			c.mutate(&cfg)
			err := cfg.setDefaults()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	cfg := good()
	if err := cfg.setDefaults(); err != nil {
		t.Fatalf("good config: %v", err)
	}
}
