package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
)

func newSimBeaconCmd() *cobra.Command {
	var (
		o       runLocalOpts
		listen  string
		lockArg string
		delay   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "simbeacon",
		Short: "Serve a simulated beacon node for a cluster (for containers and manual tests)",
		Long: `simbeacon serves the same simulated beacon node run-local uses, on its own: a chain of the
lock's validators whose genesis is --genesis-delay after start. It verifies every submitted
signature and serves its verdicts at /dvmesh/sim/stats.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lock.Load(lockArg)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			sim, err := newSim(l, o, log)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			genesis := time.Unix(time.Now().Add(delay).Unix(), 0)
			sim.SetGenesis(genesis)
			log.Info("Simulated beacon node serving", "addr", ln.Addr().String(), "genesis", genesis.UTC().Format(time.RFC3339),
				"validators", len(l.Validators), "slot_duration", o.slotDuration)
			srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-cmd.Context().Done()
				sim.Close()
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&lockArg, "lock-file", filepath.Join("cluster", "cluster-lock.json"), "the cluster lock (its validators are the chain's)")
	f.StringVar(&listen, "listen", "127.0.0.1:5052", "address to serve the Beacon API on")
	f.DurationVar(&delay, "genesis-delay", 30*time.Second, "time from start to genesis")
	f.DurationVar(&o.slotDuration, "slot-duration", 2*time.Second, "slot duration")
	f.Uint64Var(&o.slotsPerEpoch, "slots-per-epoch", 8, "slots per epoch")
	return cmd
}
