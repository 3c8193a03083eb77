package discovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/dialer"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// maxSyncEntries caps the entries in one sync 1.0.0 message.
const maxSyncEntries = 16384

// SyncWith connects to pi (when not connected) and runs a catalog sync
// with it. With a peer that serves sync 2.1.0 or 2.0.0 this is a delta
// exchange: we send our own entry and a digest of our catalog, the peer
// merges our entry and streams, page by page, the entries we lack or hold
// at an older version (we merge each page as it comes), then asks for
// those it lacks, which we send. In 2.1.0 an entry whose only change is
// its version (a heartbeat) travels as a bump: the version and the
// signature. With an older peer (sync 1.0.0 only) both sides send their
// whole catalogs. It returns when the exchange is done: both
// catalogs then hold each other and what either lacked.
func (s *Service) SyncWith(ctx context.Context, pi peer.AddrInfo) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	if len(pi.Addrs) > 0 {
		if err := dialer.Connect(ctx, s.h, pi); err != nil {
			return fmt.Errorf("discovery: sync with %s: %w", pi.ID, err)
		}
	}
	return s.syncWith(ctx, pi.ID, fromSync)
}

// startSync starts a background sync with p unless one ran recently.
func (s *Service) startSync(p peer.ID) {
	if s.params.DisableSync {
		return // every trigger (a connect, a bump's pull) is off; SyncWith still runs
	}
	now := time.Now()
	s.syncMu.Lock()
	if last, ok := s.lastSync[p]; ok && now.Sub(last) < s.params.SyncMinInterval {
		s.syncMu.Unlock()
		return
	}
	s.lastSync[p] = now
	if len(s.lastSync) > 4096 {
		for id, t := range s.lastSync {
			if now.Sub(t) > s.params.SyncMinInterval {
				delete(s.lastSync, id)
			}
		}
	}
	s.syncMu.Unlock()
	s.spawn(func() { s.syncRetrying(p, fromSync) })
}

// syncRetrying syncs with p, retrying failures (a busy or rate-limiting
// responder, a timeout) with exponential backoff from 100 ms while p stays
// connected and still warrants a sync, at most 6 attempts; a refused sync
// (rate limited, or no slot free) is retried no sooner than
// SyncMinInterval (PROTOCOL.md section 10.4). One runs per peer at a
// time: a second call for p while one runs makes that one sync once more
// when it is done (a settle or repair sync is not lost to a sync in
// flight, nor doubled by a second retry chain). why names the kind of sync
// for the debug log (fromSync, fromSettleSync or fromJoinRepair; a sync
// from an empty catalog is a join sync whatever started it).
func (s *Service) syncRetrying(p peer.ID, why source) {
	s.syncMu.Lock()
	if c := s.retrying[p]; c != nil {
		c.again, c.why = true, why
		s.syncMu.Unlock()
		return
	}
	c := &retryChain{}
	s.retrying[p] = c
	s.syncMu.Unlock()
	for {
		refusedAt := s.retrySync(p, why)
		if !refusedAt.IsZero() && s.ctx.Err() == nil {
			s.sleep(s.params.SyncMinInterval - time.Since(refusedAt)) // before any sync once more
		}
		s.syncMu.Lock()
		if !c.again || s.ctx.Err() != nil {
			delete(s.retrying, p)
			s.syncMu.Unlock()
			return
		}
		c.again, why = false, c.why
		s.syncMu.Unlock()
	}
}

// retryChain is a syncRetrying in progress: again asks it for one more
// sync, of kind why, once it is done. Guarded by syncMu.
type retryChain struct {
	again bool
	why   source
}

// retrySync is syncRetrying's chain of attempts. It returns when the last
// one was refused (zero when it was not).
func (s *Service) retrySync(p peer.ID, why source) (refusedAt time.Time) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.syncOnce(p, why)
		if err == nil || s.ctx.Err() != nil || errors.Is(err, catalog.ErrOtherNetwork) || causeOf(err) == "unadmitted" {
			return time.Time{} // done, or final: another network, or an outsider of our closed one
		}
		d := jitter(wait, 0.5)
		if refused(err) {
			refusedAt, d = time.Now(), max(d, s.params.SyncMinInterval)
		} else {
			refusedAt = time.Time{}
		}
		if attempt == 6 || s.h.Network().Connectedness(p) != network.Connected || !s.shouldSync(p) {
			s.log.Debug("sync failed", "peer", p, "attempts", attempt, "err", err)
			return refusedAt
		}
		if !s.sleep(d) {
			return time.Time{}
		}
		if !s.shouldSync(p) { // p became known (its own sync, gossip) while we waited
			return refusedAt
		}
		wait = min(2*wait, s.params.SyncTimeout)
	}
}

