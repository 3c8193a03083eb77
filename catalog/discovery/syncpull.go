package discovery

import (
	"bufio"
	"cmp"
	"crypto/rand"
	"fmt"
	"io"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// syncV2 runs the initiator's side of sync 2.0.0 or 2.1.0 (d) on st
// (PROTOCOL.md sections 10.3 and 10.8). A goroutine writes the hello and the digest while this
// one reads and merges pages, since the responder answers the digest as
// it reads it: writing it all before reading could block both sides on
// full flow-control windows. The writer is done when syncV2 returns.
// Then, if the responder asked for entries (want), it sends them and
// waits for the responder to close, so that on return the responder has
// merged them. What it learns is merged as from why, or as a join sync when
// our catalog is empty.
func (s *Service) syncV2(st network.Stream, d dialect, why source) error {
	snap := s.store.Snapshot()
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	idx := digestIndex(salt, snap.All(), "")
	werr := make(chan error, 1)
	go func() { werr <- s.writeDigest(st, d, snap, salt, idx) }()
	src := why
	if snap.Len() == 0 {
		src = fromJoinSync
	}
	want, err := s.readPages(st, d, idx, src)
	if err != nil {
		_ = st.Reset() // unblocks the writer
		<-werr
		return err
	}
	// The responder ends its pages only after the last digest page.
	if err := <-werr; err != nil {
		return fmt.Errorf("send digest: %w", err)
	}
	if len(want) == 0 {
		_ = st.CloseWrite()
		return nil
	}
	if p := st.Conn().RemotePeer(); s.store.Admission() != nil && !s.member(p) {
		// A closed network's catalog goes only to its members: a
		// responder not in our catalog after its pages (its entry
		// missing or unadmitted) gets none of it (section 7.1).
		return syncErrorf("unadmitted", "responder %s is not admitted: its want is not answered", p)
	}
	pw := &pageWriter{w: countWriter{st, &s.stats.syncBytesOut}, d: d}
	for _, k := range want {
		i, ok := slices.BinarySearchFunc(idx, k.key, func(x indexed, k uint64) int { return cmp.Compare(x.key, k) })
		if ok {
			if err := pw.send(k.key, idx[i].e, k.hash); err != nil {
				return fmt.Errorf("send entries: %w", err)
			}
		}
	}
	if err := pw.flush(true); err != nil {
		return fmt.Errorf("send entries: %w", err)
	}
	s.stats.syncEntriesOut.Add(uint64(pw.entries))
	s.stats.syncBumpsOut.Add(uint64(pw.bumped))
	// A reset that surfaces here is left to the read: yamux's CloseWrite
	// error lacks the stream error code that Read carries.
	_ = st.CloseWrite()
	// The responder closes once it merged them (or resets).
	if _, err := io.Copy(io.Discard, io.LimitReader(st, 1)); err != nil {
		return fmt.Errorf("after sending entries: %w", err)
	}
	return nil
}

// writeDigest writes the hello (our own entry) and the digest idx of the
// remote entries of snap, in ascending key order, in dialect d.
func (s *Service) writeDigest(st network.Stream, d dialect, snap *catalog.Snapshot, salt []byte, idx []indexed) error {
	w := countWriter{st, &s.stats.syncBytesOut}
	hello := &pb.SyncHello{Network: s.network[:], Entry: snap.Local().Bytes(), Salt: salt}
	if err := framer.WriteProto(w, hello); err != nil {
		return err
	}
	s.stats.syncEntriesOut.Add(1)
	page := &pb.SyncDigest{Items: make([]byte, 0, min(len(idx), maxDigestItems)*d.itemLen())}
	n := 0
	for i, x := range idx {
		if i > 0 && x.key == idx[i-1].key {
			continue // a key collision: keys must ascend strictly; the responder sends the other
		}
		it := digestItem{key: x.key, v: x.e.Entry.Version}
		if d.bumps {
			it.hash = contentHash(x.e)
		}
		page.Items = d.appendItem(page.Items, it)
		if n++; n == maxDigestItems {
			if err := framer.WriteProto(w, page); err != nil {
				return err
			}
			page.Items, n = page.Items[:0], 0
		}
	}
	page.Last = true
	return framer.WriteProto(w, page)
}

// readPages reads the responder's pages up to the end marker and merges
// each as it comes (one store lock and one snapshot per page), as learned
// from src; bumps apply to the entries of idx, the digest we sent. It
// returns the keys the responder wants.
func (s *Service) readPages(st network.Stream, d dialect, idx []indexed, src source) ([]wanted, error) {
	r := bufio.NewReader(countReader{st, &s.stats.syncBytesIn})
	total := 0
	for {
		body, err := framer.ReadFrame(r, maxPageFrame)
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		pg, err := d.decodePage(body)
		if err != nil {
			return nil, err
		}
		if total += len(pg.Entries) + len(pg.Bumps)/bumpLen; total > maxSyncItems {
			return nil, syncErrorf("too_many_entries", "more than %d entries", maxSyncItems)
		}
		s.stats.syncEntriesIn.Add(uint64(len(pg.Entries)))
		s.mergePage(pg, idx, src)
		if pg.Last {
			return d.wantKeys(pg.Want), nil
		}
	}
}
