package signing

import (
	"fmt"
	"slices"

	"github.com/herumi/bls-eth-go-binary/bls"
)

// shareID maps a share index (1..n) to the evaluation point of the sharing polynomial. Index 0 is
// refused: the polynomial's value at 0 is the secret itself.
func shareID(index uint64) (bls.ID, error) {
	var id bls.ID
	if index == 0 {
		return id, ErrBadShareID
	}
	if err := id.SetDecString(fmt.Sprint(index)); err != nil {
		return id, fmt.Errorf("share index %d: %w", index, err)
	}
	return id, nil
}

// CheckThreshold refuses thresholds that break the safety argument: any two signing quorums of
// size t overlap in 2t-n nodes, and that overlap must hold an honest node, so t must exceed n/2;
// with t below ceil(2n/3) a single faulty node in the overlap can already sign both sides, so
// that needs force.
func CheckThreshold(t, n int, force bool) error {
	if n < 1 || t < 1 || t > n {
		return fmt.Errorf("%w: threshold %d of %d nodes: need 1 <= threshold <= nodes", ErrThreshold, t, n)
	}
	if 2*t <= n {
		return fmt.Errorf("%w: threshold %d of %d nodes is at or below n/2: two disjoint groups of %d could each "+
			"sign a different message, so a slashing needs no faulty node at all", ErrThreshold, t, n, t)
	}
	if minT := (2*n + 2) / 3; t < minT && !force {
		return fmt.Errorf("%w: threshold %d of %d nodes is below ceil(2n/3)=%d: two signing quorums overlap in only "+
			"%d node(s), so that many faulty nodes can cause a slashing; use %d, or force it if you accept that",
			ErrThreshold, t, n, minT, 2*t-n, minT)
	}
	return nil
}

// Split shares secret with a random polynomial of degree t-1 and returns the shares for indices
// 1..n (element i has index i+1). Any t shares sign for the group key; t-1 learn nothing.
func Split(secret *bls.SecretKey, t, n int) ([]*bls.SecretKey, error) {
	if t < 1 || t > n {
		return nil, fmt.Errorf("%w: threshold %d of %d", ErrThreshold, t, n)
	}
	if secret.IsZero() {
		return nil, fmt.Errorf("%w: zero", ErrBadSecretKey)
	}
	poly := secret.GetMasterSecretKey(t)
	shares := make([]*bls.SecretKey, n)
	for i := range shares {
		id, err := shareID(uint64(i + 1))
		if err != nil {
			return nil, err
		}
		var sk bls.SecretKey
		if err := sk.Set(poly, &id); err != nil {
			return nil, fmt.Errorf("evaluate share %d: %w", i+1, err)
		}
		shares[i] = &sk
	}
	return shares, nil
}

// RecoverSignature interpolates a full signature from partial signatures keyed by share index.
// It needs at least threshold partials and uses exactly threshold of them (the lowest indices),
// so the result is deterministic. The caller must have verified each partial against its share's
// public key and must verify the result against the group key: interpolation of unverified
// partials yields garbage, not an error.
func RecoverSignature(partials map[uint64][]byte, threshold int) ([]byte, error) {
	parsed := make(map[uint64]*bls.Sign, len(partials))
	for idx, b := range partials {
		s, err := ParseSignature(b)
		if err != nil {
			return nil, fmt.Errorf("partial of share %d: %w", idx, err)
		}
		parsed[idx] = s
	}
	full, err := RecoverParsed(parsed, threshold)
	if err != nil {
		return nil, err
	}
	return full.Serialize(), nil
}

// RecoverParsed is RecoverSignature for partials already deserialised (and subgroup-checked):
// deserialising a G2 point costs about as much as verifying a batch share of it, so a node that
// parsed the partials to verify them recovers from the parsed points.
func RecoverParsed(partials map[uint64]*bls.Sign, threshold int) (*bls.Sign, error) {
	idxs, err := lowestIndices(partials, threshold)
	if err != nil {
		return nil, err
	}
	points := make([]*bls.G2, len(idxs))
	for i, idx := range idxs {
		if partials[idx] == nil {
			return nil, fmt.Errorf("%w: partial of share %d is empty", ErrBadSignature, idx)
		}
		points[i] = bls.CastFromSign(partials[idx])
	}
	ip, err := interpolationFor(idxs)
	if err != nil {
		return nil, fmt.Errorf("recover signature: %w", err)
	}
	return bls.CastToSign(ip.at(points)), nil
}

// RecoverPublicKey interpolates the group public key from public shares keyed by share index.
func RecoverPublicKey(shares map[uint64][]byte, threshold int) ([]byte, error) {
	ids, idxs, err := pickIDs(shares, threshold)
	if err != nil {
		return nil, err
	}
	pks := make([]bls.PublicKey, len(idxs))
	for i, idx := range idxs {
		pk, err := ParsePublicKey(shares[idx])
		if err != nil {
			return nil, fmt.Errorf("public share %d: %w", idx, err)
		}
		pks[i] = *pk
	}
	var group bls.PublicKey
	if err := group.Recover(pks, ids); err != nil {
		return nil, fmt.Errorf("recover public key: %w", err)
	}
	return group.Serialize(), nil
}

// RecoverSecretKey interpolates the whole secret key from secret shares keyed by share index,
// using the threshold lowest indices. It brings back a key the cluster was made to never hold
// whole: the caller must check the result's public key against the group key (a wrong share
// yields another key, not an error) and keep it from ever signing beside the cluster.
func RecoverSecretKey(shares map[uint64]*bls.SecretKey, threshold int) (*bls.SecretKey, error) {
	ids, idxs, err := pickIDs(shares, threshold)
	if err != nil {
		return nil, err
	}
	secs := make([]bls.SecretKey, len(idxs))
	for i, idx := range idxs {
		if shares[idx] == nil || shares[idx].IsZero() {
			return nil, fmt.Errorf("%w: share %d is empty", ErrBadSecretKey, idx)
		}
		secs[i] = *shares[idx]
	}
	var sk bls.SecretKey
	if err := sk.Recover(secs, ids); err != nil {
		return nil, fmt.Errorf("recover secret key: %w", err)
	}
	return &sk, nil
}

// pickIDs returns the evaluation points of the threshold lowest share indices in m.
func pickIDs[V any](m map[uint64]V, threshold int) ([]bls.ID, []uint64, error) {
	idxs, err := lowestIndices(m, threshold)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]bls.ID, threshold)
	for i, idx := range idxs {
		id, err := shareID(idx)
		if err != nil {
			return nil, nil, err
		}
		ids[i] = id
	}
	return ids, idxs, nil
}

// lowestIndices returns the threshold lowest share indices of m, in increasing order.
func lowestIndices[V any](m map[uint64]V, threshold int) ([]uint64, error) {
	if threshold < 1 {
		return nil, fmt.Errorf("%w: %d", ErrThreshold, threshold)
	}
	if len(m) < threshold {
		return nil, fmt.Errorf("%w: have %d shares, need %d", ErrThreshold, len(m), threshold)
	}
	idxs := make([]uint64, 0, len(m))
	for idx := range m {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	return idxs[:threshold], nil
}
