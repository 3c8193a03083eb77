package discovery

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
)

// bump is one decoded bump of a 2.1.0 page: the peer (by digest key)
// signed version v of the content the receiver listed, with signature sig.
type bump struct {
	key uint64
	v   catalog.Version
	sig []byte
}

// decodeBumps splits the bumps field of a page checked by decodePage.
// The signatures alias b.
func decodeBumps(b []byte) []bump {
	out := make([]bump, len(b)/bumpLen)
	for i := range out {
		r := b[i*bumpLen:]
		out[i] = bump{key: binary.BigEndian.Uint64(r), v: catalog.Version{
			StartMS: int64(binary.BigEndian.Uint64(r[8:])), UpdateMS: int64(binary.BigEndian.Uint64(r[16:]))},
			sig: r[24:bumpLen]}
	}
	return out
}

// bumpTarget is the entry of idx (sorted by key) a bump of key applies
// to: the first of that key, as digests and wants list it, provided it
// has a content hash (else the receiver sent zero and asked for no bump).
func bumpTarget(idx []indexed, key uint64) *catalog.SignedEntry {
	i, ok := slices.BinarySearchFunc(idx, key, func(x indexed, k uint64) int { return cmp.Compare(x.key, k) })
	if !ok || contentHash(idx[i].e) == 0 {
		return nil
	}
	return idx[i].e
}

// mergePage merges a page's entries and bumps, as learned from src, in one
// batch. Each bump is spliced into the entry of idx it names (the
// receiver's listed entries) and the result opened like any entry: its
// signature, admission, rate limit, caps and staleness are checked. A
// bump that names no entry with a content hash, or does not apply, is
// rejected ("bad_bump"); every bump that is not merged counts in
// SyncBumpsRefused. Nothing asks for a refused bump's entry again in the
// same sync: an honest peer's bumps always apply, so a refused one comes
// from a faulty peer, which could as well have withheld the entry; the
// next heartbeat on gossip or the next sync with another peer brings it.
func (s *Service) mergePage(pg *pb.SyncPage, idx []indexed, src source) {
	if len(pg.Bumps) == 0 {
		s.mergeAll(pg.Entries, src)
		return
	}
	bumps := decodeBumps(pg.Bumps)
	s.stats.syncBumpsIn.Add(uint64(len(bumps)))
	all := make([][]byte, len(pg.Entries), len(pg.Entries)+len(bumps))
	copy(all, pg.Entries)
	for _, b := range bumps {
		raw, err := s.applyBump(idx, b)
		if err != nil {
			s.stats.refuse(true, catalog.Reason(err))
			s.stats.syncBumpsRefused.Add(1)
			s.log.Debug("bump refused", "key", fmt.Sprintf("%016x", b.key), "err", err)
			continue
		}
		all = append(all, raw)
	}
	errs := s.mergeAll(all, src)
	for _, err := range errs[len(pg.Entries):] {
		if err != nil {
			s.stats.syncBumpsRefused.Add(1)
		}
	}
}

// applyBump rebuilds the sealed entry bump b stands for.
func (s *Service) applyBump(idx []indexed, b bump) ([]byte, error) {
	e := bumpTarget(idx, b.key)
	if e == nil {
		return nil, fmt.Errorf("%w: key %016x names no entry with a content hash", catalog.ErrBadBump, b.key)
	}
	return e.ApplyBump(b.v, b.sig)
}
