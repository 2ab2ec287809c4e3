package signing

/*
// mclBnG2_mulCT is mcl's constant-time G2 scalar multiplication. herumi's own signing uses it
// for the secret key (SignByte takes 0.40 ms here: 0.25 to hash the message, 0.14 for this), but
// the Go binding exports only the variable-time G2Mul (0.10 ms), whose running time depends on
// the scalar. The symbol comes from the library the bls package links; the pointers are bls.G2
// and bls.Fr, whose layout is mcl's mclBnG2 and mclBnFr (the binding casts them the same way).
// The prototype is written here with void pointers (mcl's header is not on this package's include
// path), so the compiler cannot check the call against mcl's: TestG2MulCT_MatchesG2Mul and
// TestSignSameMessage_EqualsSignByte are the guard should the binding's layout ever change.
void mclBnG2_mulCT(void *z, const void *x, const void *y);
*/
import "C"

import (
	"unsafe"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// g2MulCT sets out = y*x with mcl's constant-time routine, the one herumi's signing uses for the
// secret key (mcl documents it as constant time up to the scalar's bit length): for key shares.
func g2MulCT(out, x *bls.G2, y *bls.Fr) {
	C.mclBnG2_mulCT(unsafe.Pointer(out), unsafe.Pointer(x), unsafe.Pointer(y))
}
