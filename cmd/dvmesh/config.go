package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// envPrefix prefixes the environment variable of every setting: --beacon-url is DVMESH_BEACON_URL.
const envPrefix = "DVMESH_"

// envName returns the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applySettings fills every flag the command line did not set from the environment
// (DVMESH_*), then from the YAML config file (keys are the flag names): flags beat the
// environment, which beats the file. Unknown keys and bad values are errors that name the
// setting and where it came from.
func applySettings(cmd *cobra.Command, configPath string) error {
	file := map[string]any{}
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config file %s: not valid YAML: %w", configPath, err)
		}
	}
	flags := cmd.Flags()
	var unknown []string
	for key := range file {
		if f := flags.Lookup(key); f == nil || key == "config" {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config file %s: unknown setting(s) %s (settings are the flag names of 'dvmesh %s --help')",
			configPath, strings.Join(unknown, ", "), cmd.Name())
	}
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := flags.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := setFromYAML(flags, f.Name, v); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", configPath, f.Name, e)
			}
		}
	})
	return err
}

// setFromYAML sets a flag from a YAML value; a list is given to a list flag comma-separated.
func setFromYAML(flags *pflag.FlagSet, name string, v any) error {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = fmt.Sprint(e)
		}
		return flags.Set(name, strings.Join(parts, ","))
	}
	if v == nil {
		return fmt.Errorf("empty value")
	}
	return flags.Set(name, fmt.Sprint(v))
}
