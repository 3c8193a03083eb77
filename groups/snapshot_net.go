package groups

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// SnapshotProtocolPrefix is the snapshot transfer protocol without its
// network part (PROTOCOL.md §20): one chunk request and one reply per
// stream.
const SnapshotProtocolPrefix = "/mosaik/groups/snapshot/1.0.0"

// SnapshotProtocolID returns the snapshot transfer protocol of a network.
func SnapshotProtocolID(nw catalog.NetworkID) protocol.ID {
	return protocol.ID(SnapshotProtocolPrefix + "/" + nw.String())
}

// snapshotServeTimeout bounds a holder's whole exchange on one stream:
// reading the request and writing the reply.
const snapshotServeTimeout = 10 * time.Second

// serveSnapshotChunk answers one encoded chunk request from a peer with an
// encoded reply (serveSnapshotReply, encoded).
func (s *Service) serveSnapshotChunk(from peer.ID, raw []byte) []byte {
	chunk, refusal := s.serveSnapshotReply(from, raw)
	if refusal != nil {
		return refusal
	}
	return encodeSnapshotChunk(chunk)
}

// serveSnapshotReply answers one encoded chunk request from a peer with a
// chunk (whose data aliases the held snapshot) or, when refusal is not
// nil, an encoded refusal. The request names no group: the holder finds
// the snapshot by anchor and hash among its groups, and serves it only to
// a peer bonded with it in that group.
func (s *Service) serveSnapshotReply(from peer.ID, raw []byte) (_ snapshotChunk, refusal []byte) {
	req, err := decodeSnapshotChunkRequest(raw)
	if err != nil {
		return snapshotChunk{}, encodeSnapshotRefusal(snapshotBadRequest, err.Error())
	}
	sn, _ := s.net.(snapshotNet)
	now := time.Now()
	s.core.mu.Lock()
	type held struct {
		id    catalog.ID
		cache *snapshotCache
		met   *metrics
	}
	var hs []held
	for id, j := range s.core.groups {
		hs = append(hs, held{id, j.c.snap.cache, j.c.met})
	}
	s.core.mu.Unlock()
	refusal = encodeSnapshotRefusal(snapshotUnknownAnchor, "no snapshot at "+req.Anchor.String())
	for _, h := range hs {
		if !h.cache.holdsHash(req.Anchor, req.Hash, now) {
			continue
		}
		if sn == nil || !sn.bondedWith(h.id, from) {
			refusal = encodeSnapshotRefusal(snapshotUnavailable, "not bonded in the snapshot's group")
			continue
		}
		chunk, err := h.cache.serve(req, now)
		if err != nil {
			var ref *snapshotRefusedError
			if errors.As(err, &ref) {
				return snapshotChunk{}, encodeSnapshotRefusal(ref.Code, ref.Reason)
			}
			return snapshotChunk{}, encodeSnapshotRefusal(snapshotUnavailable, err.Error())
		}
		if h.cache.firstServed(req.Anchor, req.Hash, from) {
			h.met.add(h.met.syncsServed, 1)
		}
		h.met.add(h.met.bytesServed, int64(len(chunk.Data)))
		return chunk, nil
	}
	return snapshotChunk{}, refusal
}

// serveSnapshots serves the network's snapshot protocol with serve until
// close (which removes the handler). serve answers with a chunk, or with
// an encoded refusal when that is not nil.
func (n *bondNet) serveSnapshots(serve func(from peer.ID, req []byte) (snapshotChunk, []byte)) {
	n.h.SetStreamHandler(SnapshotPipelineProtocolID(n.network), func(st network.Stream) {
		if !n.enterHandler(st) {
			return
		}
		defer n.wg.Done()
		// A transfer's stream lives as long as the transfer: closing the
		// net ends it rather than waiting for the fetcher.
		defer context.AfterFunc(n.ctx, func() { _ = st.Reset() })()
		servePipelined(st, serve, n.log.Debug)
	})
	n.h.SetStreamHandler(SnapshotProtocolID(n.network), func(st network.Stream) {
		if !n.enterHandler(st) {
			return
		}
		defer n.wg.Done()
		serveRequests(st, serve, n.log.Debug, 1)
	})
}

// enterHandler counts a stream handler in n.wg, or resets st and reports
// false once n is closed.
func (n *bondNet) enterHandler(st network.Stream) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		_ = st.Reset()
		return false
	}
	n.wg.Add(1)
	return true
}

// fetchChunk implements snapshotNet over a new stream to the holder.
func (n *bondNet) fetchChunk(ctx context.Context, holder peer.ID, req snapshotChunkRequest) (snapshotChunk, error) {
	return n.fetchChunkInto(ctx, holder, req, nil)
}

// fetchChunkInto implements snapshotPlacingNet: fetchChunk reading the
// chunk's data straight into dst (readSnapshotReplyInto).
func (n *bondNet) fetchChunkInto(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
	st, err := n.h.NewStream(ctx, holder, SnapshotProtocolID(n.network))
	if err != nil {
		return snapshotChunk{}, fmt.Errorf("groups: snapshot stream to %s: %w", holder, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := framer.WriteFrame(st, encodeSnapshotChunkRequest(req)); err != nil {
		_ = st.Reset()
		return snapshotChunk{}, fmt.Errorf("groups: snapshot request to %s: %w", holder, err)
	}
	_ = st.CloseWrite()
	c, err := readSnapshotReplyInto(bufio.NewReader(st), st, req.MaxBytes, dst)
	if err != nil {
		_ = st.Reset()
		var ref *snapshotRefusedError
		if errors.As(err, &ref) {
			return snapshotChunk{}, err
		}
		return snapshotChunk{}, fmt.Errorf("groups: snapshot reply from %s: %w", holder, err)
	}
	_ = st.Close()
	return c, nil
}

// readSnapshotReply reads the frame (section 10.2) answering a request
// for maxBytes. It may be no longer than such a chunk's reply or a
// refusal, so the declared length, bounded by what was asked for rather
// than by the holder's claim, is allocated at once: framer.ReadFrame
// grows its buffer from 4 KiB as bytes arrive, copying a chunk about
// twice over.
func readSnapshotReply(r *bufio.Reader, maxBytes uint32) ([]byte, error) {
	n, err := readSnapshotReplyLen(r, maxBytes)
	if err != nil {
		return nil, err
	}
	return readSnapshotReplyBody(r, n)
}

func readSnapshotReplyLen(r *bufio.Reader, maxBytes uint32) (uint64, error) {
	limit := min(uint64(snapshotReplyCap), max(uint64(maxBytes)+snapshotReplyCap-snapshotMaxChunk, snapshotRefusalCap))
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("read length: %w", err)
	}
	if n > limit {
		return 0, fmt.Errorf("%w: a reply of %d bytes to a request for %d", errSnapshotWire, n, maxBytes)
	}
	return n, nil
}

func readSnapshotReplyBody(r *bufio.Reader, n uint64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %d-byte reply: %w", n, err)
	}
	return b, nil
}

// bondedWith implements snapshotNet.
func (n *bondNet) bondedWith(group catalog.ID, p peer.ID) bool {
	g := n.group(group)
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.slots[p] != nil
}
