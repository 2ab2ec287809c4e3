package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// settingsCmd is a command with the flag kinds run uses.
func settingsCmd() (*cobra.Command, *string, *time.Duration, *int) {
	var (
		url     string
		timeout time.Duration
		epochs  int
	)
	cmd := &cobra.Command{Use: "run"}
	cmd.Flags().String("config", "", "")
	cmd.Flags().StringVar(&url, "beacon-url", "default", "")
	cmd.Flags().DurationVar(&timeout, "beacon-timeout", 0, "")
	cmd.Flags().IntVar(&epochs, "doppelganger-epochs", 2, "")
	return cmd, &url, &timeout, &epochs
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplySettings_Precedence(t *testing.T) {
	file := writeConfig(t, "beacon-url: http://from-file\nbeacon-timeout: 3s\ndoppelganger-epochs: 5\n")

	// File only.
	cmd, url, timeout, epochs := settingsCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := applySettings(cmd, file); err != nil {
		t.Fatal(err)
	}
	if *url != "http://from-file" || *timeout != 3*time.Second || *epochs != 5 {
		t.Fatalf("file: %q %s %d", *url, *timeout, *epochs)
	}

	// Environment beats the file.
	t.Setenv("DVMESH_BEACON_URL", "http://from-env")
	cmd, url, timeout, _ = settingsCmd()
	_ = cmd.ParseFlags(nil)
	if err := applySettings(cmd, file); err != nil {
		t.Fatal(err)
	}
	if *url != "http://from-env" || *timeout != 3*time.Second {
		t.Fatalf("env: %q %s", *url, *timeout)
	}

	// Flags beat both.
	cmd, url, _, _ = settingsCmd()
	_ = cmd.ParseFlags([]string{"--beacon-url", "http://from-flag"})
	if err := applySettings(cmd, file); err != nil {
		t.Fatal(err)
	}
	if *url != "http://from-flag" {
		t.Fatalf("flag: %q", *url)
	}
}

func TestApplySettings_Errors(t *testing.T) {
	cases := map[string]struct {
		file, env, want string
	}{
		"unknown key":     {file: "beacon-urls: x\n", want: "unknown setting(s) beacon-urls"},
		"bad duration":    {file: "beacon-timeout: soon\n", want: "beacon-timeout"},
		"bad yaml":        {file: "beacon-url: [\n", want: "not valid YAML"},
		"bad env value":   {env: "nine", want: "DVMESH_DOPPELGANGER_EPOCHS"},
		"config as a key": {file: "config: other.yaml\n", want: "unknown setting(s) config"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cmd, _, _, _ := settingsCmd()
			_ = cmd.ParseFlags(nil)
			path := ""
			if c.file != "" {
				path = writeConfig(t, c.file)
			}
			if c.env != "" {
				t.Setenv("DVMESH_DOPPELGANGER_EPOCHS", c.env)
			}
			err := applySettings(cmd, path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}
