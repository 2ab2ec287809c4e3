package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/p2p"
)

func init() {
	extraCommands = append(extraCommands, newCreateDefinitionCmd, newSignDefinitionCmd, newCreateP2PKeyCmd)
}

// genesisForkVersion returns the genesis fork version of a network: the built-in one for public
// networks (an override must agree with it), the override for devnet, where it is required.
func genesisForkVersion(name, override string) (string, error) {
	c, err := network.ByName(name)
	if err != nil {
		return "", err
	}
	if !c.Public {
		if override == "" {
			return "", fmt.Errorf("network %s: give its --genesis-fork-version", c.Name)
		}
		b, err := lock.DecodeHex(override, 4)
		if err != nil {
			return "", fmt.Errorf("--genesis-fork-version %q: %w", override, err)
		}
		return fmt.Sprintf("%#x", b), nil
	}
	v := fmt.Sprintf("%#x", c.GenesisForkVersion[:])
	if override != "" && !strings.EqualFold(override, v) {
		return "", fmt.Errorf("--genesis-fork-version %s is not %s's (%s): leave it out, or use network devnet", override, c.Name, v)
	}
	return v, nil
}

type createDefinitionOpts struct {
	lock.DefinitionOptions
	nodes     int
	operators []string
	out       string
}

func newCreateDefinitionCmd() *cobra.Command {
	var o createDefinitionOpts
	cmd := &cobra.Command{
		Use:   "create-definition",
		Short: "Write a cluster definition for a DKG ceremony (no keys are made)",
		Long: `create-definition writes the cluster definition the operators of a new cluster agree on
before a DKG ceremony: the operators (libp2p identity and address, in share-index order), the
threshold, the number of validators, the network, the withdrawal address and fee recipient. It
gets a random UUID and a timestamp, so no two ceremonies share a hash.

Give each operator as --operator <peer-id>@<multiaddr> or --operator <multiaddr>/p2p/<peer-id>,
e.g. --operator 12D3KooW...@/ip4/203.0.113.7/tcp/3610 (an operator gets its peer ID from
'dvmesh create-p2p-key'). Then every operator runs 'dvmesh sign-definition' on it; the
ceremony ('dvmesh dkg') starts only from a definition every operator signed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return createDefinition(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "cluster name")
	f.IntVar(&o.nodes, "nodes", 4, "number of operators (one --operator each)")
	f.IntVar(&o.Threshold, "threshold", 3, "partial signatures needed to sign; must exceed nodes/2, and be at least ceil(2*nodes/3) unless --force-threshold")
	f.BoolVar(&o.ForceThreshold, "force-threshold", false, "accept a threshold below ceil(2n/3): one faulty node in the quorum overlap could then cause a slashing")
	f.IntVar(&o.Validators, "validators", 1, "number of distributed validators")
	f.StringVar(&o.Network, "network", "mainnet", "network: "+strings.Join(network.Names(), ", "))
	f.StringVar(&o.GenesisForkVersion, "genesis-fork-version", "", "genesis fork version (required for devnet; must match for the others)")
	f.StringVar(&o.WithdrawalAddress, "withdrawal-address", "", "0x execution address that receives the validators' withdrawals")
	f.StringVar(&o.FeeRecipient, "fee-recipient", "", "0x execution address that receives the block rewards")
	f.BoolVar(&o.Compounding, "compounding", false, "0x02 (compounding) withdrawal credentials instead of 0x01")
	f.StringArrayVar(&o.operators, "operator", nil, "operator as <peer-id>@<multiaddr> or <multiaddr>/p2p/<peer-id>; once per node, in share-index order")
	f.StringVar(&o.out, "out", "cluster-definition.json", "output file (must not exist)")
	return cmd
}

func createDefinition(out io.Writer, o createDefinitionOpts) error {
	if o.Name == "" {
		return errors.New("--name is required")
	}
	if len(o.operators) != o.nodes {
		return fmt.Errorf("%d --operator flags for --nodes %d: give one per operator, in share-index order", len(o.operators), o.nodes)
	}
	for _, s := range o.operators {
		op, err := lock.ParseOperator(s)
		if err != nil {
			return err
		}
		o.Operators = append(o.Operators, op)
	}
	gfv, err := genesisForkVersion(o.Network, o.GenesisForkVersion)
	if err != nil {
		return err
	}
	o.GenesisForkVersion = gfv
	if c, err := network.ByName(o.Network); err == nil {
		o.Network = c.Name // canonical spelling: it is part of the hash
	}
	if _, err := os.Stat(o.out); err == nil {
		return fmt.Errorf("%s already exists: refusing to overwrite a definition", o.out)
	}
	d, err := lock.NewDefinition(o.DefinitionOptions)
	if err != nil {
		return err
	}
	if err := d.Save(o.out); err != nil {
		return err
	}
	fmt.Fprintf(out, "Wrote %s: definition %s\n", o.out, d.DefinitionHash)
	printDefinition(out, d)
	fmt.Fprintln(out, "Next: every operator runs: dvmesh sign-definition --definition "+o.out+" --p2p-key <its p2p-key>")
	return nil
}

// printDefinition shows what an operator approves by signing.
func printDefinition(out io.Writer, d *lock.Definition) {
	creds := "0x01"
	if d.Compounding {
		creds = "0x02 (compounding)"
	}
	fmt.Fprintf(out, "  name %q, network %s (genesis fork version %s), created %s, uuid %s\n", d.Name, d.Network, d.GenesisForkVersion, d.CreatedAt, d.UUID)
	fmt.Fprintf(out, "  %d validators, threshold %d of %d, %d gwei deposits each\n", d.NumValidators, d.Threshold, len(d.Operators), d.DepositAmountGwei)
	fmt.Fprintf(out, "  withdrawal address %s (%s credentials), fee recipient %s\n", d.WithdrawalAddress, creds, d.FeeRecipient)
	for i, op := range d.Operators {
		signed := "not signed"
		if op.Signature != "" {
			signed = "signed"
		}
		fmt.Fprintf(out, "  operator %d: %s at %s (%s)\n", i+1, op.PeerID, op.Address, signed)
	}
}

func newSignDefinitionCmd() *cobra.Command {
	var path, keyPath string
	var merge []string
	cmd := &cobra.Command{
		Use:   "sign-definition",
		Short: "Add this operator's signature (its libp2p key) to a cluster definition",
		Long: `sign-definition checks a cluster definition, prints what it says, and adds the signature
of the operator whose libp2p identity key --p2p-key is, over the definition hash. The file is
rewritten in place. Operators may sign in turn, or each sign a copy and merge them with --merge.
Changing any field of the definition afterwards breaks every signature.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return signDefinition(cmd.OutOrStdout(), path, keyPath, merge)
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "definition", "cluster-definition.json", "cluster definition to sign (rewritten)")
	f.StringVar(&keyPath, "p2p-key", "", "this operator's libp2p identity key file (empty: only merge)")
	f.StringSliceVar(&merge, "merge", nil, "other signed copies of the same definition whose signatures to add")
	return cmd
}

