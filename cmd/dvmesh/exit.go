package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvmesh/dvmesh/node"
)

func init() { extraCommands = append(extraCommands, newExitCmd) }

func newExitCmd() *cobra.Command {
	var (
		validator, admin, out string
		epoch                 int64
		wait                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "exit",
		Short: "Consent, as this node's operator, to a validator's voluntary exit",
		Long: `exit asks the running node (through its local admin endpoint) to sign its partial of a
validator's voluntary exit and share it with the cluster. An exit is irreversible, so no single
operator can cause one: it combines only once a threshold of operators have each run this
command on their own node. The first request fixes the exit's epoch for the validator.

Without --out, every node whose operator consented submits the combined exit to its beacon
node. With --out, this node does not submit: the command waits (--wait) for the combined exit
and writes it to the file, e.g. to submit later.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validator == "" {
				return fmt.Errorf("--validator is required: the validator's 0x public key or its index")
			}
			req := node.ExitRequest{Validator: validator, Submit: out == ""}
			if epoch >= 0 {
				e := uint64(epoch)
				req.Epoch = &e
			}
			body, _ := json.Marshal(req)
			base := "http://" + admin + "/admin/v1/exit"
			st, err := exitCall(http.MethodPost, base, body)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			printExit(w, st)
			deadline := time.Now().Add(wait)
			for len(st.SignedExit) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Second)
				if st, err = exitCall(http.MethodGet, base+"?validator="+url.QueryEscape(validator), nil); err != nil {
					return err
				}
			}
			if len(st.SignedExit) == 0 {
				fmt.Fprintf(w, "Waiting for %d more operator(s) to consent on their own nodes; run this command again to check.\n", st.Threshold-len(st.Partials))
				if out != "" {
					return fmt.Errorf("the exit did not combine within --wait %s: nothing written to %s", wait, out)
				}
				return nil
			}
			printExit(w, st)
			if out != "" {
				if err := os.WriteFile(out, append(st.SignedExit, '\n'), 0o600); err != nil {
					return fmt.Errorf("write %s: %w", out, err)
				}
				fmt.Fprintf(w, "Signed voluntary exit written to %s (beacon-API JSON for POST /eth/v1/beacon/pool/voluntary_exits).\n", out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&validator, "validator", "", "the validator to exit: 0x group public key or validator index")
	f.Int64Var(&epoch, "epoch", -1, "exit epoch (default: the current epoch)")
	f.StringVar(&admin, "admin-addr", "127.0.0.1:3630", "the running node's admin address (its --admin-addr)")
	f.StringVar(&out, "out", "", "write the combined signed exit to this file instead of submitting it")
	f.DurationVar(&wait, "wait", 0, "how long to wait for the other operators' consent (with --out: required to be long enough)")
	return cmd
}

func exitCall(method, u string, body []byte) (*node.ExitStatus, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("the node's admin endpoint at %s does not answer (is the node running with --admin-addr?): %w", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("node refused: %s", e.Error)
		}
		return nil, fmt.Errorf("node answered %s: %s", resp.Status, raw)
	}
	var st node.ExitStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("node's answer: %w", err)
	}
	return &st, nil
}

func printExit(w io.Writer, st *node.ExitStatus) {
	parts := ""
	for i, p := range st.Partials {
		if i > 0 {
			parts += ","
		}
		parts += strconv.FormatUint(p, 10)
	}
	state := "waiting for consent"
	switch {
	case st.Submitted:
		state = "combined and submitted"
	case len(st.SignedExit) > 0 && st.SubmitErr != "":
		state = "combined; submission failed: " + st.SubmitErr
	case len(st.SignedExit) > 0:
		state = "combined"
	}
	fmt.Fprintf(w, "Exit of validator %d (%s) at epoch %d: operators %s of threshold %d consented; %s\n",
		st.ValidatorIndex, st.Pubkey, st.Epoch, parts, st.Threshold, state)
}
