package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/dkg"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/p2p"
	"github.com/dvmesh/dvmesh/signing"
)

func init() {
	extraCommands = append(extraCommands, newDKGCmd)
}

type dkgOpts struct {
	definition, p2pKey, dataDir, listen, kdf, logLevel, logFormat string
	startTimeout, roundTimeout                                    time.Duration
}

func newDKGCmd() *cobra.Command {
	var o dkgOpts
	cmd := &cobra.Command{
		Use:   "dkg",
		Short: "Take part in a DKG ceremony: create the cluster's keys with no machine ever holding one whole",
		Long: `dkg runs this operator's part of a distributed key generation ceremony for a cluster
definition every operator signed. Every operator runs it at about the same time; the nodes
connect over libp2p (only the definition's operators are admitted) and run Feldman verifiable
secret sharing for all validators. Each operator ends with its own key shares (EIP-2335
keystores), the cluster lock (identical everywhere, signed by every operator) and the deposit
data, written to --data-dir: the folder 'dvmesh run --node-dir' takes.

Any fault aborts the ceremony and names the operator and why: an operator offline (after
--start-timeout), a share that does not match its dealer's commitments, a dealer that showed
different commitments to different operators. A failed ceremony leaves nothing behind; fix the
cause and everyone runs it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.logLevel, o.logFormat)
			if err != nil {
				return err
			}
			def, err := lock.LoadDefinition(o.definition)
			if err != nil {
				return err
			}
			key, err := p2p.LoadKey(o.p2pKey)
			if err != nil {
				return err
			}
			res, err := dkg.RunNode(cmd.Context(), dkg.NodeConfig{
				Definition: def, Key: key, DataDir: o.dataDir, Listen: o.listen,
				StartTimeout: o.startTimeout, RoundTimeout: o.roundTimeout, KDF: o.kdf, Log: log,
			})
			if err != nil {
				return err
			}
			printDKGResult(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.definition, "definition", "cluster-definition.json", "cluster definition signed by every operator")
	f.StringVar(&o.p2pKey, "p2p-key", "", "this operator's libp2p identity key (the one it signed the definition with)")
	f.StringVar(&o.dataDir, "data-dir", "", "node folder to write (must not exist or be empty)")
	f.StringVar(&o.listen, "p2p-listen", "", "libp2p listen multiaddr (default: this operator's address in the definition)")
	f.DurationVar(&o.startTimeout, "start-timeout", dkg.DefaultStartTimeout, "how long to wait for every operator to come online")
	f.DurationVar(&o.roundTimeout, "round-timeout", 0, "timeout of each later round (default 1m + 100ms per validator)")
	f.StringVar(&o.kdf, "keystore-kdf", signing.KDFPBKDF2, "EIP-2335 KDF of the keystores: pbkdf2 or scrypt")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	_ = cmd.MarkFlagRequired("p2p-key")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func printDKGResult(out io.Writer, res *dkg.NodeResult) {
	l := res.Lock
	fmt.Fprintf(out, "DKG complete: operator %d of %d, threshold %d, %d validators\n", res.Index, len(l.Operators), l.Threshold, len(l.Validators))
	fmt.Fprintf(out, "  cluster lock %s (definition %s), approved by every operator\n", l.Hash, l.DefinitionHash)
	fmt.Fprintf(out, "  node folder %s; deposit data %s\n", res.DataDir, res.DepositFile)
	for i, v := range l.Validators {
		if i == 10 {
			fmt.Fprintf(out, "  ... and %d more validators (see the lock)\n", len(l.Validators)-10)
			break
		}
		fmt.Fprintf(out, "  validator %s\n", v.GroupPubkey)
	}
	fmt.Fprintf(out, "Start the node with: dvmesh run --node-dir %s --beacon-url <url>\n", res.DataDir)
}