func signDefinition(out io.Writer, path, keyPath string, merge []string) error {
	d, err := lock.LoadDefinition(path)
	if err != nil {
		return err
	}
	for _, m := range merge {
		other, err := lock.LoadDefinition(m)
		if err != nil {
			return err
		}
		if err := d.MergeSignatures(other); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	if keyPath == "" && len(merge) == 0 {
		return errors.New("give --p2p-key to sign, or --merge to add other copies' signatures")
	}
	if keyPath != "" {
		key, err := p2p.LoadKey(keyPath)
		if err != nil {
			return err
		}
		if err := d.Sign(key); err != nil {
			return err
		}
		id, _ := peer.IDFromPrivateKey(key)
		idx, _ := d.OperatorIndex(id)
		fmt.Fprintf(out, "Signed definition %s as operator %d (%s)\n", d.DefinitionHash, idx, id)
	}
	if err := d.Save(path); err != nil {
		return err
	}
	printDefinition(out, d)
	if err := d.VerifyAllSigned(); err != nil {
		fmt.Fprintf(out, "Not ready for the ceremony yet: %v\n", err)
		return nil
	}
	fmt.Fprintf(out, "Every operator signed: each runs: dvmesh dkg --definition %s --p2p-key <its p2p-key> --data-dir <node folder>\n", path)
	return nil
}

func newCreateP2PKeyCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "create-p2p-key",
		Short: "Create this operator's libp2p identity key (if absent) and print its peer ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return createP2PKey(cmd.OutOrStdout(), path)
		},
	}
	cmd.Flags().StringVar(&path, "out", "p2p-key", "key file; an existing one is kept and its peer ID printed")
	return cmd
}

func createP2PKey(out io.Writer, path string) error {
	key, err := p2p.LoadKey(path)
	switch {
	case err == nil:
		id, _ := peer.IDFromPrivateKey(key)
		fmt.Fprintf(out, "%s exists (kept): peer ID %s\n", path, id)
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	key, err = p2p.GenerateKey()
	if err != nil {
		return err
	}
	if err := p2p.SaveKey(path, key); err != nil {
		return err
	}
	id, _ := peer.IDFromPrivateKey(key)
	fmt.Fprintf(out, "Wrote %s: peer ID %s (give it with your address to the cluster's creator: %s@/ip4/<ip>/tcp/<port>)\n", path, id, id)
	return nil
}
