// Command dvmesh runs distributed validator clusters: it creates clusters, runs a node, and runs
// a whole local cluster against a simulated beacon node.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	golog "github.com/ipfs/go-log/v2"
	"github.com/spf13/cobra"
)

// extraCommands are registered by the files that define them (init functions), so that each
// command's file is self-contained.
var extraCommands []func() *cobra.Command

func main() {
	// go-libp2p-raft logs every stream closed by a stopping peer as an error through the
	// process-wide go-log; Raft itself reports transport failures through our logger.
	_ = golog.SetLogLevel("raftlib", "fatal")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "dvmesh",
		Short:         "Distributed validator middleware for Ethereum: threshold BLS, Raft agreement, slashing protection",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCreateClusterCmd(), newRunCmd(), newRunLocalCmd(), newSlashingCmd(), newDutiesCmd(), newSimBeaconCmd(), newHealthCmd())
	for _, c := range extraCommands {
		root.AddCommand(c())
	}
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// newLogger builds the process logger from the --log-level and --log-format flags.
func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