// sleep waits d (none when d <= 0); false when the service closed first.
func (s *Service) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// refused reports whether err is a responder's refusal of a sync: reset
// as rate limited or for want of a free slot.
func refused(err error) bool {
	var se *network.StreamError
	return errors.As(err, &se) && se.Remote &&
		(se.ErrorCode == network.StreamRateLimited || se.ErrorCode == network.StreamResourceLimitExceeded)
}

func (s *Service) syncOnce(p peer.ID, why source) error {
	select {
	case s.starting <- struct{}{}:
		defer func() { <-s.starting }()
	case <-s.ctx.Done():
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.params.SyncTimeout)
	defer cancel()
	return s.syncWith(ctx, p, why)
}

func (s *Service) syncWith(ctx context.Context, p peer.ID, why source) (err error) {
	start := time.Now()
	s.stats.syncsStarted.Add(1)
	ctx, span := s.tracer.Start(ctx, "mosaik.discovery.sync", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer", p.String()), attribute.String("network", s.network.Short())))
	defer func() {
		result := "ok"
		if err != nil {
			s.stats.syncsFailed.Add(1)
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			result = "failed"
		} else {
			s.stats.syncsOK.Add(1)
		}
		s.stats.syncDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(
			attribute.String("network", s.network.Short()), attribute.String("result", result)))
		span.End()
	}()
	// Sync 2.1.0 when the peer serves it, else 2.0.0, else 1.0.0 (older
	// nodes): with identify's protocols in the peerstore the choice is
	// local, otherwise multistream tries them in this order.
	s.log.Debug("sync started", "peer", p, "why", why)
	st, err := s.h.NewStream(ctx, p, s.protos...)
	if err != nil {
		if nw, ok := s.otherNetwork(p); ok {
			return fmt.Errorf("%w: %s serves the catalog of network %s: %v", ErrOtherNetwork, p, nw, err)
		}
		return fmt.Errorf("discovery: sync with %s: %w", p, err)
	}
	defer st.Close()
	s.log.Debug("sync stream opened", "peer", p)
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	} else {
		_ = st.SetDeadline(time.Now().Add(s.params.SyncTimeout))
	}
	// A cancellation (the caller's, or Close's) resets the stream: the
	// deadline alone kept a sync with a stalled peer, and Close with it,
	// waiting until SyncTimeout. A passed deadline is the stream's own.
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			_ = st.Reset()
		}
	})
	defer stop()
	switch st.Protocol() {
	case s.protos[0]:
		span.SetAttributes(attribute.Bool("delta", true), attribute.Bool("bumps", true))
		err = s.syncV2(st, dialect21, why)
	case s.protos[1]:
		span.SetAttributes(attribute.Bool("delta", true))
		err = s.syncV2(st, dialect20, why)
	default:
		span.SetAttributes(attribute.Bool("delta", false))
		err = s.syncV1(st, why)
	}
	if err == nil {
		return nil
	}
	// The responder may reset the stream (another network, a refusal)
	// before our request is written: its code can surface at any step.
	st.Reset()
	if errors.Is(ctx.Err(), context.Canceled) {
		s.stats.syncFailed("out", "cancelled")
		return fmt.Errorf("discovery: sync with %s: %w (%v)", p, ctx.Err(), err)
	}
	s.stats.syncFailed("out", causeOf(err))
	var se *network.StreamError
	if errors.As(err, &se) && se.ErrorCode == CodeDifferentNetwork {
		return fmt.Errorf("%w: %s refused our sync request", ErrOtherNetwork, p)
	}
	return fmt.Errorf("discovery: sync with %s: %w", p, err)
}

