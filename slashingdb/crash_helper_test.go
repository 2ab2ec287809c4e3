package slashingdb_test

// Helpers for crash_test.go: the released-message log format, the message
// generator of the crash child, the EIP-3076 pairwise checker, the "every
// release is in the DB" checker and the strace-based durability-ordering checker.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// crashValidators is how many keys the crash child signs for: few, so that
// conflicts between messages of one key are frequent.
const crashValidators = 3

// crashMsg is one signing request: an attestation, or a block when block is set.
type crashMsg struct {
	block          bool
	val            int
	source, target uint64
	slot           uint64
	root           phase0.Root
}

func crashPubkey(val int) phase0.BLSPubKey { return phase0.BLSPubKey{0xc7, 0x4a, byte(val)} }

// String is the message's line in the release log (without newline).
func (m crashMsg) String() string {
	if m.block {
		return fmt.Sprintf("B %d %d %x", m.val, m.slot, m.root[:])
	}
	return fmt.Sprintf("A %d %d %d %x", m.val, m.source, m.target, m.root[:])
}

func parseCrashMsg(line string) (crashMsg, error) {
	var m crashMsg
	f := strings.Fields(line)
	var nums []string
	switch {
	case len(f) == 4 && f[0] == "B":
		m.block = true
		nums = f[1:3]
	case len(f) == 5 && f[0] == "A":
		nums = f[1:4]
	default:
		return m, fmt.Errorf("malformed release line %q", line)
	}
	vals := make([]uint64, len(nums))
	for i, s := range nums {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return m, fmt.Errorf("release line %q: %w", line, err)
		}
		vals[i] = v
	}
	raw, err := hex.DecodeString(f[len(f)-1])
	if err != nil || len(raw) != 32 || vals[0] >= crashValidators {
		return m, fmt.Errorf("malformed release line %q", line)
	}
	m.val = int(vals[0])
	copy(m.root[:], raw)
	if m.block {
		m.slot = vals[1]
	} else {
		m.source, m.target = vals[1], vals[2]
	}
	return m, nil
}

