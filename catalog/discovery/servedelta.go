package discovery

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"iter"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// CodeUnknownPeer resets a 2.x sync whose initiator is not in the
// responder's catalog and whose hello entry cannot make it a member
// (missing, stale, refused by the catalog, or not admitted to a closed
// network), and a 1.0.0 sync of a closed network whose initiator's entry
// was not admitted.
const CodeUnknownPeer network.StreamErrorCode = 401

// errEvicted ends a sync whose slot went to a newer one (its stream is
// reset and counted already).
var errEvicted = errors.New("discovery: sync evicted")

// handleSyncBumps serves sync 2.1.0, handleSyncDelta sync 2.0.0.
func (s *Service) handleSyncBumps(st network.Stream) { s.handleSyncV2(st, dialect21) }
func (s *Service) handleSyncDelta(st network.Stream) { s.handleSyncV2(st, dialect20) }

// handleSyncV2 serves one sync of protocol 2.0.0 or 2.1.0 (d; PROTOCOL.md
// sections 10.3 and 10.8): it reads the initiator's hello, merges its
// entry, then reads its digest page by page and streams, in pages, every
// entry of its catalog the digest lacks or names at an older version
// (in 2.1.0 as a bump when the digest names the same content),
// merge-joined in key order. It holds one digest page and one entry page
// at a time, plus a 16-byte index entry per peer of its own catalog.
func (s *Service) handleSyncV2(st network.Stream, d dialect) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	sl := s.admitSync(st)
	if sl == nil {
		return
	}
	defer s.serving.release(sl)
	p := st.Conn().RemotePeer()
	r := bufio.NewReader(countReader{st, &s.stats.syncBytesIn})
	var hello pb.SyncHello
	err := readMessage(r, helloCap(s.params.Catalog.MaxEntrySize), &hello)
	// The slot stays in its waiting state until the whole digest is in;
	// a refusal now first checks that it was not given away meanwhile.
	refuse := func(code network.StreamErrorCode, cause, why string, args ...any) {
		if s.serving.read(sl) { // else evicted: already reset and counted
			s.refuseSync(st, code, cause, why, args...)
		}
	}
	switch {
	case err != nil:
		s.stats.refuse(true, "malformed")
		refuse(CodeProtocolViolation, causeOf(err), "bad hello", "err", err)
		return
	case !bytes.Equal(hello.Network, s.network[:]):
		refuse(CodeDifferentNetwork, "other_network", "other network")
		return
	case len(hello.Salt) != saltLen:
		refuse(CodeProtocolViolation, "malformed", "bad hello", "salt bytes", len(hello.Salt))
		return
	}
	if code, cause := s.admitHello(p, hello.Entry); cause != "" {
		refuse(code, cause, "hello entry refused")
		return
	}
	_, span := s.tracer.Start(s.ctx, "mosaik.discovery.sync.serve", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("peer", p.String()), attribute.String("protocol", d.String())))
	defer span.End()
	// Whether p's gossip subscription had reached us when the snapshot
	// was taken (see joinGaps): read first.
	subscribed := s.gaps.subscribed(p)
	snapAt := time.Now()
	// The snapshot after merging the hello. The initiator's own entry is
	// skipped, unless ours is newer than its hello: then a second process
	// signs with its key, and the initiator learns of it from the page
	// (DuplicateIdentity).
	snap := s.store.Snapshot()
	skip := p
	if s.newerThanHello(snap, p, hello.Entry) {
		skip = ""
	}
	own := digestIndex(hello.Salt, withLocal(snap), skip)
	pw := &pageWriter{w: countWriter{st, &s.stats.syncBytesOut}, d: d}
	digested, err := s.serveDigest(r, sl, own, pw)
	// A joining node (its digest is empty) served before its subscription
	// reached us: the gap is repaired once it does (joinGaps).
	gap := err == nil && digested == 0 && !subscribed && s.topic != nil
	s.stats.syncEntriesOut.Add(uint64(pw.entries))
	s.stats.syncBumpsOut.Add(uint64(pw.bumped))
	nwant := len(pw.want) / d.wantLen()
	span.SetAttributes(attribute.Int("entries", pw.entries), attribute.Int("bumps", pw.bumped), attribute.Int("want", nwant))
	if err == nil && nwant > 0 {
		// What a joining node (it knew no peer but the initiator) is
		// pushed is not relayed, as in the initiator's join sync.
		src := fromServed
		if n := snap.Len(); n == 0 || (n == 1 && snapHas(snap, p)) {
			src = fromJoinSync
		}
		err = s.readPush(r, d, own, nwant, src)
	}
	var se *syncError
	switch {
	case errors.Is(err, errEvicted):
	case errors.As(err, &se):
		s.refuseSync(st, CodeProtocolViolation, se.cause, "bad digest", "err", err)
	case err != nil:
		if !s.serving.read(sl) {
			return
		}
		s.stats.syncFailed("in", causeOf(err))
		s.log.Debug("sync not served", "peer", p, "err", err)
		_ = st.Reset()
	default:
		s.stats.syncsServed.Add(1)
		_ = st.Close()
		if gap && s.gaps.served(p, snapAt, snap.Changed(), s.params.SyncTimeout) {
			s.repairJoin(p)
		}
	}
}

// newerThanHello reports whether snap holds an entry of p newer than the
// one p sent in its hello: another process with p's key (the hello was
// verified by admitHello; opening it again costs one signature check, and
// only when snap holds another version of p).
func (s *Service) newerThanHello(snap *catalog.Snapshot, p peer.ID, raw []byte) bool {
	held, ok := snap.Get(p)
	if !ok || bytes.Equal(held.Bytes(), raw) {
		return false
	}
	he, err := catalog.OpenEntry(raw, s.params.Catalog.MaxEntrySize)
	return err == nil && he.Entry.PeerID == p && held.Entry.Version.Compare(he.Entry.Version) > 0
}

