package slashingdb

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// InterchangeVersion is the EIP-3076 interchange format version read and written.
const InterchangeVersion = "5"

// maxInterchangeSize bounds how much of an untrusted interchange is read.
const maxInterchangeSize = 1 << 30

type interchangeDoc struct {
	Metadata *interchangeMeta     `json:"metadata"`
	Data     []interchangeRecords `json:"data"`
}

type interchangeMeta struct {
	Version string `json:"interchange_format_version"`
	GVR     string `json:"genesis_validators_root"`
}

type interchangeRecords struct {
	Pubkey             string                   `json:"pubkey"`
	SignedBlocks       []interchangeBlock       `json:"signed_blocks"`
	SignedAttestations []interchangeAttestation `json:"signed_attestations"`
}

type interchangeBlock struct {
	Slot        string  `json:"slot"`
	SigningRoot *string `json:"signing_root,omitempty"`
}

type interchangeAttestation struct {
	SourceEpoch string  `json:"source_epoch"`
	TargetEpoch string  `json:"target_epoch"`
	SigningRoot *string `json:"signing_root,omitempty"`
}

// parseInterchange decodes and validates a whole interchange before anything
// touches the database. It returns the keys in order of first appearance and
// their merged records.
func parseInterchange(r io.Reader, want phase0.Root) ([]phase0.BLSPubKey, map[phase0.BLSPubKey]*imported, error) {
	doc, err := decodeInterchange(r)
	if err != nil {
		return nil, nil, err
	}
	return parseDoc(doc, want)
}

// parseDoc is parseInterchange for a decoded document.
func parseDoc(doc *interchangeDoc, want phase0.Root) ([]phase0.BLSPubKey, map[phase0.BLSPubKey]*imported, error) {
	gvr, err := parseHex32(doc.Metadata.GVR)
	if err != nil {
		return nil, nil, fmt.Errorf("genesis_validators_root: %w", err)
	}
	if gvr != want {
		return nil, nil, fmt.Errorf("interchange has %#x, database has %#x: %w", gvr[:], want[:], ErrGenesisMismatch)
	}
	var keys []phase0.BLSPubKey
	data := map[phase0.BLSPubKey]*imported{}
	for i, d := range doc.Data {
		raw, err := parseHex(d.Pubkey, 48)
		if err != nil {
			return nil, nil, fmt.Errorf("data[%d].pubkey: %w", i, err)
		}
		pk := phase0.BLSPubKey(raw)
		p := data[pk]
		if p == nil {
			p = &imported{}
			data[pk] = p
			keys = append(keys, pk)
		}
		for j, b := range d.SignedBlocks {
			slot, err := parseUint(b.Slot)
			if err != nil {
				return nil, nil, fmt.Errorf("data[%d].signed_blocks[%d].slot: %w", i, j, err)
			}
			root, known, err := parseOptionalRoot(b.SigningRoot)
			if err != nil {
				return nil, nil, fmt.Errorf("data[%d].signed_blocks[%d].signing_root: %w", i, j, err)
			}
			p.blocks = append(p.blocks, blockRec{slot: slot, root: root, known: known})
		}
		for j, a := range d.SignedAttestations {
			source, err := parseUint(a.SourceEpoch)
			if err != nil {
				return nil, nil, fmt.Errorf("data[%d].signed_attestations[%d].source_epoch: %w", i, j, err)
			}
			target, err := parseUint(a.TargetEpoch)
			if err != nil {
				return nil, nil, fmt.Errorf("data[%d].signed_attestations[%d].target_epoch: %w", i, j, err)
			}
			root, known, err := parseOptionalRoot(a.SigningRoot)
			if err != nil {
				return nil, nil, fmt.Errorf("data[%d].signed_attestations[%d].signing_root: %w", i, j, err)
			}
			p.atts = append(p.atts, attRec{source: source, target: target, root: root, known: known})
		}
	}
	return keys, data, nil
}

