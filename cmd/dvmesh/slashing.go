package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
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

func newSlashingImportCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an EIP-3076 (v5) interchange file into a stopped node's slashing DB",
		Args:  cobra.ExactArgs(1),
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
			n, err := slashingdb.ImportFile(filepath.Join(dataDir, node.SlashingDBFile), f)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Imported the history of %d validators from %s\n", n, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	return cmd
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
