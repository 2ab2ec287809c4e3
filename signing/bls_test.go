package signing

import (
	"bytes"
	"errors"
	"testing"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// notInG2 is the spec vector deserialization_fails_not_in_G2 (a point on the curve outside the
// prime-order subgroup), compressed and, as herumi serialises it with the order check off,
// uncompressed. Kept here so the test runs without ../shared.
const (
	notInG2Compressed   = "8123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	notInG2Uncompressed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef087c8cfe7dbaf1e16223b38b0d6343723b09c73dfc14cf0b1065da168ea8d3d752bc62daeb2bc19fb72542150782d95705563f818f87409d27d1c65bab55db7cfd498b61050e1ed2fab7ccb52050b39aedcea21a46dca02553bdac4d4a72cc54"
)

func TestParsePeerSignature(t *testing.T) {
	var sk bls.SecretKey
	sk.SetByCSPRNG()
	msg := bytes.Repeat([]byte{7}, 32)
	sig := sk.SignByte(msg)
	for name, b := range map[string][]byte{"uncompressed": SerializeForPeer(sig), "compressed": sig.Serialize()} {
		got, err := ParsePeerSignature(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.IsEqual(sig) || !got.VerifyByte(sk.GetPublicKey(), msg) {
			t.Errorf("%s: parsed signature differs from the one sent", name)
		}
	}
	if n := len(SerializeForPeer(sig)); n != UncompressedSignatureLength {
		t.Errorf("peer encoding is %d bytes, want %d", n, UncompressedSignatureLength)
	}

	// Both forms of the vector are points of the curve: with the subgroup check off they load (and
	// are the same point), so the refusals below are the subgroup check's. No test here runs in
	// parallel, so the global switch is safe to flip for a moment.
	bls.VerifySignatureOrder(false)
	var c, u bls.Sign
	errC, errU := c.Deserialize(unhex(t, notInG2Compressed)), u.DeserializeUncompressed(unhex(t, notInG2Uncompressed))
	bls.VerifySignatureOrder(true)
	if errC != nil || errU != nil || !c.IsEqual(&u) {
		t.Fatalf("the not-in-G2 vector is not one point of the curve: %v, %v", errC, errU)
	}

	offCurve := unhex(t, notInG2Uncompressed)
	offCurve[len(offCurve)-1] ^= 1
	for name, b := range map[string][]byte{
		"outside G2, uncompressed": unhex(t, notInG2Uncompressed),
		"outside G2, compressed":   unhex(t, notInG2Compressed),
		"off the curve":            offCurve,
		"95 bytes":                 make([]byte, 95),
		"191 bytes":                SerializeForPeer(sig)[:191],
		"193 bytes":                append(SerializeForPeer(sig), 0),
		"empty":                    nil,
	} {
		if _, err := ParsePeerSignature(b); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: err %v, want ErrBadSignature", name, err)
		}
	}
}

// BenchmarkParsePeerSignature compares the two encodings of a partial: the uncompressed one
// skips the square root of decompression; both keep the subgroup check.
func BenchmarkParsePeerSignature(b *testing.B) {
	var sk bls.SecretKey
	sk.SetByCSPRNG()
	sig := sk.SignByte([]byte("partial"))
	for name, enc := range map[string][]byte{"compressed": sig.Serialize(), "uncompressed": SerializeForPeer(sig)} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParsePeerSignature(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
