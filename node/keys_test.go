package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvmesh/dvmesh/lock"
	"github.com/dvmesh/dvmesh/signing"
)

func createTestCluster(t *testing.T, validators int) (string, *lock.Lock) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cluster")
	l, err := CreateCluster(CreateOptions{Name: "t", Nodes: 4, Threshold: 3, Validators: validators, OutDir: dir,
		Host: "127.0.0.1", BasePort: 4000, Network: "simnet", GenesisForkVersion: "0x10000000"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, l
}

func loadNode(dir string, i int) (*Identity, error) {
	nd := filepath.Join(dir, NodeDirName(i))
	return LoadIdentity(filepath.Join(nd, LockFileName), filepath.Join(nd, P2PKeyFileName), filepath.Join(nd, KeysDirName))
}

func TestCreateCluster_EveryNodeLoads(t *testing.T) {
	dir, l := createTestCluster(t, 2)
	for i := 1; i <= 4; i++ {
		id, err := loadNode(dir, i)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if id.ShareIndex != uint64(i) || len(id.Shares) != 2 {
			t.Fatalf("node %d: share index %d, %d shares", i, id.ShareIndex, len(id.Shares))
		}
	}
	if _, err := CreateCluster(CreateOptions{Nodes: 4, Threshold: 3, Validators: 1, OutDir: dir, BasePort: 1, GenesisForkVersion: "0x10000000"}); err == nil ||
		!strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwriting an existing cluster: err = %v", err)
	}
	if len(l.Operators) != 4 {
		t.Fatal("operators")
	}
}

func TestCreateCluster_RefusesUnsafeThreshold(t *testing.T) {
	for _, c := range []struct{ n, t int }{{4, 2}, {4, 1}, {7, 4}} {
		_, err := CreateCluster(CreateOptions{Nodes: c.n, Threshold: c.t, Validators: 1, OutDir: filepath.Join(t.TempDir(), "x"),
			Host: "127.0.0.1", BasePort: 4000, GenesisForkVersion: "0x10000000"})
		if !errors.Is(err, signing.ErrThreshold) {
			t.Errorf("%d-of-%d: err = %v, want ErrThreshold", c.t, c.n, err)
		}
	}
}

func TestLoadIdentity_BadInput(t *testing.T) {
	dir, _ := createTestCluster(t, 1)
	n1 := filepath.Join(dir, NodeDirName(1))
	n2 := filepath.Join(dir, NodeDirName(2))
	lockPath := filepath.Join(n1, LockFileName)
	keys := filepath.Join(n1, KeysDirName)

	cases := map[string]struct {
		mutate func(t *testing.T)
		lock   string
		p2pKey string
		keys   string
		want   string
	}{
		"corrupt lock": {
			mutate: func(t *testing.T) {
				b, _ := os.ReadFile(lockPath)
				os.WriteFile(lockPath+".bad", b[:len(b)/2], 0o600)
			},
			lock: lockPath + ".bad", want: "invalid cluster lock",
		},
		"edited lock": {
			mutate: func(t *testing.T) {
				b, _ := os.ReadFile(lockPath)
				os.WriteFile(lockPath+".edit", []byte(strings.Replace(string(b), `"threshold": 3`, `"threshold": 4`, 1)), 0o600)
			},
			lock: lockPath + ".edit", want: "lock_hash",
		},
		"wrong password": {
			mutate: func(t *testing.T) {
				wrong := filepath.Join(t.TempDir(), "keys")
				os.MkdirAll(wrong, 0o700)
				b, _ := os.ReadFile(filepath.Join(keys, KeystoreFileName(0)))
				os.WriteFile(filepath.Join(wrong, KeystoreFileName(0)), b, 0o600)
				os.WriteFile(filepath.Join(wrong, PasswordFile), []byte("not-the-password\n"), 0o600)
				keys = wrong
			},
			want: "wrong password",
		},
		"share of another node": {
			mutate: func(t *testing.T) { keys = filepath.Join(n2, KeysDirName) },
			want:   "is not share 1",
		},
		"p2p key not in lock": {
			mutate: func(t *testing.T) {
				other, _ := createTestCluster(t, 1)
				lockPath = filepath.Join(other, NodeDirName(1), LockFileName)
			},
			want: "not an operator",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			lockPath, keys = filepath.Join(n1, LockFileName), filepath.Join(n1, KeysDirName)
			c.mutate(t)
			lp := lockPath
			if c.lock != "" {
				lp = c.lock
			}
			_, err := LoadIdentity(lp, filepath.Join(n1, P2PKeyFileName), keys)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}
