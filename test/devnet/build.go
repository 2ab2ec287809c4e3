package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pinned client versions, fetched through the Go module proxy (no release downloads, no
// Docker): `go install` does not work for them because the proxy refuses to list their
// versions, so each module is downloaded at its pinned version, copied writable and built.
const (
	prysmModule = "github.com/OffchainLabs/prysm/v7@v7.0.0"
	gethModule  = "github.com/ethereum/go-ethereum@v1.17.10"
)

// errCannotBuild marks a machine that cannot build the clients (no network to the module
// proxy, no C compiler, ...): the run is skipped, loudly, never passed.
var errCannotBuild = errors.New("cannot build the devnet clients")

// ensureClients builds geth, beacon-chain, validator and prysmctl into binDir unless they are
// there already (cached across runs).
func ensureClients(cacheDir string, logf func(string, ...any)) (binDir string, err error) {
	binDir = filepath.Join(cacheDir, "bin")
	srcDir := filepath.Join(cacheDir, "src")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	have := func(names ...string) bool {
		for _, n := range names {
			if fi, err := os.Stat(filepath.Join(binDir, n)); err != nil || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if !have("beacon-chain", "validator", "prysmctl") {
		dir, err := fetchModule(prysmModule, filepath.Join(srcDir, "prysm"))
		if err != nil {
			return "", err
		}
		logf("building Prysm %s (about 3 minutes on 2 cores, once; cached in %s)", prysmModule, binDir)
		t := time.Now()
		if err := goBuild(dir, binDir+"/", "./cmd/beacon-chain", "./cmd/validator", "./cmd/prysmctl"); err != nil {
			return "", fmt.Errorf("%w: build %s: %v", errCannotBuild, prysmModule, err)
		}
		logf("Prysm built in %s", time.Since(t).Round(time.Second))
	}
	if !have("geth") {
		dir, err := fetchModule(gethModule, filepath.Join(srcDir, "geth"))
		if err != nil {
			return "", err
		}
		logf("building geth %s (about 2.5 minutes on 2 cores, once)", gethModule)
		t := time.Now()
		if err := goBuild(dir, filepath.Join(binDir, "geth"), "./cmd/geth"); err != nil {
			return "", fmt.Errorf("%w: build %s: %v", errCannotBuild, gethModule, err)
		}
		logf("geth built in %s", time.Since(t).Round(time.Second))
	}
	return binDir, nil
}

// fetchModule downloads mod@version through the module proxy and copies it, writable, to dst.
func fetchModule(mod, dst string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("%w: go mod download %s: %v %s", errCannotBuild, mod, err, info.Error)
	}
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("cp", "-r", info.Dir, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %v %s", info.Dir, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod %s: %v %s", dst, err, out)
	}
	return dst, nil
}

func goBuild(dir, out string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", out}, pkgs...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLines(stderr.String(), 10))
	}
	return nil
}

// buildDvmesh builds this repository's dvmesh binary (the code under test) into binDir.
func buildDvmesh(binDir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the dvmesh module (run from inside the repository): %v", err)
	}
	exe := filepath.Join(binDir, "dvmesh")
	if err := goBuild(strings.TrimSpace(string(root)), exe, "./cmd/dvmesh"); err != nil {
		return "", fmt.Errorf("build dvmesh: %w", err)
	}
	return exe, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