// syncV1 runs the initiator's side of sync 1.0.0 on st: it sends its
// whole catalog in one frame (in a closed network, to a responder it does
// not hold, its own entry alone) and merges the responder's, read in one
// frame of at most MaxSyncMessage bytes.
func (s *Service) syncV1(st network.Stream, why source) error {
	snap := s.store.Snapshot()
	entries := s.entries(snap)
	if s.store.Admission() != nil && !s.member(st.Conn().RemotePeer()) {
		// A closed network's catalog goes only to its members (section
		// 7.1): a responder we do not hold gets our own entry alone.
		entries = entries[:1]
	}
	req := &pb.SyncRequest{Network: s.network[:], Entries: entries}
	if err := framer.WriteProto(countWriter{st, &s.stats.syncBytesOut}, req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	s.stats.syncEntriesOut.Add(uint64(len(req.Entries)))
	// A reset that surfaces at CloseWrite is left to the read below: in
	// go-libp2p v0.51 the yamux stream's CloseWrite returns yamux's own
	// error, without the network.StreamError (and its code) that Read
	// and Write carry.
	_ = st.CloseWrite()
	var resp pb.SyncResponse
	if err := readMessage(bufio.NewReader(countReader{st, &s.stats.syncBytesIn}), s.params.MaxSyncMessage, &resp); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if len(resp.Entries) > maxSyncEntries {
		return syncErrorf("too_many_entries", "%d entries exceed the cap of %d", len(resp.Entries), maxSyncEntries)
	}
	s.stats.syncEntriesIn.Add(uint64(len(resp.Entries)))
	s.mergeAll(resp.Entries, why)
	return nil
}

// otherNetwork reports whether identify told us that p serves the catalog
// sync protocol of another network and not ours, and names that network
// (its short ID). The protocol ID carries the network, so a peer of
// another network fails negotiation rather than reaching our handler.
func (s *Service) otherNetwork(p peer.ID) (string, bool) {
	protos, err := s.h.Peerstore().GetProtocols(p)
	if err != nil || slices.ContainsFunc(protos, s.isSyncProtocol) {
		return "", false
	}
	for _, id := range protos {
		for _, prefix := range []string{syncProtocolPrefix, syncProtocolV2Prefix, syncProtocolV1Prefix} {
			if hex, ok := strings.CutPrefix(string(id), prefix); ok && len(hex) == 64 {
				return catalog.IDFromString(hex).Short(), true
			}
		}
	}
	return "", false
}

// isSyncProtocol reports whether id is one of our network's sync
// protocols (any version).
func (s *Service) isSyncProtocol(id protocol.ID) bool { return slices.Contains(s.protos, id) }

// speaksSync reports whether p's peerstore entry lists one of our
// network's sync protocols.
func (s *Service) speaksSync(p peer.ID) bool {
	ok, _ := s.h.Peerstore().SupportsProtocols(p, s.protos...)
	return len(ok) > 0
}

// entries lists the sealed local entry and every remote entry.
func (s *Service) entries(snap *catalog.Snapshot) [][]byte {
	out := make([][]byte, 0, snap.Len()+1)
	out = append(out, snap.Local().Bytes())
	for e := range snap.All() {
		out = append(out, e.Bytes())
	}
	return out
}

// mergeAll opens a batch of sealed entries (cheap checks before signatures)
// and merges the valid ones under one store lock, publishing one snapshot.
// It returns, per entry of raw, why it was not merged (nil if it was).
func (s *Service) mergeAll(raw [][]byte, src source) []error {
	_, errs := s.mergeAllOpened(raw, src)
	return errs
}

// mergeAllOpened is mergeAll that also returns the opened entries.
func (s *Service) mergeAllOpened(raw [][]byte, src source) ([]*catalog.SignedEntry, []error) {
	now := s.now()
	opened := make([]*catalog.SignedEntry, len(raw))
	errs := make([]error, len(raw))
	s.openAll(raw, now, src, opened, errs)
	batch := make([]*catalog.SignedEntry, 0, len(raw))
	at := make([]int, 0, len(raw))
	for i, e := range opened {
		if err := errs[i]; err != nil {
			if !errors.Is(err, catalog.ErrLocal) {
				s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
			}
			continue
		}
		batch, at = append(batch, e), append(at, i)
	}
	outs, merr := s.store.MergeAll(batch, now)
	for i, e := range batch {
		s.merged(e, outs[i], merr[i], src)
		errs[at[i]] = merr[i]
	}
	return opened, errs
}

// openParallelMin is the smallest batch openAll spreads over the cores:
// below it the goroutines cost more than they save.
const openParallelMin = 16

// openAll opens each of raw into opened[i] or errs[i]. A sync page holds
// up to 256 entries and two thirds of a full sync's CPU is their ed25519
// verification, so a large batch is verified on every core: a newcomer's
// first sync of a 10 000-entry catalog is bound by it. Every entry is still
// opened in full (cheap checks, signature, admission) before any merges.
func (s *Service) openAll(raw [][]byte, now time.Time, src source, opened []*catalog.SignedEntry, errs []error) {
	workers := min(runtime.GOMAXPROCS(0), len(raw)/(openParallelMin/2))
	if len(raw) < openParallelMin || workers < 2 {
		for i, b := range raw {
			opened[i], errs[i] = s.open(b, now, src)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(raw) {
					return
				}
				opened[i], errs[i] = s.open(raw[i], now, src)
			}
		})
	}
	wg.Wait()
}