func decodeInterchange(r io.Reader) (*interchangeDoc, error) {
	dec := json.NewDecoder(io.LimitReader(r, maxInterchangeSize))
	var doc interchangeDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode JSON: %v: %w", err, ErrBadInterchange)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON document: %w", ErrBadInterchange)
	}
	if doc.Metadata == nil {
		return nil, fmt.Errorf("metadata missing: %w", ErrBadInterchange)
	}
	if doc.Metadata.Version != InterchangeVersion {
		return nil, fmt.Errorf("interchange_format_version %q, want %q: %w", doc.Metadata.Version, InterchangeVersion, ErrBadInterchange)
	}
	return &doc, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal integer: %w", s, ErrBadInterchange)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %v: %w", s, err, ErrBadInterchange)
	}
	return v, nil
}

func parseHex(s string, n int) ([]byte, error) {
	if !strings.HasPrefix(s, "0x") || len(s) != 2+2*n {
		return nil, fmt.Errorf("%q is not 0x-prefixed hex of %d bytes: %w", s, n, ErrBadInterchange)
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, fmt.Errorf("%q: %v: %w", s, err, ErrBadInterchange)
	}
	return b, nil
}

func parseHex32(s string) (phase0.Root, error) {
	var r phase0.Root
	b, err := parseHex(s, 32)
	if err != nil {
		return r, err
	}
	copy(r[:], b)
	return r, nil
}

func parseOptionalRoot(s *string) (phase0.Root, bool, error) {
	if s == nil {
		return phase0.Root{}, false, nil
	}
	r, err := parseHex32(*s)
	if err != nil {
		return phase0.Root{}, false, err
	}
	return r, true, nil
}

// ExportInterchange writes every known key and its stored records as an
// EIP-3076 interchange document (format version "5"), from one consistent
// snapshot. Keys are ordered by public key, records by slot and target epoch;
// registered keys without records are written with empty lists, so that importing
// the document registers them. Records with an unknown root are written without
// signing_root. Watermarks are not part of the format, but every stored record
// lies at or above them, so an importer, which derives its watermarks from the
// lowest records, is at least as strict. The start-up guard is local state and
// is not exported.
func (db *DB) ExportInterchange(w io.Writer) error {
	if err := db.lockRead(); err != nil {
		return fmt.Errorf("slashingdb: export interchange: %w", err)
	}
	doc := interchangeDoc{
		Metadata: &interchangeMeta{Version: InterchangeVersion, GVR: "0x" + hex.EncodeToString(db.gvr[:])},
		Data:     make([]interchangeRecords, 0, len(db.byNum)),
	}
	vals := slices.Clone(db.byNum)
	slices.SortFunc(vals, func(a, b *validator) int { return bytes.Compare(a.pubkey[:], b.pubkey[:]) })
	for _, v := range vals {
		recs := interchangeRecords{
			Pubkey:             "0x" + hex.EncodeToString(v.pubkey[:]),
			SignedBlocks:       make([]interchangeBlock, 0, len(v.blocks)),
			SignedAttestations: make([]interchangeAttestation, 0, len(v.atts)),
		}
		for _, r := range v.blocks {
			recs.SignedBlocks = append(recs.SignedBlocks, interchangeBlock{
				Slot: strconv.FormatUint(r.slot, 10), SigningRoot: exportRoot(r.root, r.known),
			})
		}
		for _, r := range v.atts {
			recs.SignedAttestations = append(recs.SignedAttestations, interchangeAttestation{
				SourceEpoch: strconv.FormatUint(r.source, 10), TargetEpoch: strconv.FormatUint(r.target, 10),
				SigningRoot: exportRoot(r.root, r.known),
			})
		}
		doc.Data = append(doc.Data, recs)
	}
	db.mu.RUnlock()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("slashingdb: export interchange: encode: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("slashingdb: export interchange: write: %w", err)
	}
	return nil
}

func exportRoot(r phase0.Root, known bool) *string {
	if !known {
		return nil
	}
	s := "0x" + hex.EncodeToString(r[:])
	return &s
}
