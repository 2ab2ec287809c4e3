package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// proc is one child process this harness started; it is stopped by its pid only.
type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(name, logPath string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, args: args, log: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Own process group: a Ctrl-C on the terminal reaches the harness only, which then stops
	// every child in order.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and, after grace, SIGKILL.
func (p *proc) stop(grace time.Duration) {
	if p == nil || !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ports are the devnet's listening ports, all picked free on 127.0.0.1 so that runs of other
// engineers on the same machine do not collide.
type ports struct {
	BeaconHTTP, BeaconGRPC, BeaconMon, BeaconP2PTCP, BeaconP2PUDP, BeaconP2PQUIC int
	ValidatorMon, ValidatorRPC, ValidatorHTTP                                    int
	GethHTTP, GethAuth, GethP2P                                                  int
	DvmeshP2P, DvmeshMon, DvmeshAdmin                                            int // first of 4 consecutive
}

func freePorts() (ports, error) {
	var p ports
	used := map[int]bool{}
	one := func() (int, error) {
		for range 50 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil || used[port] {
				continue
			}
			u.Close()
			used[port] = true
			return port, nil
		}
		return 0, fmt.Errorf("no free port")
	}
	block := func() (int, error) { // 4 consecutive free TCP ports
		for base := 20000 + int(time.Now().UnixNano()%20000); base < 60000; base += 7 {
			ok := true
			for i := range 4 {
				l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
				if err != nil || used[base+i] {
					ok = false
					break
				}
				l.Close()
			}
			if ok {
				for i := range 4 {
					used[base+i] = true
				}
				return base, nil
			}
		}
		return 0, fmt.Errorf("no 4 consecutive free ports")
	}
	var err error
	for _, dst := range []*int{&p.BeaconHTTP, &p.BeaconGRPC, &p.BeaconMon, &p.BeaconP2PTCP, &p.BeaconP2PUDP, &p.BeaconP2PQUIC,
		&p.ValidatorMon, &p.ValidatorRPC, &p.ValidatorHTTP, &p.GethHTTP, &p.GethAuth, &p.GethP2P} {
		if *dst, err = one(); err != nil {
			return p, err
		}
	}
	for _, dst := range []*int{&p.DvmeshP2P, &p.DvmeshMon, &p.DvmeshAdmin} {
		if *dst, err = block(); err != nil {
			return p, err
		}
	}
	return p, nil
}

// chainParams is the devnet's shape.
type chainParams struct {
	fork            string // "fulu" or "electra"
	slotsPerEpoch   int
	secondsPerSlot  int
	validators      int // genesis validators
	localValidators int // Prysm's own validator client runs 0..localValidators-1
	genesisDelay    time.Duration
	subscribeAll    bool // beacon-chain --subscribe-all-subnets
	feeRecipient    string
}

// genesisForkVersion is the devnet's genesis fork version (config.yml below).
const genesisForkVersion = "0x20000089"

// devnet is a running geth + Prysm beacon-chain + Prysm validator client.
type devnet struct {
	dir        string
	ports      ports
	genesis    time.Time
	procs      []*proc // geth, beacon, validator
	beaconURL  string
	params     chainParams
	slotLength time.Duration
}

// startDevnet writes the genesis (see /work/shared/devnet/NOTES.md for why each step is there)
// and starts the three processes. It returns as soon as they are started; slot 0 is
// genesisDelay later.
func startDevnet(binDir, dir string, cp chainParams, pt ports) (*devnet, error) {
	bin := func(n string) string { return filepath.Join(binDir, n) }
	for _, d := range []string{"geth", "beacon", "validator", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	fuluEpoch := "0"
	if cp.fork != "fulu" {
		fuluEpoch = "18446744073709551615"
	}
	genesis := time.Now().Add(cp.genesisDelay).Truncate(time.Second)
	cfg := fmt.Sprintf(`CONFIG_NAME: dvmesh-devnet
PRESET_BASE: mainnet
MIN_GENESIS_ACTIVE_VALIDATOR_COUNT: %d
MIN_GENESIS_TIME: 0
GENESIS_DELAY: 0
GENESIS_FORK_VERSION: %s
ALTAIR_FORK_VERSION: 0x20000090
ALTAIR_FORK_EPOCH: 0
BELLATRIX_FORK_VERSION: 0x20000091
BELLATRIX_FORK_EPOCH: 0
TERMINAL_TOTAL_DIFFICULTY: 0
CAPELLA_FORK_VERSION: 0x20000092
CAPELLA_FORK_EPOCH: 0
DENEB_FORK_VERSION: 0x20000093
DENEB_FORK_EPOCH: 0
ELECTRA_FORK_VERSION: 0x20000094
ELECTRA_FORK_EPOCH: 0
FULU_FORK_VERSION: 0x20000095
FULU_FORK_EPOCH: %s
SECONDS_PER_SLOT: %d
SLOTS_PER_EPOCH: %d
SECONDS_PER_ETH1_BLOCK: %d
ETH1_FOLLOW_DISTANCE: 12
MIN_VALIDATOR_WITHDRAWABILITY_DELAY: 1
SHARD_COMMITTEE_PERIOD: 1
DEPOSIT_CHAIN_ID: 1337
DEPOSIT_NETWORK_ID: 1337
DEPOSIT_CONTRACT_ADDRESS: 0x4242424242424242424242424242424242424242
`, cp.validators, genesisForkVersion, fuluEpoch, cp.secondsPerSlot, cp.slotsPerEpoch, cp.secondsPerSlot)
	path := func(n string) string { return filepath.Join(dir, n) }
	if err := os.WriteFile(path("config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	jwt := make([]byte, 32)
	_, _ = rand.Read(jwt)
	if err := os.WriteFile(path("jwt.hex"), []byte(hex.EncodeToString(jwt)), 0o600); err != nil {
		return nil, err
	}
	// EL genesis base: geth's own dev genesis (it has the system contracts Prague needs);
	// forks newer than Osaka removed, Osaka at genesis only with Fulu.
	out, err := exec.Command(bin("geth"), "--dev", "dumpgenesis").Output()
	if err != nil {
		return nil, fmt.Errorf("geth --dev dumpgenesis: %w", err)
	}
	g, err := decodeJSON(out)
	if err != nil {
		return nil, fmt.Errorf("geth dev genesis: %w", err)
	}
	setOsaka := func(g map[string]any) {
		c, _ := g["config"].(map[string]any)
		delete(c, "bogotaTime")
		delete(c, "amsterdamTime")
		if cp.fork == "fulu" {
			c["osakaTime"] = genesis.Unix()
		} else {
			delete(c, "osakaTime")
		}
	}
	setOsaka(g)
	if err := writeJSON(path("genesis.base.json"), g); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin("prysmctl"), "testnet", "generate-genesis", "--fork="+cp.fork,
		"--num-validators="+strconv.Itoa(cp.validators), "--genesis-time="+strconv.FormatInt(genesis.Unix(), 10),
		"--chain-config-file="+path("config.yml"), "--geth-genesis-json-in="+path("genesis.base.json"),
		"--geth-genesis-json-out="+path("genesis.json"), "--output-ssz="+path("genesis.ssz")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("prysmctl generate-genesis: %v\n%s", err, lastLines(string(out), 10))
	}
	// prysmctl's own go-ethereum may drop osakaTime: set it again.
	b, err := os.ReadFile(path("genesis.json"))
	if err != nil {
		return nil, err
	}
	if g, err = decodeJSON(b); err != nil {
		return nil, fmt.Errorf("genesis.json: %w", err)
	}
	setOsaka(g)
	if err := writeJSON(path("genesis.json"), g); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin("geth"), "--datadir", path("geth"), "init", "--state.scheme=path", path("genesis.json")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("geth init: %v\n%s", err, lastLines(string(out), 10))
	}

	d := &devnet{dir: dir, ports: pt, genesis: genesis, params: cp, slotLength: time.Duration(cp.secondsPerSlot) * time.Second,
		beaconURL: fmt.Sprintf("http://127.0.0.1:%d", pt.BeaconHTTP)}
	logs := func(n string) string { return filepath.Join(dir, "logs", n+".log") }
	p, err := startProc("geth", logs("geth"), bin("geth"), "--datadir", path("geth"), "--networkid", "1337", "--syncmode", "full",
		"--state.scheme=path", "--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(pt.GethHTTP),
		"--http.api", "eth,net,web3,engine,admin,debug", "--authrpc.addr", "127.0.0.1", "--authrpc.port", strconv.Itoa(pt.GethAuth),
		"--authrpc.vhosts", "localhost,127.0.0.1", "--authrpc.jwtsecret", path("jwt.hex"),
		"--nodiscover", "--maxpeers", "0", "--nat", "none", "--netrestrict", "127.0.0.0/8", "--port", strconv.Itoa(pt.GethP2P),
		"--ipcdisable", "--cache", "256", "--verbosity", "3")
	if err != nil {
		return d, err
	}
	d.procs = append(d.procs, p)
	beaconArgs := []string{bin("beacon-chain"), "--datadir", path("beacon"), "--accept-terms-of-use", "--force-clear-db",
		"--chain-config-file=" + path("config.yml"), "--genesis-state=" + path("genesis.ssz"), "--chain-id=1337",
		"--contract-deployment-block=0", "--interop-eth1data-votes",
		fmt.Sprintf("--execution-endpoint=http://127.0.0.1:%d", pt.GethAuth), "--jwt-secret=" + path("jwt.hex"),
		"--min-sync-peers=0", "--minimum-peers-per-subnet=0", "--no-discovery", "--bootstrap-node=",
		"--p2p-local-ip=127.0.0.1", "--p2p-host-ip=127.0.0.1", "--p2p-static-id", "--p2p-max-peers=0",
		"--p2p-tcp-port=" + strconv.Itoa(pt.BeaconP2PTCP), "--p2p-udp-port=" + strconv.Itoa(pt.BeaconP2PUDP),
		"--p2p-quic-port=" + strconv.Itoa(pt.BeaconP2PQUIC), "--subscribe-all-data-subnets",
		"--rpc-host=127.0.0.1", "--rpc-port=" + strconv.Itoa(pt.BeaconGRPC),
		"--http-host=127.0.0.1", "--http-port=" + strconv.Itoa(pt.BeaconHTTP),
		"--monitoring-host=127.0.0.1", "--monitoring-port=" + strconv.Itoa(pt.BeaconMon),
		"--suggested-fee-recipient=" + cp.feeRecipient}
	if cp.subscribeAll {
		beaconArgs = append(beaconArgs, "--subscribe-all-subnets")
	}
	if p, err = startProc("beacon", logs("beacon"), beaconArgs...); err != nil {
		return d, err
	}
	d.procs = append(d.procs, p)
	if p, err = startProc("validator", logs("validator"), bin("validator"), "--datadir", path("validator"), "--accept-terms-of-use",
		"--force-clear-db", "--chain-config-file="+path("config.yml"), fmt.Sprintf("--beacon-rpc-provider=127.0.0.1:%d", pt.BeaconGRPC),
		"--interop-num-validators="+strconv.Itoa(cp.localValidators), "--interop-start-index=0",
		"--monitoring-host=127.0.0.1", "--monitoring-port="+strconv.Itoa(pt.ValidatorMon),
		"--rpc-port="+strconv.Itoa(pt.ValidatorRPC), "--http-port="+strconv.Itoa(pt.ValidatorHTTP),
		"--suggested-fee-recipient="+cp.feeRecipient); err != nil {
		return d, err
	}
	d.procs = append(d.procs, p)
	return d, nil
}

// stop stops the validator client, then the beacon node, then geth.
func (d *devnet) stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].stop(15 * time.Second)
	}
}

// died names a devnet process that exited, or "".
func (d *devnet) died() string {
	for _, p := range d.procs {
		if !p.alive() {
			return fmt.Sprintf("%s exited (%v); its log %s ends:\n%s", p.name, p.cmd.ProcessState, p.log, tailFile(p.log, 15))
		}
	}
	return ""
}

func (d *devnet) slotStart(slot uint64) time.Time {
	return d.genesis.Add(time.Duration(slot) * d.slotLength)
}

func (d *devnet) currentSlot() uint64 {
	if time.Now().Before(d.genesis) {
		return 0
	}
	return uint64(time.Since(d.genesis) / d.slotLength)
}

// decodeJSON keeps numbers as written (json.Number): a genesis file has integers beyond float64.
func decodeJSON(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, ok := m["config"].(map[string]any); !ok {
		return nil, fmt.Errorf("no config object")
	}
	return m, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return "    " + lastLines(string(b), n)
}
