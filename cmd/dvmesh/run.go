package main

import (
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/node"
)

func newRunCmd() *cobra.Command {
	var (
		cfg                          node.Config
		logLevel, logFmt, configPath string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one cluster node",
		Long: `run runs one node of a cluster. Every setting is a flag, an environment variable
(DVMESH_ and the flag name in capitals with underscores, e.g. DVMESH_BEACON_URL) or a key of the
YAML file given with --config (the flag name, e.g. "beacon-url: http://..."); flags beat the
environment, which beats the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applySettings(cmd, configPath); err != nil {
				return err
			}
			log, err := newLogger(logLevel, logFmt)
			if err != nil {
				return err
			}
			cfg.Logger = log
			return node.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML config file (keys are these flag names)")
	f.StringVar(&cfg.NodeDir, "node-dir", "", "node folder written by create-cluster (default for the lock, p2p key, keys and data)")
	f.StringVar(&cfg.LockFile, "lock-file", "", "cluster lock (default <node-dir>/cluster-lock.json)")
	f.StringVar(&cfg.P2PKeyFile, "p2p-key", "", "libp2p identity key (default <node-dir>/p2p-key)")
	f.StringVar(&cfg.KeysDir, "keys-dir", "", "EIP-2335 key share keystores and password.txt (default <node-dir>/validator_keys)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "Raft log and slashing-protection DB (default <node-dir>/data)")
	f.StringSliceVar(&cfg.BeaconURLs, "beacon-url", nil, "beacon node API URL; repeat or comma-separate for redundant beacon nodes (ideally different clients)")
	f.StringVar(&cfg.P2PListen, "p2p-listen", "", "libp2p listen multiaddr (default: this operator's address in the lock)")
	f.StringVar(&cfg.MonitoringAddr, "monitoring-addr", "127.0.0.1:3620", "address for /metrics, /readyz and /status (empty disables)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:3630", "loopback address of the admin endpoint 'dvmesh exit' talks to (empty disables)")
	f.DurationVar(&cfg.BeaconTimeout, "beacon-timeout", 0, "beacon node request timeout (default 10s)")
	f.IntVar(&cfg.DoppelgangerEpochs, "doppelganger-epochs", node.DefaultDoppelgangerEpochs, "epochs a cold start watches for another signer before signing (-1 disables)")
	f.Uint64Var(&cfg.SlashingKeepEpochs, "slashing-keep-epochs", node.DefaultSlashingKeepEpochs, "epochs of signing history kept in full (older: watermarks)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFmt, "log-format", "text", "text or json")
	return cmd
}
