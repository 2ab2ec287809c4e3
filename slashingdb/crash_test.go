package slashingdb_test

// Crash-safety tests. A child process (this test binary re-executed into
// TestCrashChild) signs a stream of attestations and blocks, many conflicting
// on purpose, through the DB and appends every released message to a log. The
// parent SIGKILLs it at random moments and restarts it on the same DB, then
// proves that (a) no two released messages are slashable together and (b) every
// released message is in the DB. SIGKILL keeps the page cache, so it cannot show
// that data reached the disk; TestCrashDurabilityOrdering proves with strace that
// the DB's data was fsynced before each release.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestantio/go-eth2-client/spec/phase0"

	"github.com/dvmesh/dvmesh/slashingdb"
)

// Environment of the crash child.
const (
	envChild = "DVMESH_CRASH_CHILD" // "1": TestCrashChild runs the child
	envDB    = "DVMESH_CRASH_DB"    // database path
	envLog   = "DVMESH_CRASH_LOG"   // release log path
	envSeed  = "DVMESH_CRASH_SEED"  // generator seed: the restart number
	envMax   = "DVMESH_CRASH_MAX"   // stop after this many DB calls (0: run until killed)
	envMode  = "DVMESH_CRASH_MODE"  // modeReleaseFirst: the broken signer of the negative controls
)

// modeReleaseFirst makes the child release every message before asking the DB,
// the bug the checkers must catch.
const modeReleaseFirst = "release-first"

var crashGVR = phase0.Root{0xc4, 0x54}

// crashEnv is where one crash scenario keeps its files.
type crashEnv struct{ db, log, refused string }

func newCrashEnv(t *testing.T) crashEnv {
	dir := t.TempDir()
	return crashEnv{db: filepath.Join(dir, "slashing.db"), log: filepath.Join(dir, "released.log"), refused: filepath.Join(dir, "refused.log")}
}

// childCmd returns the command running one child life, started by prefix
// (e.g. strace) if given.
func (e crashEnv) childCmd(seed, maxCalls int, mode string, prefix ...string) *exec.Cmd {
	args := append(prefix, os.Args[0], "-test.run=^TestCrashChild$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		envChild+"=1", envDB+"="+e.db, envLog+"="+e.log, envMode+"="+mode,
		envSeed+"="+strconv.Itoa(seed), envMax+"="+strconv.Itoa(maxCalls))
	return cmd
}

// TestCrashKillLoop kills the signing child at random moments, at least 200
// times (30 with -short), then checks the release log against the EIP-3076 rules
// and against the DB.
func TestCrashKillLoop(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill-delay seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	env := newCrashEnv(t)
	start := time.Now()
	for i := range iterations {
		// 5-60 ms after "ready": kills land in commits, fsyncs and log writes.
		runAndKill(t, env.childCmd(i, 0, ""), time.Duration(5+rng.IntN(56))*time.Millisecond)
	}
	t.Logf("%d kills in %v", iterations, time.Since(start).Round(time.Millisecond))

	released := mustReadLog(t, env.log)
	if err := checkNoSlashablePairs(released); err != nil {
		t.Errorf("released messages are slashable together:\n%v", err)
	}
	if err := checkAllInDB(released, exportDB(t, env.db)); err != nil {
		t.Errorf("released messages missing from the database after the last kill:\n%v", err)
	}
	checkConflictsExercised(t, released, env.refused)
}

// TestCrashKillLoopNegativeControl runs the kill loop with a child that releases
// before asking the DB, and requires the checkers of TestCrashKillLoop to catch
// it, so that their passing means something.
func TestCrashKillLoopNegativeControl(t *testing.T) {
	env := newCrashEnv(t)
	for i := range 20 {
		runAndKill(t, env.childCmd(i, 0, modeReleaseFirst), 60*time.Millisecond)
		released := mustReadLog(t, env.log)
		errPairs := checkNoSlashablePairs(released)
		errDB := checkAllInDB(released, exportDB(t, env.db))
		if errPairs != nil && errDB != nil {
			t.Logf("after %d kills, %d releases: caught as expected:\n%v\n%v", i+1, len(released), firstLine(errPairs), firstLine(errDB))
			return
		}
	}
	t.Fatal("checkers did not catch a child releasing before the DB check")
}

// runAndKill starts a child life, waits for "ready" (DB open), lets it sign for
// delay, SIGKILLs it and waits for it to be gone, so the next life can lock the DB.
func runAndKill(t *testing.T, cmd *exec.Cmd, delay time.Duration) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, readErr := bufio.NewReader(stdout).ReadString('\n')
	if readErr == nil && line == "ready\n" {
		time.Sleep(delay)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	var exit *exec.ExitError
	killed := errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	if readErr != nil || line != "ready\n" || !killed {
		t.Fatalf("child life failed: first line %q (%v), exit %v, stderr:\n%s", line, readErr, err, stderr.String())
	}
}

