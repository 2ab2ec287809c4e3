package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

func newCreateClusterCmd() *cobra.Command {
	o := node.CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create-cluster",
		Short: "Split fresh validator keys into shares and write one folder per node",
		Long: `create-cluster generates validator keys, splits each with Shamir sharing over BLS12-381
into one share per node (any --threshold of them sign; fewer learn nothing), and writes for every
node: its keystores (EIP-2335) and password file, its libp2p identity and the cluster lock.

The keys exist whole in this process for a moment: use it for test clusters and local setups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			started := time.Now()
			o.Progress = func(done, total int) {
				if done%max(1, total/20) != 0 && done != total {
					return
				}
				elapsed := time.Since(started)
				eta := time.Duration(float64(elapsed) / float64(done) * float64(total-done))
				fmt.Fprintf(cmd.ErrOrStderr(), "keystores: %d/%d written, %s elapsed, about %s left\n",
					done, total, elapsed.Round(time.Second), eta.Round(time.Second))
			}
			l, err := node.CreateCluster(o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created cluster %q in %s: %d nodes, threshold %d, %d validators\n",
				l.Name, o.OutDir, o.Nodes, o.Threshold, len(l.Validators))
			for i, op := range l.Operators {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s  peer %s  %s\n", node.NodeDirName(i+1), op.PeerID, op.Address)
			}
			for i, v := range l.Validators {
				if i == 10 {
					fmt.Fprintf(cmd.OutOrStdout(), "  ... and %d more validators (see cluster-lock.json)\n", len(l.Validators)-10)
					break
				}
				fmt.Fprintf(cmd.OutOrStdout(), "  validator %s\n", v.GroupPubkey)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "dvmesh-local", "cluster name")
	f.IntVar(&o.Nodes, "nodes", 4, "number of nodes (operators)")
	f.IntVar(&o.Threshold, "threshold", 3, "partial signatures needed to sign; must exceed nodes/2, and be at least ceil(2*nodes/3) unless --force-threshold")
	f.IntVar(&o.Validators, "validators", 1, "number of distributed validators")
	f.StringVar(&o.OutDir, "out", "./cluster", "output directory (must not exist)")
	f.BoolVar(&o.ForceThreshold, "force-threshold", false, "accept a threshold below ceil(2n/3): one faulty node in the quorum overlap could then cause a slashing")
	f.StringVar(&o.Host, "p2p-host", "127.0.0.1", "IP address the nodes listen on")
	f.IntVar(&o.BasePort, "p2p-base-port", 3610, "TCP port of node 1; node i uses base+i-1")
	f.StringVar(&o.Network, "network", "simnet", "network name recorded in the lock")
	f.StringVar(&o.GenesisForkVersion, "genesis-fork-version", "0x10000000", "genesis fork version of the network (nodes refuse beacon nodes of another network)")
	f.StringVar(&o.KDF, "keystore-kdf", signing.KDFPBKDF2, "EIP-2335 KDF: pbkdf2 (~50 ms per keystore here) or scrypt (~0.7 s and 256 MiB each, costlier to brute-force)")
	f.StringSliceVar(&o.P2PAddrs, "p2p-addrs", nil, "libp2p multiaddr of each node, comma-separated (overrides --p2p-host and --p2p-base-port)")
	return cmd
}
