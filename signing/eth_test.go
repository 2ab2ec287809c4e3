package signing

import (
	"crypto/sha256"
	"testing"

	"github.com/attestantio/go-eth2-client/spec/phase0"
)

// TestComputeDomain_SpecFormula checks compute_domain against the formula written out by hand:
// fork_data_root = sha256(version padded to 32 || gvr) (a two-leaf SSZ container), domain =
// type || fork_data_root[:28].
func TestComputeDomain_SpecFormula(t *testing.T) {
	version := phase0.Version{0x10, 0x00, 0x00, 0x38}
	var gvr phase0.Root
	for i := range gvr {
		gvr[i] = byte(i)
	}
	var leaf [32]byte
	copy(leaf[:], version[:])
	h := sha256.Sum256(append(leaf[:], gvr[:]...))
	d, err := ComputeDomain(DomainBeaconAttester, version, gvr)
	if err != nil {
		t.Fatal(err)
	}
	if d[0] != 1 || d[1] != 0 || string(d[4:]) != string(h[:28]) {
		t.Fatalf("domain %x, want 01000000%x", d, h[:28])
	}
}

func TestSigningRoot_SpecFormula(t *testing.T) {
	data := &phase0.AttestationData{Slot: 5, Source: &phase0.Checkpoint{}, Target: &phase0.Checkpoint{Epoch: 1}}
	var dom phase0.Domain
	dom[0] = 1
	objRoot, _ := data.HashTreeRoot()
	want := sha256.Sum256(append(objRoot[:], dom[:]...))
	got, err := SigningRoot(data, dom)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("signing root %x, want %x", got, want)
	}
}

func TestForkVersionAt(t *testing.T) {
	s := []Fork{{0, phase0.Version{1}}, {10, phase0.Version{2}}}
	for _, c := range []struct {
		e    phase0.Epoch
		want byte
	}{{0, 1}, {9, 1}, {10, 2}, {99, 2}} {
		v, err := ForkVersionAt(s, c.e)
		if err != nil || v[0] != c.want {
			t.Errorf("epoch %d: %x %v", c.e, v, err)
		}
	}
	if _, err := ForkVersionAt([]Fork{{5, phase0.Version{1}}}, 1); err == nil {
		t.Error("epoch before first fork accepted")
	}
}