// admitHello merges the initiator's own entry from its hello. It returns
// the reset code and cause of a refusal, or an empty cause. An entry that
// fails validation is a protocol violation; one that is valid but does
// not change the catalog (a copy of the known version) is fine from a
// member, while a non-member must become one with it.
func (s *Service) admitHello(p peer.ID, raw []byte) (network.StreamErrorCode, string) {
	now := s.now()
	e, err := s.store.Open(raw, now)
	switch {
	case err == nil && e.Entry.PeerID != p:
		s.stats.refuse(true, "signer_mismatch")
		return CodeProtocolViolation, "foreign_entry"
	case err == nil:
		out, err := s.store.Merge(e, now)
		s.merged(e, out, err, fromServed)
		if err != nil && !s.member(p) {
			return CodeUnknownPeer, "non_member"
		}
		return 0, ""
	case errors.Is(err, catalog.ErrUnadmitted):
		// A closed network: the initiator is not admitted, and learns
		// nothing of the catalog.
		s.stats.refuse(true, catalog.Reason(err))
		return CodeUnknownPeer, "unadmitted"
	case catalog.IsRejected(err):
		s.stats.refuse(true, catalog.Reason(err))
		return CodeProtocolViolation, "bad_entry"
	default: // ignored: a copy, stale, the catalog is full
		// A concurrent sync or gossip may have merged the entry since the
		// slot was taken: membership is what the catalog holds now.
		if !s.member(p) {
			s.stats.refuse(false, catalog.Reason(err))
			return CodeUnknownPeer, "non_member"
		}
		return 0, ""
	}
}

// serveDigest reads the initiator's digest pages and answers each with
// what it lacks (whole, or as a bump when the item's content hash is
// ours), then the rest of own and the end marker.
func (s *Service) serveDigest(r *bufio.Reader, sl *slot, own []indexed, pw *pageWriter) (read int, err error) {
	i, seen := 0, false
	var after uint64
	for {
		body, err := framer.ReadFrame(r, pw.d.digestFrame())
		if err != nil {
			if !s.serving.read(sl) {
				return read, errEvicted
			}
			if errors.Is(err, framer.ErrTooLarge) {
				return read, &syncError{cause: "oversize", err: err}
			}
			return read, err
		}
		items, last, err := pw.d.decodeDigest(body, !seen, after)
		if err != nil {
			return read, err
		}
		if read += len(items); read > maxSyncItems {
			return read, syncErrorf("digest_too_long", "digest of more than %d items", maxSyncItems)
		}
		for _, it := range items {
			for ; i < len(own) && own[i].key < it.key; i++ {
				if err := pw.add(own[i].e.Bytes()); err != nil {
					return read, err
				}
			}
			j := i
			for ; i < len(own) && own[i].key == it.key; i++ {
				if own[i].e.Entry.Version.Compare(it.v) > 0 {
					if err := pw.send(it.key, own[i].e, it.hash); err != nil {
						return read, err
					}
				}
			}
			// The initiator holds a peer we lack, or holds it newer: ask
			// for it (up to maxWant keys), in 2.1.0 with the content
			// hash of ours, so that a heartbeat comes back as a bump.
			if len(pw.want) < maxWant*pw.d.wantLen() && (j == i || own[j].e.Entry.Version.Compare(it.v) < 0) {
				pw.want = binary.BigEndian.AppendUint64(pw.want, it.key)
				if pw.d.bumps {
					var h uint64
					if j < i {
						h = contentHash(own[j].e)
					}
					pw.want = binary.BigEndian.AppendUint64(pw.want, h)
				}
			}
			after, seen = it.key, true
		}
		if last {
			break
		}
	}
	if !s.serving.read(sl) {
		return read, errEvicted
	}
	for ; i < len(own); i++ {
		if err := pw.add(own[i].e.Bytes()); err != nil {
			return read, err
		}
	}
	return read, pw.flush(true)
}

// member reports whether p is in the catalog.
func (s *Service) member(p peer.ID) bool {
	_, ok := s.store.Snapshot().Get(p)
	return ok
}

// readPush reads the pages of entries the initiator sends for our want
// (at most want entries and bumps; bumps apply to own) up to its end
// marker and merges each page.
func (s *Service) readPush(r *bufio.Reader, d dialect, own []indexed, want int, src source) error {
	total := 0
	for {
		body, err := framer.ReadFrame(r, maxPageFrame)
		if err != nil {
			if errors.Is(err, framer.ErrTooLarge) {
				return &syncError{cause: "oversize", err: err}
			}
			return err
		}
		pg, err := d.decodePage(body)
		if err != nil {
			return err
		}
		if len(pg.Want) > 0 {
			return syncErrorf("malformed", "want in the initiator's pages")
		}
		if total += len(pg.Entries) + len(pg.Bumps)/bumpLen; total > want {
			return syncErrorf("too_many_entries", "%d entries sent for a want of %d", total, want)
		}
		s.stats.syncEntriesIn.Add(uint64(len(pg.Entries)))
		s.mergePage(pg, own, src)
		if pg.Last {
			return nil
		}
	}
}

// withLocal iterates over the local entry, then every remote one.
func withLocal(snap *catalog.Snapshot) iter.Seq[*catalog.SignedEntry] {
	return func(yield func(*catalog.SignedEntry) bool) {
		if !yield(snap.Local()) {
			return
		}
		for e := range snap.All() {
			if !yield(e) {
				return
			}
		}
	}
}

func snapHas(snap *catalog.Snapshot, p peer.ID) bool {
	_, ok := snap.Get(p)
	return ok
}
