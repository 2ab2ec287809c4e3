package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dvmesh/dvmesh/node"
)

// dnode is one `dvmesh run` process of the cluster.
type dnode struct {
	index      int
	dir        string // node folder written by create-cluster
	dataDir    string
	monitoring string
	args       []string
	p          *proc
	logPath    string
}

// createCluster runs `dvmesh create-cluster` for the interop validators.
func createCluster(exe, out string, first, last int, feeRecipient string, p2pBase int) (string, error) {
	b, err := exec.Command(exe, "create-cluster", "--network", "devnet", "--genesis-fork-version", genesisForkVersion,
		"--interop-validators", fmt.Sprintf("%d-%d", first, last), "--fee-recipient", feeRecipient,
		"--nodes", "4", "--threshold", "3", "--p2p-base-port", strconv.Itoa(p2pBase), "--name", "devnet", "--out", out).CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("dvmesh create-cluster: %v\n%s", err, b)
	}
	return string(b), nil
}

func startNodes(exe, clusterDir, runDir, beaconURL string, pt ports) ([]*dnode, error) {
	var nodes []*dnode
	for i := 1; i <= 4; i++ {
		n := &dnode{index: i, dir: filepath.Join(clusterDir, node.NodeDirName(i)), dataDir: filepath.Join(runDir, node.NodeDirName(i)+"-data"),
			monitoring: fmt.Sprintf("127.0.0.1:%d", pt.DvmeshMon+i-1), logPath: filepath.Join(runDir, "logs", node.NodeDirName(i)+".log")}
		n.args = []string{exe, "run", "--node-dir", n.dir, "--data-dir", n.dataDir, "--beacon-url", beaconURL,
			"--monitoring-addr", n.monitoring, "--admin-addr", fmt.Sprintf("127.0.0.1:%d", pt.DvmeshAdmin+i-1)}
		if err := n.start(); err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func (n *dnode) start() error {
	p, err := startProc(node.NodeDirName(n.index), n.logPath, n.args...)
	if err != nil {
		return err
	}
	n.p = p
	return nil
}

func (n *dnode) status() (*node.Status, error) {
	var st node.Status
	if err := getMon(n.monitoring, "/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (n *dnode) records() ([]node.DutyRecord, error) {
	var rs []node.DutyRecord
	err := getMon(n.monitoring, "/duties", &rs)
	return rs, err
}

// metrics returns the node's Prometheus samples as "name{labels}" -> value.
func (n *dnode) metrics() (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + n.monitoring + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "dvmesh_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func getMon(addr, path string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// exportSlashing runs `dvmesh slashing export` on a stopped node's data directory.
func exportSlashing(exe string, n *dnode, file string) error {
	_ = os.Remove(file)
	if b, err := exec.Command(exe, "slashing", "export", "--data-dir", n.dataDir, file).CombinedOutput(); err != nil {
		return fmt.Errorf("node %d: dvmesh slashing export: %v %s", n.index, err, b)
	}
	return nil
}

// interchange is EIP-3076's format, as far as the union check needs it.
type interchange struct {
	Metadata struct {
		GenesisValidatorsRoot string `json:"genesis_validators_root"`
	} `json:"metadata"`
	Data []struct {
		Pubkey       string `json:"pubkey"`
		SignedBlocks []struct {
			Slot        string `json:"slot"`
			SigningRoot string `json:"signing_root"`
		} `json:"signed_blocks"`
		SignedAttestations []struct {
			SourceEpoch string `json:"source_epoch"`
			TargetEpoch string `json:"target_epoch"`
			SigningRoot string `json:"signing_root"`
		} `json:"signed_attestations"`
	} `json:"data"`
}

// slashingUnion merges the nodes' exported histories and counts, per validator, the pairs of
// slashable messages: two blocks for one slot with different signing roots, two attestations
// for one target with different roots (double vote), and surround votes. Records without a
// signing root cannot be told apart, so two of them for one slot or target count as a conflict.
type unionResult struct {
	validators, blocks, attestations int
	conflicts                        []string
	gvrs                             map[string]bool
}

func slashingUnion(files []string) (unionResult, error) {
	res := unionResult{gvrs: map[string]bool{}}
	type att struct{ src, tgt uint64 }
	blocks := map[string]map[uint64]map[string]bool{}
	atts := map[string]map[att]map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return res, err
		}
		var ic interchange
		if err := json.Unmarshal(b, &ic); err != nil {
			return res, fmt.Errorf("%s: %w", f, err)
		}
		res.gvrs[strings.ToLower(ic.Metadata.GenesisValidatorsRoot)] = true
		for _, d := range ic.Data {
			pk := strings.ToLower(d.Pubkey)
			if blocks[pk] == nil {
				blocks[pk], atts[pk] = map[uint64]map[string]bool{}, map[att]map[string]bool{}
			}
			for _, sb := range d.SignedBlocks {
				s, _ := strconv.ParseUint(sb.Slot, 10, 64)
				if blocks[pk][s] == nil {
					blocks[pk][s] = map[string]bool{}
				}
				blocks[pk][s][strings.ToLower(sb.SigningRoot)] = true
			}
			for _, sa := range d.SignedAttestations {
				s, _ := strconv.ParseUint(sa.SourceEpoch, 10, 64)
				t, _ := strconv.ParseUint(sa.TargetEpoch, 10, 64)
				a := att{s, t}
				if atts[pk][a] == nil {
					atts[pk][a] = map[string]bool{}
				}
				atts[pk][a][strings.ToLower(sa.SigningRoot)] = true
			}
		}
	}
	short := func(pk string) string { return pk[:min(len(pk), 12)] }
	for pk := range blocks {
		res.validators++
		for s, roots := range blocks[pk] {
			res.blocks++
			if len(roots) > 1 {
				res.conflicts = append(res.conflicts, fmt.Sprintf("%s: %d different blocks signed for slot %d", short(pk), len(roots), s))
			}
		}
		byTarget := map[uint64]map[string]bool{}
		var list []att
		for a, roots := range atts[pk] {
			res.attestations++
			list = append(list, a)
			if byTarget[a.tgt] == nil {
				byTarget[a.tgt] = map[string]bool{}
			}
			for r := range roots {
				byTarget[a.tgt][fmt.Sprintf("%d/%s", a.src, r)] = true
			}
		}
		for t, set := range byTarget {
			if len(set) > 1 {
				res.conflicts = append(res.conflicts, fmt.Sprintf("%s: double vote, %d different attestations with target %d", short(pk), len(set), t))
			}
		}
		for _, a := range list {
			for _, b := range list {
				if a.src < b.src && b.tgt < a.tgt {
					res.conflicts = append(res.conflicts, fmt.Sprintf("%s: surround vote (%d,%d) surrounds (%d,%d)", short(pk), a.src, a.tgt, b.src, b.tgt))
				}
			}
		}
	}
	return res, nil
}