// readReleaseLog parses every complete line of the release log. A torn last
// line (no newline) is ignored: it was never released, since release means the
// line's write and the following fsync both completed. A missing log is empty.
func readReleaseLog(path string) ([]crashMsg, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var ms []crashMsg
	for line := range strings.Lines(string(data)) {
		m, err := parseCrashMsg(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// crashGen generates the child's signing stream. It is seeded per restart and
// primed with the released history, so the stream continues across restarts and
// conflicts straddle the kills.
type crashGen struct {
	rng       *rand.Rand
	maxTarget [crashValidators]uint64
	maxSlot   [crashValidators]uint64
	atts      [crashValidators][]crashMsg // recent requests, newest last
	blocks    [crashValidators][]crashMsg
}

func newCrashGen(seed uint64, history []crashMsg) *crashGen {
	g := &crashGen{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	for _, m := range history {
		g.note(m)
	}
	return g
}

func (g *crashGen) note(m crashMsg) {
	const keep = 8
	if m.block {
		g.maxSlot[m.val] = max(g.maxSlot[m.val], m.slot)
		g.blocks[m.val] = append(g.blocks[m.val], m)
		if len(g.blocks[m.val]) > keep {
			g.blocks[m.val] = g.blocks[m.val][1:]
		}
		return
	}
	g.maxTarget[m.val] = max(g.maxTarget[m.val], m.target)
	g.atts[m.val] = append(g.atts[m.val], m)
	if len(g.atts[m.val]) > keep {
		g.atts[m.val] = g.atts[m.val][1:]
	}
}

func (g *crashGen) root() phase0.Root {
	var r phase0.Root
	for i := 0; i < len(r); i += 8 {
		v := g.rng.Uint64()
		for j := range 8 {
			r[i+j] = byte(v >> (8 * j))
		}
	}
	return r
}

// pick returns one of the newest requests, favouring the very recent.
func (g *crashGen) pick(recent []crashMsg) crashMsg {
	return recent[len(recent)-1-g.rng.IntN(min(len(recent), 4))]
}

// nextBatch returns one to three requests of one kind (one DB call). Every
// request is noted at once, so a batch can conflict with itself.
func (g *crashGen) nextBatch() []crashMsg {
	n := 1
	if g.rng.IntN(5) == 0 {
		n = 2 + g.rng.IntN(2)
	}
	block := g.rng.IntN(3) == 0
	batch := make([]crashMsg, 0, n)
	for range n {
		val := g.rng.IntN(crashValidators)
		m := g.nextAtt(val)
		if block {
			m = g.nextBlock(val)
		}
		g.note(m)
		batch = append(batch, m)
	}
	return batch
}

// nextAtt: 40% fresh, else a deliberate conflict with a recent request (double
// vote, surrounding, surrounded) or an identical re-sign.
func (g *crashGen) nextAtt(val int) crashMsg {
	recent := g.atts[val]
	r := g.rng.IntN(10)
	if len(recent) == 0 || r < 4 {
		target := g.maxTarget[val] + 1 + uint64(g.rng.IntN(2))
		return crashMsg{val: val, source: target - 1 - min(target-1, uint64(g.rng.IntN(3))), target: target, root: g.root()}
	}
	p := g.pick(recent)
	m := crashMsg{val: val, source: p.source, target: p.target, root: g.root()}
	switch {
	case r < 6: // double vote: same target, new root, sometimes another source
		if p.source > 0 && g.rng.IntN(2) == 0 {
			m.source--
		}
	case r < 7 && p.source > 0: // surrounds p
		m.source, m.target = p.source-1, p.target+1
	case r < 8 && p.target-p.source >= 2: // surrounded by p
		m.source, m.target = p.source+1, p.target-1
	default: // identical re-sign
		m = p
	}
	return m
}

// nextBlock: 50% fresh slot, 30% second block at a recent slot, 20% re-sign.
func (g *crashGen) nextBlock(val int) crashMsg {
	recent := g.blocks[val]
	r := g.rng.IntN(10)
	if len(recent) == 0 || r < 5 {
		return crashMsg{block: true, val: val, slot: g.maxSlot[val] + 1 + uint64(g.rng.IntN(2)), root: g.root()}
	}
	p := g.pick(recent)
	if r < 8 {
		p.root = g.root()
	}
	return p
}

// slashable returns why a and b must never both be signed, or "" if they may:
// EIP-3076 double vote (same target, different data), surround vote either way,
// double block (same slot, different root). Identical re-signs are fine.
func slashable(a, b crashMsg) string {
	if a.val != b.val || a.block != b.block {
		return ""
	}
	if a.block {
		if a.slot == b.slot && a.root != b.root {
			return "double block"
		}
		return ""
	}
	switch {
	case a.target == b.target && (a.root != b.root || a.source != b.source):
		return "double vote"
	case a.source < b.source && b.target < a.target, b.source < a.source && a.target < b.target:
		return "surround vote"
	}
	return ""
}

// checkNoSlashablePairs compares every released message with every other one.
func checkNoSlashablePairs(ms []crashMsg) error {
	var errs []error
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			if why := slashable(ms[i], ms[j]); why != "" {
				errs = append(errs, fmt.Errorf("%s: release #%d %v and release #%d %v", why, i, ms[i], j, ms[j]))
				if len(errs) == 10 {
					return errors.Join(append(errs, errors.New("(more omitted)"))...)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// exportedSet parses an EIP-3076 interchange into the set of its records, each
// in release-log form, so released messages can be looked up by their line.
func exportedSet(doc []byte) (map[string]bool, error) {
	var ic struct {
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
	if err := json.Unmarshal(doc, &ic); err != nil {
		return nil, fmt.Errorf("decode interchange: %w", err)
	}
	vals := make(map[string]int)
	for v := range crashValidators {
		pk := crashPubkey(v)
		vals["0x"+hex.EncodeToString(pk[:])] = v
	}
	set := make(map[string]bool)
	for _, d := range ic.Data {
		v, ok := vals[strings.ToLower(d.Pubkey)]
		if !ok {
			return nil, fmt.Errorf("interchange has unexpected pubkey %s", d.Pubkey)
		}
		id := strconv.Itoa(v)
		for _, b := range d.SignedBlocks {
			set[strings.Join([]string{"B", id, b.Slot, strings.TrimPrefix(strings.ToLower(b.SigningRoot), "0x")}, " ")] = true
		}
		for _, a := range d.SignedAttestations {
			set[strings.Join([]string{"A", id, a.SourceEpoch, a.TargetEpoch, strings.TrimPrefix(strings.ToLower(a.SigningRoot), "0x")}, " ")] = true
		}
	}
	return set, nil
}

// checkAllInDB checks that every released message is a record of the exported
// interchange: same key and target, source and root, or same key, slot and root.
func checkAllInDB(ms []crashMsg, exported []byte) error {
	set, err := exportedSet(exported)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range ms {
		if !set[m.String()] {
			errs = append(errs, fmt.Errorf("release #%d %v is not in the database", i, m))
			if len(errs) == 10 {
				return errors.Join(append(errs, errors.New("(more omitted)"))...)
			}
		}
	}
	return errors.Join(errs...)
}

// sysEvent is one system call of a strace -f -xx trace. entry and exit are the
// trace line numbers where the call started and returned: strace serialises all
// threads' ptrace stops, so line order is the real order of those events.
type sysEvent struct {
	name        string
	args        string
	ret         int64
	done        bool // returned with ret >= 0
	entry, exit int
}

// parseStrace reads a trace written by strace -f -xx -o FILE, pairing
// "<unfinished ...>" lines with their "resumed" lines. Events are in entry order.
// Lines are split by hand: with -xx -s 1M a traced page write is a 16 KiB line.
func parseStrace(r io.Reader) ([]*sysEvent, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	var events []*sysEvent
	pending := make(map[string]*sysEvent)
	for n := 0; sc.Scan(); n++ {
		pid, rest, ok := splitStracePID(sc.Text())
		if !ok {
			continue
		}
		if name, text, ok := cutResumed(rest); ok {
			ev := pending[pid]
			if ev == nil || ev.name != name {
				return nil, fmt.Errorf("trace line %d: resumed call without start: %.80s", n+1, rest)
			}
			delete(pending, pid)
			finishEvent(ev, ev.args+text, n)
			continue
		}
		name, text, ok := strings.Cut(rest, "(")
		if !ok || !isSyscallName(name) {
			continue // signals, exits
		}
		ev := &sysEvent{name: name, entry: n}
		events = append(events, ev)
		if args, ok := strings.CutSuffix(text, " <unfinished ...>"); ok {
			ev.args = args
			pending[pid] = ev
			continue
		}
		finishEvent(ev, text, n)
	}
	return events, sc.Err()
}

// splitStracePID splits "1234  rest" or "[pid  1234] rest".
func splitStracePID(line string) (pid, rest string, ok bool) {
	line = strings.TrimPrefix(line, "[pid")
	line = strings.TrimLeft(line, " ")
	pid, rest, ok = strings.Cut(line, " ")
	pid = strings.TrimSuffix(pid, "]")
	if _, err := strconv.Atoi(pid); err != nil || !ok {
		return "", "", false
	}
	return pid, strings.TrimLeft(rest, " "), true
}

// cutResumed splits "<... name resumed>text".
func cutResumed(rest string) (name, text string, ok bool) {
	rest, ok = strings.CutPrefix(rest, "<... ")
	if !ok {
		return "", "", false
	}
	name, text, ok = strings.Cut(rest, " resumed>")
	return name, text, ok
}

func isSyscallName(s string) bool {
	for _, c := range s {
		if !(c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return s != ""
}

// finishEvent splits `args)   = ret ...` (strace pads before "="; with -xx no
// string argument holds a raw '=' or ')').
func finishEvent(ev *sysEvent, text string, line int) {
	ev.exit = line
	i := strings.LastIndex(text, "= ")
	args, ok := strings.CutSuffix(strings.TrimRight(text[:max(i, 0)], " "), ")")
	if i < 0 || !ok {
		ev.args = text
		return
	}
	ev.args = args
	f := strings.Fields(text[i+2:])
	if len(f) > 0 {
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil && v >= 0 {
			ev.ret, ev.done = v, true
		}
	}
}

// eventFD is the call's first argument as a descriptor.
func eventFD(ev *sysEvent) int {
	s, _, _ := strings.Cut(ev.args, ",")
	fd, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return fd
}

// eventString decodes the first "\xHH..." string argument.
func eventString(ev *sysEvent) []byte {
	_, s, ok := strings.Cut(ev.args, `"`)
	if !ok {
		return nil
	}
	s, _, _ = strings.Cut(s, `"`)
	b, err := hex.DecodeString(strings.ReplaceAll(s, `\x`, ""))
	if err != nil {
		return nil
	}
	return b
}

// orderingReport counts what checkDurabilityOrdering saw (releases counts
// messages, several per log write for a batch), so a caller can tell a vacuous
// pass (nothing traced) from a real one.
type orderingReport struct {
	releases, dbWrites, dbSyncs int
	notDurable, notFresh        []string // violations of the two rules
}

// checkDurabilityOrdering checks, in a trace of one crash child, that every
// release (a write to logPath of the lines one DB call allowed) is preceded by:
//   - content: a DB-file write whose data holds the released signing root, then
//     an fdatasync/fsync of the DB file that started after that write returned
//     and returned before the release write started. So the record itself was on
//     disk when the signature went out, whatever the page layout.
//   - freshness: if the release holds a message not released before, a DB-file
//     sync that started after the previous release returned and returned before
//     this one (a new record needs its own commit). A release of identical
//     re-signs only needs no commit: the DB may answer those without writing.
func checkDurabilityOrdering(events []*sysEvent, dbPath, logPath string) orderingReport {
	var rep orderingReport
	files := make(map[int]string) // open fd -> path
	var (
		writes      []dbWrite
		syncs       []*sysEvent
		prevRelease = -1
		seen        = make(map[crashMsg]bool) // messages released so far
	)
	for _, ev := range events {
		switch ev.name {
		case "openat":
			if ev.done {
				files[int(ev.ret)] = string(eventString(ev))
			}
		case "close":
			delete(files, eventFD(ev))
		case "pwrite64", "write":
			switch files[eventFD(ev)] {
			case dbPath:
				if ev.done {
					writes = append(writes, dbWrite{exit: ev.exit, data: eventString(ev)})
				}
			case logPath:
				checkRelease(&rep, ev, writes, syncs, prevRelease, seen)
				prevRelease = ev.exit
			}
		case "fdatasync", "fsync":
			if ev.done && files[eventFD(ev)] == dbPath {
				syncs = append(syncs, ev)
			}
		}
	}
	rep.dbWrites, rep.dbSyncs = len(writes), len(syncs)
	return rep
}

// dbWrite is a completed write to the DB file, its data decoded once.
type dbWrite struct {
	exit int
	data []byte
}

func checkRelease(rep *orderingReport, rel *sysEvent, writes []dbWrite, syncs []*sysEvent, prevRelease int, seen map[crashMsg]bool) {
	needFresh := false
	for line := range strings.Lines(string(eventString(rel))) {
		m, err := parseCrashMsg(strings.TrimSuffix(line, "\n"))
		if err != nil {
			rep.notDurable = append(rep.notDurable, fmt.Sprintf("trace line %d: %v", rel.entry+1, err))
			continue
		}
		rep.releases++
		needFresh = needFresh || !seen[m]
		seen[m] = true
		if !rootSynced(m.root, rel.entry, writes, syncs) {
			rep.notDurable = append(rep.notDurable, fmt.Sprintf("trace line %d: released %v before its root was written and synced to the DB file", rel.entry+1, m))
		}
	}
	fresh := false
	for _, s := range syncs {
		fresh = fresh || (s.entry > prevRelease && s.exit < rel.entry)
	}
	if needFresh && !fresh {
		rep.notFresh = append(rep.notFresh, fmt.Sprintf("trace line %d: new message released without a DB sync since the previous release", rel.entry+1))
	}
}

// rootSynced reports whether a DB write holding root returned before a DB sync
// started, and that sync returned before line before.
func rootSynced(root phase0.Root, before int, writes []dbWrite, syncs []*sysEvent) bool {
	for _, w := range writes {
		if !bytes.Contains(w.data, root[:]) {
			continue
		}
		for _, s := range syncs {
			if s.entry > w.exit && s.exit < before {
				return true
			}
		}
		return false // later writes of root return later still
	}
	return false
}
