package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/network"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/slashingdb"
)

func newSlashingCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slashing",
		Short: "Manage a node's slashing-protection DB (EIP-3076 interchange, initialisation)",
		Long: `The slashing-protection DB lives in a node's data directory. These commands work while the
node is stopped; they refuse while it runs (the data directory is locked).`,
	}
	cmd.AddCommand(newSlashingInitCmd(), newSlashingImportCmd(), newSlashingExportCmd())
	return cmd
}

// openDataDir locks a stopped node's data directory.
func openDataDir(dir string) (func(), error) {
	if dir == "" {
		return nil, errors.New("--data-dir is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	unlock, err := node.LockDataDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (stop the node first)", err)
	}
	return unlock, nil
}

func newSlashingInitCmd() *cobra.Command {
	var dataDir, lockFile, gvrHex string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Mark the cluster's validators as known with an empty history",
		Long: `A node refuses to sign for a validator its slashing DB has never seen (after genesis), because
a DB that starts empty cannot protect a key that signed elsewhere. Run init only for keys that
have never signed anywhere else; otherwise import their history with 'dvmesh slashing import'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lock.Load(lockFile)
			if err != nil {
				return err
			}
			b, err := lock.DecodeHex(gvrHex, 32)
			if err != nil {
				return fmt.Errorf("--genesis-validators-root: %w", err)
			}
			var gvr phase0.Root
			copy(gvr[:], b)
			unlock, err := openDataDir(dataDir)
			if err != nil {
				return err
			}
			defer unlock()
			pks := l.GroupPubkeys()
			if err := node.InitSlashingDB(dataDir, gvr, pks); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Registered %d validators in %s\n", len(pks), filepath.Join(dataDir, node.SlashingDBFile))
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	cmd.Flags().StringVar(&lockFile, "lock-file", "", "the cluster lock")
	cmd.Flags().StringVar(&gvrHex, "genesis-validators-root", "", "the chain's genesis validators root (0x hex)")
	return cmd
}

// importClock is how import tells the chain's current slot: from the built-in network the
// interchange's genesis validators root names, or from flags for any other chain.
type importClock struct {
	genesisUnix   int64
	slotDuration  time.Duration
	slotsPerEpoch uint64
}

func newSlashingImportCmd() *cobra.Command {
	var (
		dataDir string
		clock   importClock
	)
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an EIP-3076 (v5) interchange file into a stopped node's slashing DB, and raise its watermarks to the wall clock",
		Long: `import merges an EIP-3076 interchange into a stopped node's slashing DB. It then raises every
validator's low watermarks to the current epoch and slot from the wall clock, in the DB: history
exported from a validator client may lack its newest signatures, and nothing at or below the
current epoch's target or the current slot may be signed after such an import.

The chain's clock is known for mainnet, hoodi and sepolia (from the interchange's genesis
validators root); for another chain give --genesis-time, or the node's own start-up guard does
it when it starts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("interchange: %w", err)
			}
			defer f.Close()
			unlock, err := openDataDir(dataDir)
			if err != nil {
				return err
			}
			defer unlock()
			path := filepath.Join(dataDir, node.SlashingDBFile)
			n, err := slashingdb.ImportFile(path, f)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Imported the history of %d validators from %s\n", n, args[0])
			return raiseToWallClock(cmd.OutOrStdout(), path, clock, time.Now())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	cmd.Flags().Int64Var(&clock.genesisUnix, "genesis-time", 0, "chain genesis time in unix seconds, for chains other than mainnet, hoodi and sepolia")
	cmd.Flags().DurationVar(&clock.slotDuration, "slot-duration", 12*time.Second, "slot duration, with --genesis-time")
	cmd.Flags().Uint64Var(&clock.slotsPerEpoch, "slots-per-epoch", 32, "slots per epoch, with --genesis-time")
	return cmd
}

// raiseToWallClock raises the watermarks of every validator in the DB at path to the current
// epoch and slot. The import has committed before: if this fails, the node's start-up guard
// still raises the same bound in memory when it starts, so the error says so.
func raiseToWallClock(out io.Writer, path string, c importClock, now time.Time) error {
	db, err := slashingdb.OpenExisting(path)
	if err != nil {
		return err
	}
	defer db.Close()
	genesis, slotDuration, slotsPerEpoch := time.Time{}, c.slotDuration, c.slotsPerEpoch
	if c.genesisUnix != 0 {
		genesis = time.Unix(c.genesisUnix, 0)
	}
	if cfg, ok := network.ByGenesisValidatorsRoot(db.GenesisValidatorsRoot()); ok {
		if c.genesisUnix != 0 && !genesis.Equal(cfg.GenesisTime) {
			return fmt.Errorf("--genesis-time %d contradicts %s's %d (the interchange is for %s): leave it out",
				c.genesisUnix, cfg.Name, cfg.GenesisTime.Unix(), cfg.Name)
		}
		genesis, slotDuration, slotsPerEpoch = cfg.GenesisTime, cfg.SlotDuration, cfg.SlotsPerEpoch
	}
	if genesis.IsZero() {
		fmt.Fprintln(out, "Watermarks not raised from the wall clock: this chain's genesis time is unknown here (give --genesis-time); "+
			"the node raises its start-up guard from its beacon node's clock when it starts.")
		return nil
	}
	slot, epoch, started := network.WallClock(genesis, slotDuration, slotsPerEpoch, now)
	if !started {
		fmt.Fprintln(out, "Before genesis: nothing can have been signed, no watermark to raise.")
		return nil
	}
	if err := db.RaiseWatermarks(epoch, slot); err != nil {
		return fmt.Errorf("%w (the history was imported; the node's start-up guard raises the same bound when it starts)", err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Raised the watermarks from the wall clock: nothing at or below epoch %d (target) or slot %d will be signed\n", epoch, slot)
	return nil
}

func newSlashingExportCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "export [FILE]",
		Short: "Export a stopped node's slashing DB as EIP-3076 (v5) interchange JSON (to FILE or stdout)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(dataDir, node.SlashingDBFile)
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("no slashing DB in %s: %w", dataDir, err)
			}
			unlock, err := openDataDir(dataDir)
			if err != nil {
				return err
			}
			defer unlock()
			db, err := slashingdb.OpenExisting(path)
			if err != nil {
				return err
			}
			defer db.Close()
			var w io.Writer = cmd.OutOrStdout()
			if len(args) == 1 {
				f, err := os.OpenFile(args[0], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return fmt.Errorf("output: %w", err)
				}
				defer f.Close()
				w = f
			}
			return db.ExportInterchange(w)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	return cmd
}
