package signing

import (
	"bytes"
	"runtime"
	"sync"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// parallelSignMin is the batch size from which signing is spread over every core.
const parallelSignMin = 64

// SignSameMessage signs msg with every key and returns the serialised signatures in key order.
// Since Electra every attester of a slot signs the same root, so the message is hashed to G2
// once and each signature is one scalar multiplication (the hash is most of a single signing's
// cost); large batches use every core.
func SignSameMessage(keys []*bls.SecretKey, msg []byte) [][]byte {
	sigs := SignSameMessageParsed(keys, msg)
	out := make([][]byte, len(sigs))
	for i, s := range sigs {
		out[i] = s.Serialize()
	}
	return out
}

// SignSameMessageParsed is SignSameMessage returning the signatures as points, for a caller that
// keeps using them (this node's own partials need no parsing and no verification).
func SignSameMessageParsed(keys []*bls.SecretKey, msg []byte) []*bls.Sign {
	out := make([]*bls.Sign, len(keys))
	if len(keys) == 0 {
		return out
	}
	h := bls.HashAndMapToSignature(bytes.Clone(msg))
	sign := func(i int) {
		var s bls.G2
		// Constant time, as herumi's own signing: the scalar is a key share.
		g2MulCT(&s, bls.CastFromSign(h), bls.CastFromSecretKey(keys[i]))
		out[i] = bls.CastToSign(&s)
	}
	workers := 1
	if len(keys) >= parallelSignMin {
		workers = runtime.NumCPU()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(keys); i += workers {
				sign(i)
			}
		}()
	}
	wg.Wait()
	return out
}
