package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newHealthCmd checks a running node's readiness: for container health checks, where the
// runtime image has no curl.
func newHealthCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 if the node at --monitoring-addr is ready, 1 with the reason otherwise",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := http.Client{Timeout: 3 * time.Second}
			resp, err := c.Get("http://" + addr + "/readyz")
			if err != nil {
				return fmt.Errorf("node at %s: %w", addr, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("node at %s not ready: %s", addr, strings.TrimSpace(string(b)))
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(b)))
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "monitoring-addr", "127.0.0.1:3620", "the node's monitoring address")
	return cmd
}