func mustReadLog(t *testing.T, path string) []crashMsg {
	t.Helper()
	ms, err := readReleaseLog(path)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// exportDB opens the DB as a fresh process would after the crash and exports it.
func exportDB(t *testing.T, path string) []byte {
	t.Helper()
	db, err := slashingdb.Open(path, crashGVR)
	if err != nil {
		t.Fatalf("reopen after the last kill: %v", err)
	}
	defer func() { _ = db.Close() }()
	var buf bytes.Buffer
	if err := db.ExportInterchange(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkConflictsExercised guards against a vacuous pass: the stream must have
// released many messages (including identical re-signs) and had conflicting
// requests refused for each EIP-3076 rule, and for no other reason (a refusal
// for another reason, e.g. an unregistered key, means the test lost its purpose).
func checkConflictsExercised(t *testing.T, released []crashMsg, refusedPath string) {
	t.Helper()
	data, err := os.ReadFile(refusedPath)
	if err != nil {
		t.Fatal(err)
	}
	rules := make(map[string]int)
	for _, r := range strings.Fields(string(data)) {
		rules[r]++
	}
	seen := make(map[crashMsg]bool)
	resigns := 0
	for _, m := range released {
		if seen[m] {
			resigns++
		}
		seen[m] = true
	}
	t.Logf("%d released (%d identical re-signs), refused by rule: %v", len(released), resigns, rules)
	for _, r := range []slashingdb.Rule{slashingdb.RuleDoubleVote, slashingdb.RuleSurrounding, slashingdb.RuleSurrounded, slashingdb.RuleDoubleBlock} {
		if rules[string(r)] == 0 {
			t.Errorf("no request refused with %s: conflicts not exercised", r)
		}
		delete(rules, string(r))
	}
	if len(rules) > 0 {
		t.Errorf("requests refused for unexpected reasons: %v", rules)
	}
	if len(released) < 100 || resigns == 0 {
		t.Errorf("only %d releases, %d re-signs: too few to prove anything", len(released), resigns)
	}
}

// TestCrashDurabilityOrdering proves with strace that each release happens after
// the DB file was fsynced with the released record (a SIGKILL keeps the page
// cache, so the kill loop cannot show this), and that the checker catches a
// child releasing before the DB call.
func TestCrashDurabilityOrdering(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (apt-get install strace): durability ordering not proven")
	}
	t.Run("release after commit", func(t *testing.T) {
		rep := traceChild(t, strace, "")
		if bad := append(rep.notDurable, rep.notFresh...); len(bad) > 0 {
			t.Errorf("%d releases not preceded by a DB sync, first ones:\n%s", len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
		}
		if rep.releases < 25 || rep.dbSyncs < rep.releases {
			t.Errorf("trace too thin to prove ordering: %d releases, %d DB syncs", rep.releases, rep.dbSyncs)
		}
	})
	t.Run("negative control release before commit", func(t *testing.T) {
		rep := traceChild(t, strace, modeReleaseFirst)
		if len(rep.notDurable) == 0 {
			t.Fatalf("checker missed releases made before the DB call (%d releases traced)", rep.releases)
		}
		t.Logf("caught %d of %d releases, first: %s", len(rep.notDurable), rep.releases, rep.notDurable[0])
	})
}

// TestCrashOrderingCheckerSynthetic feeds the durability-ordering checker
// hand-written traces of subtler bugs than the negative control's (sync after
// the release, sync still running on another thread, sync of the wrong file,
// write racing the sync, failed sync), so its passing means something.
func TestCrashOrderingCheckerSynthetic(t *testing.T) {
	m := crashMsg{val: 1, source: 2, target: 3, root: phase0.Root{0xde, 0xad, 31: 0x01}}
	page := append(make([]byte, 100), m.root[:]...)
	const (
		db     = "/d/slashing.db"
		log    = "/d/released.log"
		open   = "7 openat(AT_FDCWD, %s, O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 3\n7 openat(AT_FDCWD, %s, O_WRONLY|O_APPEND, 0600) = 4\n"
		pwrite = "7 pwrite64(3, %s, 132, 8192) = 132\n"
		sync   = "7 fdatasync(3)   = 0\n"
		rel    = "8 write(4, %s, 80) = 80\n"
	)
	head := fmt.Sprintf(open, straceHex([]byte(db)), straceHex([]byte(log)))
	w := fmt.Sprintf(pwrite, straceHex(page))
	r := fmt.Sprintf(rel, straceHex([]byte(m.String()+"\n")))
	for _, tc := range []struct {
		name, trace string
		ok          bool
	}{
		{"write sync release", w + sync + r, true},
		{"sync after release", w + r + sync, false},
		{"sync unfinished at release", w + "7 fdatasync(3 <unfinished ...>\n" + r + "7 <... fdatasync resumed>) = 0\n", false},
		{"sync of the log file", w + "7 fsync(4) = 0\n" + r, false},
		{"write racing the sync", "7 fdatasync(3 <unfinished ...>\n" + strings.Replace(w, "7", "9", 1) + "7 <... fdatasync resumed>) = 0\n" + r, false},
		{"failed sync", w + "7 fdatasync(3) = -1 EIO (Input/output error)\n" + r, false},
		{"root never written", sync + r, false},
	} {
		events, err := parseStrace(strings.NewReader(head + tc.trace))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		rep := checkDurabilityOrdering(events, db, log)
		if ok := len(rep.notDurable) == 0; ok != tc.ok || rep.releases != 1 {
			t.Errorf("%s: durable %v (%d releases), want %v: %v", tc.name, ok, rep.releases, tc.ok, rep.notDurable)
		}
	}
}

// straceHex renders b as strace -xx prints a string argument.
func straceHex(b []byte) string {
	var s strings.Builder
	s.WriteByte('"')
	for _, c := range b {
		fmt.Fprintf(&s, "\\x%02x", c)
	}
	s.WriteByte('"')
	return s.String()
}

// traceChild runs one child life of 60 DB calls on a fresh DB under strace and
// checks its trace.
func traceChild(t *testing.T, strace, mode string) orderingReport {
	t.Helper()
	env := newCrashEnv(t)
	trace := filepath.Join(t.TempDir(), "strace.out")
	// -xx: every string in hex, so paths and page contents decode exactly;
	// -s: whole pages, so the released root can be found in the DB writes.
	cmd := env.childCmd(1, 60, mode, strace, "-f", "-qq", "-xx", "-s", "1048576",
		"-e", "trace=openat,close,write,pwrite64,fsync,fdatasync", "-o", trace)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("traced child: %v\n%s", err, out)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	events, err := parseStrace(f)
	if err != nil {
		t.Fatal(err)
	}
	rep := checkDurabilityOrdering(events, env.db, env.log)
	t.Logf("%d releases, %d DB writes, %d DB syncs traced", rep.releases, rep.dbWrites, rep.dbSyncs)
	return rep
}

// TestCrashChild is the crash child; without envChild it does nothing.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		return
	}
	if err := crashChild(); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// crashChild is one child life: open the DB, continue the stream where the
// release log ends, release each allowed message.
func crashChild() error {
	seed, _ := strconv.Atoi(os.Getenv(envSeed))
	maxCalls, _ := strconv.Atoi(os.Getenv(envMax))
	releaseFirst := os.Getenv(envMode) == modeReleaseFirst
	history, err := trimTornTail(os.Getenv(envLog))
	if err != nil {
		return err
	}
	db, err := slashingdb.Open(os.Getenv(envDB), crashGVR)
	if err != nil {
		return err
	}
	pubkeys := make([]phase0.BLSPubKey, crashValidators)
	for v := range pubkeys {
		pubkeys[v] = crashPubkey(v)
	}
	// Unregistered keys are refused (RuleUnknownValidator); registering on every
	// start is idempotent and keeps the history.
	if err := db.Register(pubkeys); err != nil {
		return err
	}
	relLog, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	refLog, err := os.OpenFile(filepath.Join(filepath.Dir(os.Getenv(envLog)), "refused.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	gen := newCrashGen(uint64(seed), history)
	for n := 0; maxCalls == 0 || n < maxCalls; n++ {
		batch := gen.nextBatch()
		if releaseFirst {
			if err := release(relLog, batch); err != nil {
				return err
			}
		}
		verdicts, err := sign(db, batch)
		if err != nil {
			return err
		}
		var allowed []crashMsg
		for i, v := range verdicts {
			if !v.Allowed {
				if _, err := fmt.Fprintln(refLog, v.Rule); err != nil {
					return err
				}
			} else if !releaseFirst {
				allowed = append(allowed, batch[i])
			}
		}
		if err := release(relLog, allowed); err != nil {
			return err
		}
	}
	return db.Close()
}

// release appends the messages allowed by one DB call to the release log in
// one write and fsyncs it: once this returns the signatures count as out.
func release(f *os.File, ms []crashMsg) error {
	if len(ms) == 0 {
		return nil
	}
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.String() + "\n")
	}
	if _, err := f.WriteString(b.String()); err != nil {
		return err
	}
	return f.Sync()
}

// sign asks the DB about one batch (all attestations or all blocks).
func sign(db *slashingdb.DB, batch []crashMsg) ([]slashingdb.Verdict, error) {
	if batch[0].block {
		reqs := make([]slashingdb.BlockRequest, len(batch))
		for i, m := range batch {
			reqs[i] = slashingdb.BlockRequest{Pubkey: crashPubkey(m.val), Slot: phase0.Slot(m.slot), SigningRoot: m.root}
		}
		return db.CheckAndRecordBlocks(reqs)
	}
	reqs := make([]slashingdb.AttestationRequest, len(batch))
	for i, m := range batch {
		reqs[i] = slashingdb.AttestationRequest{Pubkey: crashPubkey(m.val), SourceEpoch: phase0.Epoch(m.source), TargetEpoch: phase0.Epoch(m.target), SigningRoot: m.root}
	}
	return db.CheckAndRecordAttestations(reqs)
}

// trimTornTail cuts a torn last line (killed inside the write) off the release
// log, so the next append starts on a fresh line, and returns the history. The
// cut bytes were never released: their fsync cannot have completed.
func trimTornTail(path string) ([]crashMsg, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if keep := bytes.LastIndexByte(data, '\n') + 1; keep < len(data) {
		if err := os.Truncate(path, int64(keep)); err != nil {
			return nil, err
		}
	}
	return readReleaseLog(path)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
