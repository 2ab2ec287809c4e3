package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

func init() { extraCommands = append(extraCommands, newCombineCmd) }

func newCombineCmd() *cobra.Command {
	var o node.CombineOptions
	cmd := &cobra.Command{
		Use:   "combine",
		Short: "Rebuild the whole validator keys from any threshold of node folders (to leave the cluster)",
		Long: `combine rebuilds every validator key of a cluster from the key shares of at least threshold
stopped nodes, checks each rebuilt key against the lock's group key, and writes EIP-2335
keystores (keystore-N.json, each with a fresh password in keystore-N.txt) and, beside them,
slashing-protection.json: the EIP-3076 union of everything the chosen nodes' slashing DBs
recorded (<node folder>/data/slashing.db, which must exist for every chosen node).

Import that interchange into the validator client that takes the keys BEFORE it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ClusterDir == "" {
				return fmt.Errorf("--cluster is required: the directory create-cluster wrote (with node1, node2, ... inside)")
			}
			res, err := node.Combine(o)
			if err != nil {
				return err
			}
			printCombined(cmd.OutOrStdout(), o, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ClusterDir, "cluster", "", "cluster directory holding the node folders")
	f.StringVar(&o.OutDir, "out", "./combined-keys", "output directory for the keystores and the history (must not exist)")
	f.StringSliceVar(&o.Nodes, "nodes", nil, "node folders to use, comma-separated, e.g. node1,node3,node4 (default: every node folder found)")
	f.StringVar(&o.KDF, "keystore-kdf", signing.KDFPBKDF2, "EIP-2335 KDF of the written keystores: pbkdf2 or scrypt")
	return cmd
}

func printCombined(out io.Writer, o node.CombineOptions, res *node.Combined) {
	bar := strings.Repeat("!", 78)
	fmt.Fprintln(out, bar)
	fmt.Fprintln(out, "!! WARNING: these are the WHOLE validator keys. Never run them anywhere a validator with these keys")
	fmt.Fprintln(out, "!! might still sign: not beside any node of this cluster, not beside another validator client.")
	fmt.Fprintln(out, "!! Two signers of one key get it slashed. Stop every node of the cluster for good first, import")
	fmt.Fprintln(out, "!! the slashing-protection history below into the new validator client before it starts, and keep")
	fmt.Fprintln(out, "!! its doppelganger protection on.")
	fmt.Fprintln(out, bar)
	fmt.Fprintf(out, "Rebuilt %d validator keys of cluster %q from %s (threshold %d); each equals its group key in the lock.\n",
		res.Validators, res.Lock.Name, strings.Join(res.Nodes, ", "), res.Lock.Threshold)
	for i, ks := range res.Keystores {
		if i == 10 {
			fmt.Fprintf(out, "  ... and %d more in %s\n", len(res.Keystores)-10, o.OutDir)
			break
		}
		fmt.Fprintf(out, "  %s  (validator %s)\n", ks, res.Lock.Validators[i].GroupPubkey)
	}
	fmt.Fprintf(out, "Slashing-protection history (EIP-3076, union of the nodes' DBs: %d attestations, %d blocks): %s\n",
		res.Attestations, res.Blocks, res.Interchange)
}
