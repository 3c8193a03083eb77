package groups

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"lukechampine.com/blake3"
)

const (
	// defaultSnapshotTTL is how long a held snapshot lives after it was
	// stored or last served (mosaik's snapshot_ttl).
	defaultSnapshotTTL = 10 * time.Second
	// defaultSnapshotAnchors bounds how many snapshots a cache holds.
	defaultSnapshotAnchors = 4
)

// snapshotCache is the holder's side of snapshot transfer: the bytes of
// the snapshots at recent anchors, each kept for a TTL that every chunk
// served renews, so that a transfer in progress keeps its snapshot while
// an abandoned one frees it. It holds at most maxAnchors snapshots: adding
// one more evicts the one closest to expiry. Time is passed in (now), so
// the cache starts no goroutine and expires lazily.
//
// Safe for concurrent use; no call blocks beyond the cache's lock.
type snapshotCache struct {
	ttl        time.Duration
	maxAnchors int

	mu   sync.Mutex
	held map[snapshotAnchor]*heldSnapshot
}

type heldSnapshot struct {
	data    []byte
	hash    [32]byte
	expires time.Time
	// fetchers are the peers served a chunk of these bytes, so that a
	// transfer is counted once however many chunks it takes.
	fetchers map[peer.ID]struct{}
}

// newSnapshotCache returns a cache of at most maxAnchors snapshots kept
// for ttl after their last use (defaults for values ≤ 0).
func newSnapshotCache(maxAnchors int, ttl time.Duration) *snapshotCache {
	if maxAnchors <= 0 {
		maxAnchors = defaultSnapshotAnchors
	}
	if ttl <= 0 {
		ttl = defaultSnapshotTTL
	}
	return &snapshotCache{ttl: ttl, maxAnchors: maxAnchors, held: make(map[snapshotAnchor]*heldSnapshot)}
}

// put holds data (owned by the cache from now on: the caller must not
// modify it) as the snapshot at anchor a, renewing it if already held
// (and replacing the bytes if they differ). It
// hashes data (outside the lock) for the requests' hash check.
func (c *snapshotCache) put(a snapshotAnchor, data []byte, now time.Time) {
	c.putHashed(a, data, blake3.Sum256(data), now)
}

// putHashed is put with data's blake3-256 already known (from its
// descriptor).
func (c *snapshotCache) putHashed(a snapshotAnchor, data []byte, hash [32]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if h, ok := c.held[a]; ok {
		if h.hash != hash {
			// Other bytes at a held anchor: a cluster that started its log
			// anew (a merge, a forced epoch) reuses anchors; the newest
			// bytes are the ones this node describes and serves.
			h.data, h.hash, h.fetchers = data, hash, nil
		}
		h.expires = now.Add(c.ttl)
		return
	}
	for len(c.held) >= c.maxAnchors {
		var oldest snapshotAnchor
		var at time.Time
		for k, h := range c.held {
			if at.IsZero() || h.expires.Before(at) {
				oldest, at = k, h.expires
			}
		}
		delete(c.held, oldest)
	}
	c.held[a] = &heldSnapshot{data: data, hash: hash, expires: now.Add(c.ttl)}
}

// holds reports whether a snapshot at a is held and not expired.
func (c *snapshotCache) holds(a snapshotAnchor, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	_, ok := c.held[a]
	return ok
}

// holdsHash reports whether the snapshot at a whose blake3-256 is hash is
// held and not expired.
func (c *snapshotCache) holdsHash(a snapshotAnchor, hash [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	h, ok := c.held[a]
	return ok && h.hash == hash
}

// heldHash returns the hash of the snapshot held at a when its bytes are
// data itself (the same memory), so that a sender describing a snapshot
// it already holds does not hash it again.
func (c *snapshotCache) heldHash(a snapshotAnchor, data []byte) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.held[a]
	if !ok || len(data) == 0 || len(h.data) != len(data) || &h.data[0] != &data[0] {
		return [32]byte{}, false
	}
	return h.hash, true
}

// anchors lists the anchors held at now, for announcements.
func (c *snapshotCache) anchors(now time.Time) []snapshotAnchor {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	out := make([]snapshotAnchor, 0, len(c.held))
	for a := range c.held {
		out = append(out, a)
	}
	return out
}

// heldInfo is an anchor held, with its bytes' hash and length.
type heldInfo struct {
	anchor snapshotAnchor
	hash   [32]byte
	size   uint64
}

// announced lists the snapshots held at now, with their hashes and
// sizes, for announcements.
func (c *snapshotCache) announced(now time.Time) []heldInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	out := make([]heldInfo, 0, len(c.held))
	for a, h := range c.held {
		out = append(out, heldInfo{anchor: a, hash: h.hash, size: uint64(len(h.data))})
	}
	return out
}

// serve answers a chunk request and renews the snapshot's TTL. It refuses
// an unknown or expired anchor, or other bytes than the request's hash
// (snapshotUnknownAnchor) and an offset past
// the end or a max_bytes out of [1, snapshotMaxChunk] (snapshotBadRequest)
// with a *snapshotRefusedError. The chunk's Data aliases the held bytes.
func (c *snapshotCache) serve(req snapshotChunkRequest, now time.Time) (snapshotChunk, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	h, ok := c.held[req.Anchor]
	if !ok {
		return snapshotChunk{}, &snapshotRefusedError{Code: snapshotUnknownAnchor, Reason: "no snapshot at " + req.Anchor.String()}
	}
	if h.hash != req.Hash {
		return snapshotChunk{}, &snapshotRefusedError{Code: snapshotUnknownAnchor, Reason: "other snapshot bytes at " + req.Anchor.String()}
	}
	total := uint64(len(h.data))
	if req.MaxBytes == 0 || req.MaxBytes > snapshotMaxChunk || req.Offset > total {
		return snapshotChunk{}, &snapshotRefusedError{Code: snapshotBadRequest, Reason: "range out of bounds"}
	}
	h.expires = now.Add(c.ttl)
	end := req.Offset + min(uint64(req.MaxBytes), total-req.Offset)
	return snapshotChunk{
		Anchor:    req.Anchor,
		Offset:    req.Offset,
		Data:      h.data[req.Offset:end:end],
		TotalSize: total,
		Last:      end == total,
	}, nil
}

// firstServed records that the snapshot at a whose hash is hash was served
// to p, and reports whether that was the first time (a new transfer).
func (c *snapshotCache) firstServed(a snapshotAnchor, hash [32]byte, p peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.held[a]
	if !ok || h.hash != hash {
		return false
	}
	if _, seen := h.fetchers[p]; seen {
		return false
	}
	if h.fetchers == nil {
		h.fetchers = map[peer.ID]struct{}{}
	}
	h.fetchers[p] = struct{}{}
	return true
}

// serveEncoded answers an encoded request with an encoded reply (a chunk
// or a refusal): the whole holder side of the wire.
func (c *snapshotCache) serveEncoded(req []byte, now time.Time) []byte {
	r, err := decodeSnapshotChunkRequest(req)
	if err != nil {
		return encodeSnapshotRefusal(snapshotBadRequest, err.Error())
	}
	chunk, err := c.serve(r, now)
	if err != nil {
		ref := err.(*snapshotRefusedError)
		return encodeSnapshotRefusal(ref.Code, ref.Reason)
	}
	return encodeSnapshotChunk(chunk)
}

// expire drops the snapshots whose TTL ran out at now.
func (c *snapshotCache) expire(now time.Time) {
	for a, h := range c.held {
		if !now.Before(h.expires) {
			delete(c.held, a)
		}
	}
}
