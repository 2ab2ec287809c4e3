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

	"github.com/attestantio/go-eth2-client/spec/bellatrix"
	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/test/simbeacon"
)

func newSimBeaconCmd() *cobra.Command {
	var (
		o           runLocalOpts
		listen      string
		lockArg     string
		delay       time.Duration
		networkSize uint64
		builder     bool
		feeArg      string
	)
	cmd := &cobra.Command{
		Use:   "simbeacon",
		Short: "Serve a simulated beacon node for a cluster (for containers and manual tests)",
		Long: `simbeacon serves the same simulated beacon node run-local uses, on its own: a chain of the
lock's validators whose genesis is --genesis-delay after start. It verifies every submitted
signature and serves its verdicts at /dvmesh/sim/stats.

--network-size makes the chain a network of that many validators: the lock's are the first, the
rest are virtual (they hold duties and fill committees and sync committees like real ones but never
sign), so committee sizes, aggregator odds and proposal and sync committee frequency are those of a
real network of that size. --builder serves blinded blocks (as from an MEV relay) when a block is
asked for with a builder_boost_factor above 0. POST /dvmesh/sim/reorg reshuffles the duties of the
current and next epoch and changes their dependent roots.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lock.Load(lockArg)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			var fee bellatrix.ExecutionAddress
			if feeArg != "" {
				b, err := lock.DecodeHex(feeArg, len(fee))
				if err != nil {
					return fmt.Errorf("--fee-recipient: %w", err)
				}
				copy(fee[:], b)
			}
			sim, err := newSimNetwork(l, o, log, simbeacon.Config{NetworkSize: networkSize, BuilderBlocks: builder, DefaultFeeRecipient: fee})
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
				"validators", len(l.Validators), "network_size", max(networkSize, uint64(len(l.Validators))),
				"builder", builder, "slot_duration", o.slotDuration)
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
	f.Uint64Var(&networkSize, "network-size", 0, "validators on the chain, the lock's first and the rest virtual (0: just the lock's)")
	f.BoolVar(&builder, "builder", false, "serve blinded blocks when a proposal asks with builder_boost_factor > 0")
	f.StringVar(&feeArg, "fee-recipient", "", "0x fee recipient of blocks of validators that registered none (default: zero address)")
	return cmd
}

// newSimNetwork is newSim with the network size, builder and fee recipient of extra.
func newSimNetwork(l *lock.Lock, o runLocalOpts, log *slog.Logger, extra simbeacon.Config) (*simbeacon.Sim, error) {
	gfv, err := lock.DecodeHex(l.GenesisForkVersion, 4)
	if err != nil {
		return nil, fmt.Errorf("lock genesis fork version: %w", err)
	}
	vals := l.GroupPubkeys()
	if extra.NetworkSize != 0 && extra.NetworkSize < uint64(len(vals)) {
		return nil, fmt.Errorf("--network-size %d is below the lock's %d validators", extra.NetworkSize, len(vals))
	}
	cfg := extra
	cfg.SlotDuration, cfg.SlotsPerEpoch, cfg.Validators, cfg.Logger = o.slotDuration, o.slotsPerEpoch, vals, log
	copy(cfg.GenesisForkVersion[:], gfv)
	sim, err := simbeacon.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("simulated beacon node: %w", err)
	}
	return sim, nil
}
