package dkg

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dvmesh/dvmesh/deposit"
	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/node"
	"github.com/dvmesh/dvmesh/signing"
)

// freePorts returns n TCP ports that were free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// newLocalCluster is a signed definition whose operators listen on 127.0.0.1.
func newLocalCluster(t *testing.T, n, threshold, validators int) *testCluster {
	t.Helper()
	c := &testCluster{}
	o := lock.DefinitionOptions{Name: "dkg-p2p", Network: "devnet", GenesisForkVersion: "0x10000000", Threshold: threshold,
		Validators: validators, WithdrawalAddress: "0x" + strings.Repeat("ab", 20), FeeRecipient: "0x" + strings.Repeat("cd", 20), Compounding: true}
	for i, port := range freePorts(t, n) {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		c.keys = append(c.keys, k)
		o.Operators = append(o.Operators, lock.Operator{PeerID: id.String(), Address: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)})
		_ = i
	}
	def, err := lock.NewDefinition(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range c.keys {
		if err := def.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	c.def = def
	return c
}

func runNodes(t *testing.T, c *testCluster, dirs []string, only []int, startTimeout time.Duration) ([]*NodeResult, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	results, errs := make([]*NodeResult, len(c.keys)), make([]error, len(c.keys))
	var wg sync.WaitGroup
	for _, i := range only {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i-1], errs[i-1] = RunNode(ctx, NodeConfig{Definition: c.def, Key: c.keys[i-1], DataDir: dirs[i-1],
				StartTimeout: startTimeout, RoundTimeout: 20 * time.Second})
		}()
	}
	wg.Wait()
	return results, errs
}

// The ceremony over libp2p on 127.0.0.1 writes node folders that node.LoadIdentity loads, as it
// loads create-cluster's; a first attempt with an operator offline fails, names it, leaves
// nothing behind, and the rerun succeeds.
func TestRunNode_Libp2p(t *testing.T) {
	c := newLocalCluster(t, 4, 3, 2)
	root := t.TempDir()
	var dirs []string
	for i := 1; i <= 4; i++ {
		dirs = append(dirs, filepath.Join(root, node.NodeDirName(i)))
	}

	// Operator 4 is offline.
	_, errs := runNodes(t, c, dirs, []int{1, 2, 3}, 2*time.Second)
	for i, err := range errs[:3] {
		var ae *AbortError
		if !errors.As(err, &ae) || !ae.Blames(4) || !strings.Contains(err.Error(), "sent no hello") {
			t.Fatalf("operator %d with operator 4 offline: err = %v", i+1, err)
		}
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Fatalf("a failed ceremony left %v behind", left)
	}

	// Everyone.
	start := time.Now()
	results, errs := runNodes(t, c, dirs, []int{1, 2, 3, 4}, 20*time.Second)
	t.Logf("ceremony took %s", time.Since(start))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operator %d: %v", i+1, err)
		}
	}
	var ids []*node.Identity
	for i, dir := range dirs {
		id, err := node.LoadIdentity(filepath.Join(dir, node.LockFileName), filepath.Join(dir, node.P2PKeyFileName), filepath.Join(dir, node.KeysDirName))
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if id.ShareIndex != uint64(i+1) || len(id.Shares) != 2 || id.Lock.Hash != results[0].Lock.Hash {
			t.Fatalf("node %d: index %d, %d shares, lock %s", i+1, id.ShareIndex, len(id.Shares), id.Lock.Hash)
		}
		if _, err := lock.LoadDefinition(filepath.Join(dir, DefinitionFileName)); err != nil {
			t.Fatalf("node %d: definition copy: %v", i+1, err)
		}
		ids = append(ids, id)
		entries, err := deposit.ReadFile(results[i].DepositFile)
		if err != nil || len(entries) != 2 {
			t.Fatalf("node %d: deposit file: %d entries, %v", i+1, len(entries), err)
		}
		for _, e := range entries {
			if err := e.Verify(phase0.Version{0x10, 0, 0, 0}); err != nil || !strings.HasPrefix(e.WithdrawalCredentials, "02") {
				t.Fatalf("node %d: deposit %+v: %v", i+1, e, err)
			}
		}
	}
	// Shares loaded from the keystores sign for the group key, any 3 of them.
	msg := make([]byte, 32)
	_, _ = rand.Read(msg)
	for _, gk := range ids[0].Pubkeys() {
		partials := map[uint64][]byte{}
		for _, id := range ids[1:] {
			partials[id.ShareIndex] = id.Shares[gk].SignByte(msg).Serialize()
		}
		full, err := signing.RecoverSignature(partials, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := signing.Verify(gk[:], msg, full); err != nil {
			t.Fatalf("validator %x: %v", gk[:6], err)
		}
	}
	// A second ceremony never overwrites a node folder.
	if _, err := RunNode(context.Background(), NodeConfig{Definition: c.def, Key: c.keys[0], DataDir: dirs[0]}); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Fatalf("rerun into a written node folder: err = %v", err)
	}

	// create-cluster's folders load the same way.
	cc := filepath.Join(t.TempDir(), "cluster")
	if _, err := node.CreateCluster(node.CreateOptions{Name: "t", Nodes: 4, Threshold: 3, Validators: 1, OutDir: cc,
		Host: "127.0.0.1", BasePort: 4000, Network: "simnet", GenesisForkVersion: "0x10000000"}); err != nil {
		t.Fatal(err)
	}
	nd := filepath.Join(cc, node.NodeDirName(2))
	if _, err := node.LoadIdentity(filepath.Join(nd, node.LockFileName), filepath.Join(nd, node.P2PKeyFileName), filepath.Join(nd, node.KeysDirName)); err != nil {
		t.Fatalf("create-cluster node: %v", err)
	}
}

// A DKG lock whose hash does not match its content is refused by LoadIdentity.
func TestRunNode_TamperedLockRefused(t *testing.T) {
	c := newTestCluster(t, 4, 3, 1)
	results, errs := runCeremony(t, c, NewMemTransports(4), nil)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	l := *results[0].Lock
	path := filepath.Join(dir, "lock.json")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	tampered := strings.Replace(string(b), `"name": "dkg-test"`, `"name": "dkg-tesT"`, 1)
	if tampered == string(b) {
		t.Fatal("test did not change the lock")
	}
	if err := os.WriteFile(path, []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Load(path); !errors.Is(err, lock.ErrBadLock) || !strings.Contains(err.Error(), "lock_hash") {
		t.Fatalf("tampered lock: err = %v", err)
	}
}
