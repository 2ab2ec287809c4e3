package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/herumi/bls-eth-go-binary/bls"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

// devnetGenesisForkVersion is the genesis fork version a devnet gets when none is given: the
// simulated beacon node's.
const devnetGenesisForkVersion = "0x10000000"

// createFlags are create-cluster's flags beyond node.CreateOptions.
type createFlags struct {
	depositAmount      uint64
	noDeposits         bool
	existingDir        string
	existingPassword   string
	quarantineExisting bool
	feeRecipient       string
	builder            bool
	builderBoost       uint64
	gasLimit           uint64
	interop            string
}

func newCreateClusterCmd() *cobra.Command {
	o := node.CreateOptions{}
	var cf createFlags
	cmd := &cobra.Command{
		Use:   "create-cluster",
		Short: "Split fresh (or existing) validator keys into shares and write one folder per node",
		Long: `create-cluster generates validator keys, splits each with Shamir sharing over BLS12-381
into one share per node (any --threshold of them sign; fewer learn nothing), and writes for every
node: its keystores (EIP-2335) and password file, its libp2p identity and the cluster lock.

--network mainnet|hoodi|sepolia takes the genesis fork version and genesis validators root from
dvmesh's built-in configs; --network devnet takes --genesis-fork-version (default 0x10000000).

With --withdrawal-address, the shares sign each validator's deposit, the partial signatures are
combined and verified, and deposit-data-<time>.json (staking launchpad format) is written in the
cluster directory and every node folder. A public network needs --withdrawal-address or
--no-deposits.

--split-existing-keys DIR splits the keys of existing EIP-2335 keystores (DIR/keystore-*.json;
each one's password in keystore-*.txt beside it, or one --split-existing-keys-password-file for
all) instead of generating keys, and prints the steps that keep the old validator from ever
signing beside the cluster.

--interop-validators A-B (test chains only: refused for every public network) splits the chain's
interop validators A..B (inclusive) instead of generating keys: validator i's secret key is
SHA-256 of i as a 32-byte little-endian integer, read little-endian, mod the curve order, as
Prysm's and Lighthouse's interop genesis tools make them. No deposit data is written (they are in
the genesis state). The lock's genesis validators root stays empty on a devnet: every node reads
it from its beacon node at start (and binds its slashing DB to it).

The keys exist whole in this process for a moment: use it for test clusters and local setups, or
on an offline machine; for keys no machine ever holds, use a DKG.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCreateCluster(cmd, o, cf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "dvmesh-local", "cluster name")
	f.IntVar(&o.Nodes, "nodes", 4, "number of nodes (operators)")
	f.IntVar(&o.Threshold, "threshold", 3, "partial signatures needed to sign; must exceed nodes/2, and be at least ceil(2*nodes/3) unless --force-threshold")
	f.IntVar(&o.Validators, "validators", 1, "number of distributed validators (with --split-existing-keys: one per keystore)")
	f.StringVar(&o.OutDir, "out", "./cluster", "output directory (must not exist)")
	f.BoolVar(&o.ForceThreshold, "force-threshold", false, "accept a threshold below ceil(2n/3): one faulty node in the quorum overlap could then cause a slashing")
	f.StringVar(&o.Host, "p2p-host", "127.0.0.1", "IP address the nodes listen on")
	f.IntVar(&o.BasePort, "p2p-base-port", 3610, "TCP port of node 1; node i uses base+i-1")
	f.StringVar(&o.Network, "network", network.Devnet, "network: "+strings.Join(network.Names(), ", "))
	f.StringVar(&o.GenesisForkVersion, "genesis-fork-version", "", "genesis fork version of a devnet (default "+devnetGenesisForkVersion+"); public networks have their own")
	f.StringVar(&o.KDF, "keystore-kdf", signing.KDFPBKDF2, "EIP-2335 KDF: pbkdf2 (~50 ms per keystore here) or scrypt (~0.7 s and 256 MiB each, costlier to brute-force)")
	f.StringSliceVar(&o.P2PAddrs, "p2p-addrs", nil, "libp2p multiaddr of each node, comma-separated (overrides --p2p-host and --p2p-base-port)")
	f.StringVar(&o.WithdrawalAddress, "withdrawal-address", "", "0x execution address for withdrawals: writes deposit data for every validator")
	f.BoolVar(&o.Compounding, "compounding", false, "0x02 compounding withdrawal credentials (effective balance up to 2048 ETH) instead of 0x01")
	f.Uint64Var(&cf.depositAmount, "deposit-amount-gwei", uint64(deposit.ActivationAmount), "amount of each deposit in gwei")
	f.BoolVar(&o.AllowPartialDeposit, "allow-partial-deposit", false, "accept a deposit below 32 ETH (the validator activates only after top-ups)")
	f.BoolVar(&cf.noDeposits, "no-deposits", false, "write no deposit data on a public network (the keys can then only be deposited after 'dvmesh combine')")
	f.StringVar(&cf.existingDir, "split-existing-keys", "", "split the keys of the EIP-2335 keystores DIR/keystore-*.json instead of generating keys")
	f.StringVar(&cf.existingPassword, "split-existing-keys-password-file", "", "one password file for all existing keystores (default: keystore-X.txt beside each keystore-X.json)")
	f.StringVar(&cf.feeRecipient, "fee-recipient", "", "0x execution address that receives every proposal's fees (required to propose blocks)")
	f.BoolVar(&cf.builder, "builder", false, "use MEV-boost builders: sign validator registrations and ask for builder blocks")
	f.Uint64Var(&cf.builderBoost, "builder-boost-factor", 100, "with --builder: weight of the builder payload's value against the local one, in percent")
	f.Uint64Var(&cf.gasLimit, "gas-limit", 60_000_000, "with --builder: gas limit in the validator registrations")
	f.StringVar(&cf.interop, "interop-validators", "", "devnet only: split interop validators A-B (inclusive, e.g. 16-63) of a test chain instead of generating keys")
	f.BoolVar(&cf.quarantineExisting, "quarantine-source", false, "after creating the cluster, move the existing keystores (and their own password files) into <out>/"+node.QuarantineDirName)
	return cmd
}

func runCreateCluster(cmd *cobra.Command, o node.CreateOptions, cf createFlags) error {
	out := cmd.OutOrStdout()
	o.DepositAmount = phase0.Gwei(cf.depositAmount)
	if cf.feeRecipient != "" {
		o.Proposals = &lock.ProposalSettings{FeeRecipient: cf.feeRecipient, Builder: cf.builder, BuilderBoostFactor: cf.builderBoost,
			GasLimit: cf.gasLimit, RegistrationTimestamp: uint64(time.Now().Unix())}
		if _, err := o.Proposals.FeeRecipientAddress(); err != nil {
			return fmt.Errorf("--fee-recipient: %w", err)
		}
	} else {
		if cf.builder {
			return errors.New("--builder needs --fee-recipient")
		}
		fmt.Fprintln(out, "Warning: no --fee-recipient: this cluster's validators cannot propose blocks (recreate the cluster with one)")
	}
	if err := checkCreateFlags(cmd, &o, cf); err != nil {
		return err
	}
	var existing []node.ExistingKey
	if cf.existingDir != "" {
		var err error
		if existing, err = node.LoadExistingKeys(cf.existingDir, cf.existingPassword); err != nil {
			return err
		}
		for _, k := range existing {
			o.ExistingKeys = append(o.ExistingKeys, k.Key)
		}
		if !cmd.Flags().Changed("validators") {
			o.Validators = 0
		}
	}
	if cf.interop != "" {
		keys, first, err := interopKeys(o.Network, cf.interop)
		if err != nil {
			return err
		}
		if cmd.Flags().Changed("validators") && o.Validators != len(keys) {
			return fmt.Errorf("--validators %d contradicts --interop-validators %s (%d validators): leave --validators out", o.Validators, cf.interop, len(keys))
		}
		o.ExistingKeys, o.Validators = keys, len(keys)
		fmt.Fprintf(out, "Splitting interop validators %d..%d (test-chain keys everyone knows)\n", first, first+uint64(len(keys))-1)
	}
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
	res, err := node.Create(o)
	if err != nil {
		return err
	}
	printCluster(out, o, res)
	if existing == nil {
		return nil
	}
	var qdir string
	if cf.quarantineExisting {
		if qdir, err = node.QuarantineSource(existing, o.OutDir, cf.existingPassword); err != nil {
			printFencing(out, o, res, existing, "")
			return fmt.Errorf("the cluster was created, but %w: move the remaining source keystores away by hand", err)
		}
	}
	printFencing(out, o, res, existing, qdir)
	return nil
}

// checkCreateFlags applies the flag rules that node.Create cannot know: deposit flags need an
// address, a public network needs deposit data or an explicit --no-deposits, and a devnet gets
// the default genesis fork version.
func checkCreateFlags(cmd *cobra.Command, o *node.CreateOptions, cf createFlags) error {
	cfg, err := network.ByName(o.Network)
	if err != nil {
		return err
	}
	if !cfg.Public && o.GenesisForkVersion == "" {
		o.GenesisForkVersion = devnetGenesisForkVersion
	}
	if cf.noDeposits && o.WithdrawalAddress != "" {
		return errors.New("--no-deposits and --withdrawal-address contradict each other: choose one")
	}
	if o.WithdrawalAddress == "" {
		for _, name := range []string{"compounding", "deposit-amount-gwei", "allow-partial-deposit"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s only applies to deposit data: give --withdrawal-address too", name)
			}
		}
	}
	if cf.interop != "" {
		if cf.existingDir != "" || cf.existingPassword != "" || cf.quarantineExisting {
			return errors.New("--interop-validators and --split-existing-keys contradict each other: choose one")
		}
		if o.WithdrawalAddress != "" || cf.noDeposits {
			return errors.New("--interop-validators: interop validators are in the chain's genesis state, so no deposit data is written; leave --withdrawal-address and --no-deposits out")
		}
		return nil
	}
	if cf.existingDir != "" {
		if o.WithdrawalAddress != "" {
			return errors.New("--split-existing-keys: existing keys are already deposited, so no deposit data is written; leave --withdrawal-address out")
		}
		return nil
	}
	if cf.existingPassword != "" || cf.quarantineExisting {
		return errors.New("--split-existing-keys-password-file and --quarantine-source need --split-existing-keys")
	}
	if cfg.Public && o.WithdrawalAddress == "" && !cf.noDeposits {
		return fmt.Errorf("a %s cluster needs its deposit data: give --withdrawal-address 0x... (where withdrawals go), "+
			"or --no-deposits if you will not deposit these validators from this machine", cfg.Name)
	}
	return nil
}

func printCluster(out io.Writer, o node.CreateOptions, res *node.Created) {
	l := res.Lock
	fmt.Fprintf(out, "Created cluster %q on %s in %s: %d nodes, threshold %d, %d validators\n",
		l.Name, l.Network, o.OutDir, o.Nodes, o.Threshold, len(l.Validators))
	for i, op := range l.Operators {
		fmt.Fprintf(out, "  %s  peer %s  %s\n", node.NodeDirName(i+1), op.PeerID, op.Address)
	}
	for i, v := range l.Validators {
		if i == 10 {
			fmt.Fprintf(out, "  ... and %d more validators (see cluster-lock.json)\n", len(l.Validators)-10)
			break
		}
		fmt.Fprintf(out, "  validator %s\n", v.GroupPubkey)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(out, "WARNING: %s\n", w)
	}
	if res.DepositFile != "" {
		fmt.Fprintf(out, "Deposit data (signed by the shares, combined and verified): %s (a copy is in every node folder)\n", res.DepositFile)
		if cfg, err := network.ByName(l.Network); err == nil && cfg.Public {
			fmt.Fprintf(out, "  Check the withdrawal address in it before depositing; the %s deposit contract is %s.\n", cfg.Name, cfg.DepositContract)
		}
	}
}

// printFencing prints the steps that stop the old validator and the cluster from ever signing
// at the same time, and says which of them dvmesh checks.
func printFencing(out io.Writer, o node.CreateOptions, res *node.Created, existing []node.ExistingKey, qdir string) {
	fmt.Fprintf(out, "\nSplit %d existing keys: every group key in the lock equals its source keystore's public key.\n", len(existing))
	fmt.Fprintln(out, "No deposit data was written: these validators are already deposited.")
	fmt.Fprintln(out, "\nBefore the cluster signs, fence the old validator client, in this order:")
	fmt.Fprintln(out, "  1. Stop the old validator client for good (checked only as far as lock files go: a keystore with a")
	fmt.Fprintln(out, "     keystore-X.json.lock or keystore-X.lock beside it was refused; not every client writes them).")
	fmt.Fprintln(out, "  2. After it has stopped, export its slashing-protection history (EIP-3076 interchange), e.g. interchange.json,")
	fmt.Fprintln(out, "     and import it into every node's data directory:")
	for i := range res.Lock.Operators {
		fmt.Fprintf(out, "       dvmesh slashing import --data-dir %s interchange.json\n", filepath.Join(o.OutDir, node.NodeDirName(i+1), "data"))
	}
	fmt.Fprintln(out, "     (Checked: a node refuses to sign for a validator its slashing DB has never seen. The import also raises")
	fmt.Fprintln(out, "     the DB's watermarks to the wall clock's epoch and slot, so nothing at or before them is signed: on")
	fmt.Fprintln(out, "     mainnet, hoodi and sepolia by itself, on another chain with --genesis-time.)")
	if qdir != "" {
		fmt.Fprintf(out, "  3. Done: the source keystores were moved into %s; keep them offline or delete them.\n", qdir)
	} else {
		fmt.Fprintf(out, "  3. Delete the source keystores in %s, or move them where no validator client can load them\n", filepath.Dir(existing[0].Keystore))
		fmt.Fprintln(out, "     (--quarantine-source does it).")
	}
	fmt.Fprintf(out, "  4. Let the doppelganger check run: it is on by default (dvmesh run --doppelganger-epochs %d): a starting\n", node.DefaultDoppelgangerEpochs)
	fmt.Fprintln(out, "     node watches that long for another signer of its validators before it signs. Do not disable it now.")
	fmt.Fprintln(out, "  5. Start the nodes (dvmesh run --node-dir <node folder> --beacon-url ...).")
}

// maxInteropValidators bounds --interop-validators (keystores for a million keys is a typo).
const maxInteropValidators = 1 << 16

// interopKeys parses --interop-validators ("A-B" inclusive, or one index) and derives the keys.
// Interop keys are public knowledge, so every public network is refused.
func interopKeys(networkName, spec string) ([]*bls.SecretKey, uint64, error) {
	cfg, err := network.ByName(networkName)
	if err != nil {
		return nil, 0, err
	}
	if cfg.Public {
		return nil, 0, fmt.Errorf("--interop-validators is for test chains only: interop keys are public knowledge, "+
			"and %s is a public network (use --network devnet with the test chain's --genesis-fork-version)", cfg.Name)
	}
	first, last, err := parseRange(spec)
	if err != nil {
		return nil, 0, fmt.Errorf("--interop-validators %q: %w (want A-B, e.g. 16-63)", spec, err)
	}
	if last-first+1 > maxInteropValidators {
		return nil, 0, fmt.Errorf("--interop-validators %q: %d validators, at most %d", spec, last-first+1, maxInteropValidators)
	}
	keys := make([]*bls.SecretKey, 0, last-first+1)
	for i := first; i <= last; i++ {
		k, err := signing.InteropSecretKey(i)
		if err != nil {
			return nil, 0, err
		}
		keys = append(keys, k)
	}
	return keys, first, nil
}

// parseRange parses "A-B" (A <= B) or "A".
func parseRange(s string) (uint64, uint64, error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	first, err := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return 0, 0, errors.New("not a validator index")
	}
	last := first
	if isRange {
		if last, err = strconv.ParseUint(strings.TrimSpace(b), 10, 64); err != nil {
			return 0, 0, errors.New("not a validator index after the dash")
		}
	}
	if last < first {
		return 0, 0, errors.New("the range ends before it starts")
	}
	return first, last, nil
}
