package main

import (
	"fmt"
	"github.com/dvmesh/dvmesh/signing"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKill(t *testing.T) {
	for in, ok := range map[string]bool{
		"": true, "leader@3": true, "follower@0": true, "node4@9": true,
		"node5@9": false, "node0@1": false, "leader": false, "leader@x": false, "boss@3": false,
	} {
		if _, err := parseKill(in, 4); (err == nil) != ok {
			t.Errorf("parseKill(%q) err = %v, want ok=%v", in, err, ok)
		}
	}
}

// freePortBlock returns a base port such that base..base+n-1 are free on 127.0.0.1.
func freePortBlock(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		// Below the kernel's ephemeral range (32768 and up), which outgoing connections use.
		base := 10000 + rand.IntN(22000-n)
		var lns []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port block")
	return 0
}

// TestRunLocal_KillLeader builds the dvmesh binary and runs the README's local cluster (four
// OS processes and the simulated beacon node) with the Raft leader killed mid-run: it must pass
// within the fault budget.
func TestRunLocal_KillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 4-process cluster for ~40 s")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dvmesh")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cluster := filepath.Join(dir, "cluster")
	base := freePortBlock(t, 12)
	out, err := exec.Command(bin, "create-cluster", "--nodes", "4", "--threshold", "3", "--validators", "3",
		"--out", cluster, "--p2p-base-port", fmt.Sprint(base), "--fee-recipient", localFeeRecipient,
		"--keystore-kdf", signing.KDFInsecure).CombinedOutput()
	if err != nil {
		t.Fatalf("create-cluster: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run-local", "--cluster", cluster, "--slots", "16", "--slot-duration", "2s",
		"--slots-per-epoch", "4", "--kill", "leader@6", "--monitoring-base-port", fmt.Sprint(base+4),
		"--admin-base-port", fmt.Sprint(base+8))
	out, err = cmd.CombinedOutput()
	t.Logf("run-local output:\n%s", out)
	if err != nil {
		t.Fatalf("run-local failed: %v", err)
	}
	for _, want := range []string{"Fault injected: killed node", "(Raft leader)", "PASS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestRunLocal_RefusesBadCluster checks that a corrupt lock gives a clear error, not a crash.
func TestRunLocal_RefusesBadCluster(t *testing.T) {
	dir := t.TempDir()
	if err := runLocal(t.Context(), new(strings.Builder), runLocalOpts{clusterDir: dir, slots: 1, slotsPerEpoch: 1, slotDuration: 1e9}); err == nil ||
		!strings.Contains(err.Error(), "cluster-lock.json") {
		t.Fatalf("err = %v", err)
	}
}
