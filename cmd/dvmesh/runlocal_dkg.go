package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/dkg"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/p2p"
)

// Placeholder addresses of a local cluster's definition: a local cluster's deposits are never
// sent, but the definition needs addresses, and the zero address is refused.
const localDKGAddress = "0x000000000000000000000000000000000000dead"

// localDKGTimeout bounds each round of a local ceremony, where every process runs on this
// machine.
const localDKGTimeout = 60 * time.Second

// dkgProcess returns the command that runs one operator's ceremony with these dkg arguments:
// this executable's own 'dkg' command. Tests replace it (a test binary is not dvmesh).
var dkgProcess = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	return exec.CommandContext(ctx, exe, append([]string{"dkg"}, args...)...), nil
}

// createClusterWithDKG creates a local cluster as node.CreateCluster lays it out (dir/node1 ..
// dir/nodeN, each with cluster-lock.json, p2p-key and validator_keys/, and dir/cluster-lock.json),
// but with keys no process ever holds whole: it writes and signs a definition, then runs the
// ceremony among n 'dvmesh dkg' OS processes on 127.0.0.1, node i listening on basePort+i-1.
// On failure nothing is left in dir.
func createClusterWithDKG(ctx context.Context, dir string, nodes, threshold, validators int, genesisForkVersion string, basePort int) (err error) {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("output directory %s already exists: refusing to overwrite key material", dir)
	}
	if basePort < 1 || basePort+nodes-1 > 65535 {
		return fmt.Errorf("base port %d does not leave room for %d nodes", basePort, nodes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create cluster directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	setup := filepath.Join(dir, ".dkg-setup")
	if err := os.MkdirAll(setup, 0o700); err != nil {
		return fmt.Errorf("create setup directory: %w", err)
	}
	o := lock.DefinitionOptions{Name: "dvmesh-local", Network: "simnet", GenesisForkVersion: genesisForkVersion, Threshold: threshold,
		Validators: validators, WithdrawalAddress: localDKGAddress, FeeRecipient: localDKGAddress}
	keys := make([]crypto.PrivKey, nodes)
	keyPaths := make([]string, nodes)
	for i := range keys {
		if keys[i], err = p2p.GenerateKey(); err != nil {
			return err
		}
		keyPaths[i] = filepath.Join(setup, fmt.Sprintf("p2p-key-%d", i+1))
		if err := p2p.SaveKey(keyPaths[i], keys[i]); err != nil {
			return err
		}
		id, _ := peer.IDFromPrivateKey(keys[i])
		o.Operators = append(o.Operators, lock.Operator{PeerID: id.String(), Address: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", basePort+i)})
	}
	def, err := lock.NewDefinition(o)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := def.Sign(k); err != nil {
			return err
		}
	}
	defPath := filepath.Join(dir, dkg.DefinitionFileName)
	if err := def.Save(defPath); err != nil {
		return err
	}

	if err := runDKGProcesses(ctx, dir, defPath, keyPaths); err != nil {
		return err
	}

	// Every node must hold the same lock; the cluster folder gets a copy, as create-cluster's does.
	var first *lock.Lock
	for i := 1; i <= nodes; i++ {
		l, err := lock.Load(filepath.Join(dir, node.NodeDirName(i), node.LockFileName))
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if first == nil {
			first = l
		} else if l.Hash != first.Hash {
			return fmt.Errorf("node %d's lock %s differs from node 1's %s", i, l.Hash, first.Hash)
		}
	}
	if err := first.Save(filepath.Join(dir, node.LockFileName)); err != nil {
		return err
	}
	// The keys are in the node folders now.
	if err := os.RemoveAll(setup); err != nil {
		return fmt.Errorf("remove setup directory: %w", err)
	}
	return nil
}

// runDKGProcesses runs one dkg process per key and waits for all. When one fails, the others
// are stopped (they would abort anyway, on its abort notice or a timeout) and the error names
// the first failure with the end of its output.
func runDKGProcesses(ctx context.Context, dir, defPath string, keyPaths []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type proc struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	procs := make([]*proc, len(keyPaths))
	for i, kp := range keyPaths {
		cmd, err := dkgProcess(ctx, "--definition", defPath, "--p2p-key", kp,
			"--data-dir", filepath.Join(dir, node.NodeDirName(i+1)),
			"--start-timeout", localDKGTimeout.String(), "--round-timeout", localDKGTimeout.String(), "--log-level", "warn")
		if err != nil {
			return err
		}
		p := &proc{cmd: cmd}
		cmd.Stdout, cmd.Stderr = &p.out, &p.out
		// Stop gracefully (the process tells its peers and removes its partial output), kill
		// if it does not.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		procs[i] = p
	}
	errs := make([]error, len(procs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr = -1
	)
	for i, p := range procs {
		if err := p.cmd.Start(); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("start dkg process %d: %w", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.cmd.Wait(); err != nil {
				mu.Lock()
				errs[i] = err
				if firstErr < 0 {
					firstErr = i
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr < 0 {
		return nil
	}
	return fmt.Errorf("DKG for the local cluster failed: node %d: %v:\n%s", firstErr+1, errs[firstErr], tailLines(procs[firstErr].out.String(), 15))
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
