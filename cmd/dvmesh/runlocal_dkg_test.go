package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvmesh/dvmesh/dkg"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
)

// TestDKGHelperProcess is not a test: it is the 'dvmesh dkg' process TestCreateClusterWithDKG
// starts (this test binary, re-executed), since a test binary is not dvmesh. It does nothing
// unless DVMESH_DKG_HELPER is set.
func TestDKGHelperProcess(t *testing.T) {
	if os.Getenv("DVMESH_DKG_HELPER") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if len(args) == 0 || args[0] != "dkg" {
		fmt.Fprintln(os.Stderr, "helper: want -- dkg ...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newDKGCmd()
	cmd.SetArgs(args[1:])
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// useHelperDKGProcess makes createClusterWithDKG start this test binary as its dkg processes.
func useHelperDKGProcess(t *testing.T) {
	t.Helper()
	old := dkgProcess
	dkgProcess = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestDKGHelperProcess$", "--", "dkg"}, args...)...)
		cmd.Env = append(os.Environ(), "DVMESH_DKG_HELPER=1")
		return cmd, nil
	}
	t.Cleanup(func() { dkgProcess = old })
}

// Four 'dvmesh dkg' OS processes create a cluster in create-cluster's layout.
func TestCreateClusterWithDKG(t *testing.T) {
	useHelperDKGProcess(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := freePortBlock(t, 4)
	if err := createClusterWithDKG(ctx, dir, 4, 3, 2, "0x10000000", base); err != nil {
		t.Fatal(err)
	}
	t.Logf("4-process DKG took %s", time.Since(start))
	root, err := lock.Load(filepath.Join(dir, node.LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if root.DefinitionHash == "" || len(root.OperatorSignatures) != 4 || len(root.Validators) != 2 || root.GenesisForkVersion != "0x10000000" {
		t.Fatalf("lock: %+v", root)
	}
	for i := 1; i <= 4; i++ {
		nd := filepath.Join(dir, node.NodeDirName(i))
		id, err := node.LoadIdentity(filepath.Join(nd, node.LockFileName), filepath.Join(nd, node.P2PKeyFileName), filepath.Join(nd, node.KeysDirName))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if id.ShareIndex != uint64(i) || id.Lock.Hash != root.Hash || len(id.Shares) != 2 {
			t.Fatalf("node %d: share index %d, lock %s, %d shares", i, id.ShareIndex, id.Lock.Hash, len(id.Shares))
		}
		if want := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", base+i-1); id.Lock.Operators[i-1].Address != want {
			t.Fatalf("node %d address %s, want %s", i, id.Lock.Operators[i-1].Address, want)
		}
		if _, err := os.Stat(filepath.Join(nd, dkg.DefinitionFileName)); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".dkg-setup")); !os.IsNotExist(err) {
		t.Fatalf("setup directory left behind: %v", err)
	}
	if err := createClusterWithDKG(ctx, dir, 4, 3, 2, "0x10000000", freePortBlock(t, 4)); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second run into the same directory: err = %v", err)
	}
}

// When one process cannot take part (its port is taken), the run fails naming it and leaves no
// cluster directory behind.
func TestCreateClusterWithDKG_FailureLeavesNothing(t *testing.T) {
	useHelperDKGProcess(t)
	base := freePortBlock(t, 4)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+2))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "cluster")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = createClusterWithDKG(ctx, dir, 4, 3, 1, "0x10000000", base)
	if err == nil || !strings.Contains(err.Error(), "node 3") {
		t.Fatalf("err = %v, want node 3 named", err)
	}
	t.Logf("error: %v", err)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("failed run left %s: %v", dir, err)
	}
}
