package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// api is a minimal client of the beacon node's standard REST API: the harness reads the chain
// itself, independently of dvmesh's go-eth2-client.
type api struct {
	base string
	c    http.Client
}

func (a *api) do(method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, trunc(b, 300))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func http10s() http.Client { return http.Client{Timeout: 10 * time.Second} }

func (a *api) get(path string, out any) error { _, err := a.do("GET", path, nil, out); return err }

func trunc(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func u64(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }

func idList(from, to int) []string {
	var ids []string
	for i := from; i <= to; i++ {
		ids = append(ids, strconv.Itoa(i))
	}
	return ids
}

// liveness asks which of the validators were live in epoch (current or previous epoch only).
func (a *api) liveness(epoch uint64, ids []string) (map[uint64]bool, error) {
	var r struct {
		Data []struct {
			Index  string `json:"index"`
			IsLive bool   `json:"is_live"`
		} `json:"data"`
	}
	if _, err := a.do("POST", fmt.Sprintf("/eth/v1/validator/liveness/%d", epoch), ids, &r); err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, l := range r.Data {
		out[u64(l.Index)] = l.IsLive
	}
	return out, nil
}

// headSlot is the slot of the beacon node's head block.
func (a *api) headSlot() (uint64, error) {
	var r struct {
		Data struct {
			Header struct {
				Message struct {
					Slot string `json:"slot"`
				} `json:"message"`
			} `json:"header"`
		} `json:"data"`
	}
	if err := a.get("/eth/v1/beacon/headers/head", &r); err != nil {
		return 0, err
	}
	return u64(r.Data.Header.Message.Slot), nil
}

func (a *api) finality() (justified, finalized uint64, err error) {
	var r struct {
		Data struct {
			CurrentJustified struct{ Epoch string } `json:"current_justified"`
			Finalized        struct{ Epoch string } `json:"finalized"`
		} `json:"data"`
	}
	if err := a.get("/eth/v1/beacon/states/head/finality_checkpoints", &r); err != nil {
		return 0, 0, err
	}
	return u64(r.Data.CurrentJustified.Epoch), u64(r.Data.Finalized.Epoch), nil
}

func (a *api) proposerDuties(epoch uint64) (map[uint64]uint64, error) {
	var r struct {
		Data []struct {
			ValidatorIndex string `json:"validator_index"`
			Slot           string `json:"slot"`
		} `json:"data"`
	}
	if err := a.get(fmt.Sprintf("/eth/v1/validator/duties/proposer/%d", epoch), &r); err != nil {
		return nil, err
	}
	out := map[uint64]uint64{}
	for _, d := range r.Data {
		out[u64(d.Slot)] = u64(d.ValidatorIndex)
	}
	return out, nil
}

func (a *api) balances(state string, ids []string) (map[uint64]uint64, error) {
	var r struct {
		Data []struct {
			Index   string `json:"index"`
			Balance string `json:"balance"`
		} `json:"data"`
	}
	if err := a.get("/eth/v1/beacon/states/"+state+"/validator_balances?id="+strings.Join(ids, ","), &r); err != nil {
		return nil, err
	}
	out := map[uint64]uint64{}
	for _, b := range r.Data {
		out[u64(b.Index)] = u64(b.Balance)
	}
	return out, nil
}

func (a *api) pubkeys(ids []string) (map[uint64]string, error) {
	var r struct {
		Data []struct {
			Index     string `json:"index"`
			Validator struct {
				Pubkey string `json:"pubkey"`
			} `json:"validator"`
		} `json:"data"`
	}
	if err := a.get("/eth/v1/beacon/states/head/validators?id="+strings.Join(ids, ","), &r); err != nil {
		return nil, err
	}
	out := map[uint64]string{}
	for _, v := range r.Data {
		out[u64(v.Index)] = strings.ToLower(v.Validator.Pubkey)
	}
	return out, nil
}

// syncCommittee is the head state's current sync committee: position -> validator index.
func (a *api) syncCommittee() ([]uint64, error) {
	var r struct {
		Data struct {
			Validators []string `json:"validators"`
		} `json:"data"`
	}
	if err := a.get("/eth/v1/beacon/states/head/sync_committees", &r); err != nil {
		return nil, err
	}
	out := make([]uint64, len(r.Data.Validators))
	for i, v := range r.Data.Validators {
		out[i] = u64(v)
	}
	return out, nil
}

// block is what the checks need of a signed beacon block.
type block struct {
	Slot, Proposer uint64
	Graffiti       string // printable prefix
	SyncBits       []byte // sync_aggregate.sync_committee_bits
	Attestations   int
	Votes          []vote // what the attestations vote for
}

// vote summarises one attestation of a block: its slot, head vote and how many bits it has.
type vote struct {
	Slot uint64
	Head string // short root
	Bits int
}

// block returns the block with the given id (slot or root); nil, nil when there is none.
func (a *api) block(id string) (*block, error) {
	var r struct {
		Data struct {
			Message struct {
				Slot          string `json:"slot"`
				ProposerIndex string `json:"proposer_index"`
				Body          struct {
					Graffiti      string            `json:"graffiti"`
					Attestations  []json.RawMessage `json:"attestations"`
					SyncAggregate struct {
						Bits string `json:"sync_committee_bits"`
					} `json:"sync_aggregate"`
				} `json:"body"`
			} `json:"message"`
		} `json:"data"`
	}
	code, err := a.do("GET", "/eth/v2/beacon/blocks/"+id, nil, &r)
	if code == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := r.Data.Message
	g, _ := hex.DecodeString(strings.TrimPrefix(m.Body.Graffiti, "0x"))
	bits, _ := hex.DecodeString(strings.TrimPrefix(m.Body.SyncAggregate.Bits, "0x"))
	b := &block{Slot: u64(m.Slot), Proposer: u64(m.ProposerIndex), Graffiti: strings.TrimRight(string(g), "\x00"),
		SyncBits: bits, Attestations: len(m.Body.Attestations)}
	for _, raw := range m.Body.Attestations {
		var att struct {
			Bits string `json:"aggregation_bits"`
			Data struct {
				Slot string `json:"slot"`
				Head string `json:"beacon_block_root"`
			} `json:"data"`
		}
		if json.Unmarshal(raw, &att) != nil {
			continue
		}
		ab, _ := hex.DecodeString(strings.TrimPrefix(att.Bits, "0x"))
		n := 0
		for _, x := range ab {
			for ; x != 0; x &= x - 1 {
				n++
			}
		}
		b.Votes = append(b.Votes, vote{Slot: u64(att.Data.Slot), Head: att.Data.Head[:min(len(att.Data.Head), 10)], Bits: n - 1}) // minus the bitlist's length bit
	}
	return b, nil
}

// seenBlock is a block the beacon node imported, as its event stream announced it.
type seenBlock struct {
	Root    string
	Arrival time.Duration // after its slot started
	Block   *block
}

// blockEvents follows /eth/v1/events?topics=block and records every imported block with its
// arrival time in its slot.
type blockEvents struct {
	mu   sync.Mutex
	seen map[uint64][]seenBlock
	errs int
}

func followBlocks(ctx context.Context, a *api, d *devnet, logf func(string, ...any)) *blockEvents {
	be := &blockEvents{seen: map[uint64][]seenBlock{}}
	go func() {
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", a.base+"/eth/v1/events?topics=block", nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				if resp != nil {
					resp.Body.Close()
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Text()
				data, ok := strings.CutPrefix(line, "data:")
				if !ok {
					continue
				}
				now := time.Now()
				var ev struct {
					Slot  string `json:"slot"`
					Block string `json:"block"`
				}
				if json.Unmarshal([]byte(strings.TrimSpace(data)), &ev) != nil || ev.Block == "" {
					continue
				}
				slot := u64(ev.Slot)
				go func() {
					b, err := a.block(ev.Block)
					be.mu.Lock()
					defer be.mu.Unlock()
					if err != nil || b == nil {
						be.errs++
						return
					}
					be.seen[slot] = append(be.seen[slot], seenBlock{Root: ev.Block, Arrival: now.Sub(d.slotStart(slot)), Block: b})
				}()
			}
			resp.Body.Close()
		}
	}()
	return be
}

func (be *blockEvents) at(slot uint64) []seenBlock {
	be.mu.Lock()
	defer be.mu.Unlock()
	return append([]seenBlock(nil), be.seen[slot]...)
}

// bit reports bit i of an SSZ bitvector.
func bit(b []byte, i int) bool { return i/8 < len(b) && b[i/8]>>(i%8)&1 == 1 }
