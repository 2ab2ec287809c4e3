package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/node"
)

func newDutiesCmd() *cobra.Command {
	var (
		addr string
		slot int64
	)
	cmd := &cobra.Command{
		Use:   "duties",
		Short: "Show how the recent duties went, on this node and on every peer (cluster-wide view)",
		Long: `duties asks a running node through its monitoring address and prints one row per duty and
node: the result, the failing step and reason (see the README's list), and when each step
finished (milliseconds after the slot started). Peers share their records, so any node shows the
whole cluster: a missing row means that peer did not report (down or late).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url := "http://" + addr + "/duties"
			if slot >= 0 {
				url += fmt.Sprintf("?slot=%d", slot)
			}
			c := http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get(url)
			if err != nil {
				return fmt.Errorf("ask the node at %s (is it running, and is --monitoring-addr right?): %w", addr, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				return fmt.Errorf("node at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
			}
			var recs []node.DutyRecord
			if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
				return fmt.Errorf("node at %s: bad answer: %w", addr, err)
			}
			printDuties(cmd.OutOrStdout(), recs)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "monitoring-addr", "127.0.0.1:3620", "the node's monitoring address")
	cmd.Flags().Int64Var(&slot, "slot", -1, "only this slot (default: every slot the node remembers)")
	return cmd
}

func printDuties(w io.Writer, recs []node.DutyRecord) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tDUTY\tNODE\tRESULT\tSUBMITTED\tREASON\tFAILED STEP\tSTEPS (ms after slot start)")
	for _, r := range recs {
		var steps []string
		for _, s := range r.Steps {
			steps = append(steps, fmt.Sprintf("%s=%d", s.Step, s.AtMs))
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d/%d\t%s\t%s\t%s\n", r.Slot, r.Type, r.Node, r.Result, r.Submitted, r.Validators,
			orDash(r.Reason), orDash(r.FailedStep), strings.Join(steps, " "))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
