package slashingdb

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/attestantio/go-eth2-client/spec/phase0"
	bolt "go.etcd.io/bbolt"
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

// ImportInterchange reads an EIP-3076 interchange document (format version "5")
// and merges all its records into the database in one transaction: either all are
// imported or, on any error, none. The document's genesis validators root must
// equal the database's (ErrGenesisMismatch); any malformed content fails with
// ErrBadInterchange. The input is treated as untrusted.
//
// Every record is kept, including slashable ones: records for the same target or
// slot are merged into one with an unknown root, which refuses every later request
// for that target or slot. A record without signing_root never matches a request.
// Imported records also set the low watermarks (lowest source, target and slot)
// below which nothing is signed afterwards.
func (db *DB) ImportInterchange(r io.Reader) error {
	doc, err := decodeInterchange(r)
	if err != nil {
		return fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	gvr, err := parseHex32(doc.Metadata.GVR)
	if err != nil {
		return fmt.Errorf("slashingdb: import interchange: genesis_validators_root: %w", err)
	}
	if gvr != db.gvr {
		return fmt.Errorf("slashingdb: import interchange: interchange has %#x, database has %#x: %w", gvr[:], db.gvr[:], ErrGenesisMismatch)
	}
	// Parse everything before touching the database.
	type parsed struct {
		pubkey phase0.BLSPubKey
		blocks []uint64
		broots []blockRecord
		atts   [][2]uint64
		aroots []attRecord
	}
	all := make([]parsed, 0, len(doc.Data))
	for i, d := range doc.Data {
		var p parsed
		pk, err := parseHex(d.Pubkey, 48)
		if err != nil {
			return fmt.Errorf("slashingdb: import interchange: data[%d].pubkey: %w", i, err)
		}
		copy(p.pubkey[:], pk)
		for j, b := range d.SignedBlocks {
			slot, err := parseUint(b.Slot)
			if err != nil {
				return fmt.Errorf("slashingdb: import interchange: data[%d].signed_blocks[%d].slot: %w", i, j, err)
			}
			rec, err := parseOptionalRoot(b.SigningRoot)
			if err != nil {
				return fmt.Errorf("slashingdb: import interchange: data[%d].signed_blocks[%d].signing_root: %w", i, j, err)
			}
			p.blocks = append(p.blocks, slot)
			p.broots = append(p.broots, blockRecord{root: rec.root, known: rec.known})
		}
		for j, a := range d.SignedAttestations {
			source, err := parseUint(a.SourceEpoch)
			if err != nil {
				return fmt.Errorf("slashingdb: import interchange: data[%d].signed_attestations[%d].source_epoch: %w", i, j, err)
			}
			target, err := parseUint(a.TargetEpoch)
			if err != nil {
				return fmt.Errorf("slashingdb: import interchange: data[%d].signed_attestations[%d].target_epoch: %w", i, j, err)
			}
			rec, err := parseOptionalRoot(a.SigningRoot)
			if err != nil {
				return fmt.Errorf("slashingdb: import interchange: data[%d].signed_attestations[%d].signing_root: %w", i, j, err)
			}
			p.atts = append(p.atts, [2]uint64{source, target})
			p.aroots = append(p.aroots, attRecord{minSource: source, maxSource: source, root: rec.root, known: rec.known})
		}
		all = append(all, p)
	}

	err = db.bolt.Update(func(tx *bolt.Tx) error {
		for _, p := range all {
			if len(p.blocks) == 0 && len(p.atts) == 0 {
				continue
			}
			v, err := openValidator(tx, p.pubkey, true)
			if err != nil {
				return err
			}
			for j, slot := range p.blocks {
				rec := p.broots[j]
				prev, found, err := v.getBlock(slot)
				if err != nil {
					return fmt.Errorf("validator %#x: %w", p.pubkey[:], err)
				}
				if found {
					rec = mergeBlock(prev, rec)
				}
				if err := v.putBlock(slot, rec); err != nil {
					return fmt.Errorf("validator %#x: %w", p.pubkey[:], err)
				}
				v.wm.noteImportedBlock(slot)
			}
			for j, st := range p.atts {
				rec := p.aroots[j]
				prev, found, err := v.getAtt(st[1])
				if err != nil {
					return fmt.Errorf("validator %#x: %w", p.pubkey[:], err)
				}
				if found {
					rec = mergeAtt(prev, rec)
				}
				if err := v.putAtt(st[1], rec); err != nil {
					return fmt.Errorf("validator %#x: %w", p.pubkey[:], err)
				}
				v.wm.noteImportedAtt(st[0], st[1])
			}
			if err := v.saveWatermarks(); err != nil {
				return fmt.Errorf("validator %#x: %w", p.pubkey[:], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("slashingdb: import interchange: %w", err)
	}
	return nil
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

func parseOptionalRoot(s *string) (blockRecord, error) {
	if s == nil {
		return blockRecord{}, nil
	}
	r, err := parseHex32(*s)
	if err != nil {
		return blockRecord{}, err
	}
	return blockRecord{root: r, known: true}, nil
}

// ExportInterchange writes every stored record as an EIP-3076 interchange
// document (format version "5"), from one consistent read transaction. Validators
// are ordered by public key, records by slot and target epoch. Records with an
// unknown root are written without signing_root; a merged record (several
// imported sources for one target) is written as its lowest and highest source.
// The start-up guard is local state and is not exported.
func (db *DB) ExportInterchange(w io.Writer) error {
	doc := interchangeDoc{
		Metadata: &interchangeMeta{Version: InterchangeVersion, GVR: "0x" + hex.EncodeToString(db.gvr[:])},
		Data:     []interchangeRecords{},
	}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		vals := tx.Bucket(bucketValidators)
		if vals == nil {
			return fmt.Errorf("validators bucket missing: %w", ErrCorrupt)
		}
		return vals.ForEachBucket(func(pk []byte) error {
			if len(pk) != 48 {
				return fmt.Errorf("validator key %x: %w", pk, ErrCorrupt)
			}
			v, err := loadValidator(vals.Bucket(pk), pk)
			if err != nil {
				return err
			}
			recs := interchangeRecords{
				Pubkey:             "0x" + hex.EncodeToString(pk),
				SignedBlocks:       []interchangeBlock{},
				SignedAttestations: []interchangeAttestation{},
			}
			if err := v.scanBlocks(func(slot uint64, r blockRecord) error {
				recs.SignedBlocks = append(recs.SignedBlocks, interchangeBlock{
					Slot:        strconv.FormatUint(slot, 10),
					SigningRoot: exportRoot(r.root, r.known),
				})
				return nil
			}); err != nil {
				return fmt.Errorf("validator %#x: %w", pk, err)
			}
			if err := v.scanAtts(0, func(t uint64, r attRecord) (bool, error) {
				target := strconv.FormatUint(t, 10)
				recs.SignedAttestations = append(recs.SignedAttestations, interchangeAttestation{
					SourceEpoch: strconv.FormatUint(r.minSource, 10),
					TargetEpoch: target,
					SigningRoot: exportRoot(r.root, r.known),
				})
				if r.maxSource != r.minSource {
					recs.SignedAttestations = append(recs.SignedAttestations, interchangeAttestation{
						SourceEpoch: strconv.FormatUint(r.maxSource, 10),
						TargetEpoch: target,
					})
				}
				return true, nil
			}); err != nil {
				return fmt.Errorf("validator %#x: %w", pk, err)
			}
			if len(recs.SignedBlocks) > 0 || len(recs.SignedAttestations) > 0 {
				doc.Data = append(doc.Data, recs)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("slashingdb: export interchange: %w", err)
	}
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
