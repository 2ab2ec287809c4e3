package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// entryVersion is the first byte of every log entry this package writes.
	entryVersion byte = 1
	// MaxValueSize bounds a proposed value; larger values are refused by
	// Propose and ignored by the FSM.
	MaxValueSize = 8 << 20
	// MaxTypeLen bounds Duty.Type.
	MaxTypeLen = 64
	// entryHeader is version(1) + slot(8) + type length(1).
	entryHeader = 1 + 8 + 1
)

var errMalformed = errors.New("malformed entry")

// validate reports whether duty and value may be encoded into a log entry.
func validate(duty Duty, value []byte) error {
	if duty.Type == "" {
		return errors.New("empty duty type")
	}
	if len(duty.Type) > MaxTypeLen {
		return fmt.Errorf("duty type longer than %d bytes", MaxTypeLen)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("value of %d bytes exceeds max %d", len(value), MaxValueSize)
	}
	return nil
}

// encodeEntry encodes a proposal as
//
//	version(1) | slot(8, big endian) | len(type)(1) | type | len(value)(4, big endian) | value
func encodeEntry(duty Duty, value []byte) ([]byte, error) {
	if err := validate(duty, value); err != nil {
		return nil, err
	}
	b := make([]byte, 0, entryHeader+len(duty.Type)+4+len(value))
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, duty.Slot)
	b = append(b, byte(len(duty.Type)))
	b = append(b, duty.Type...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	b = append(b, value...)
	return b, nil
}

// decodeEntry is the inverse of encodeEntry. It never panics; any input that
// encodeEntry cannot have produced (wrong version, bad lengths, trailing
// bytes) yields an error wrapping errMalformed. The returned value aliases b.
func decodeEntry(b []byte) (Duty, []byte, error) {
	if len(b) < entryHeader {
		return Duty{}, nil, fmt.Errorf("%w: %d bytes is shorter than header", errMalformed, len(b))
	}
	if b[0] != entryVersion {
		return Duty{}, nil, fmt.Errorf("%w: unknown version %d", errMalformed, b[0])
	}
	slot := binary.BigEndian.Uint64(b[1:9])
	tl := int(b[9])
	rest := b[entryHeader:]
	if tl == 0 || tl > MaxTypeLen || len(rest) < tl+4 {
		return Duty{}, nil, fmt.Errorf("%w: bad type length %d", errMalformed, tl)
	}
	duty := Duty{Slot: slot, Type: string(rest[:tl])}
	rest = rest[tl:]
	vl := binary.BigEndian.Uint32(rest[:4])
	rest = rest[4:]
	if vl > MaxValueSize || uint64(len(rest)) != uint64(vl) {
		return Duty{}, nil, fmt.Errorf("%w: value length %d with %d bytes left", errMalformed, vl, len(rest))
	}
	return duty, rest, nil
}
