package discovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// maxSyncEntries caps the entries in one sync message.
const maxSyncEntries = 16384

// SyncWith connects to pi (when not connected) and runs a full catalog sync
// with it: both sides send all their fresh signed entries and merge the
// other's. It returns when the exchange is done; the responder merges our
// entries before it answers, so on return both catalogs hold each other.
func (s *Service) SyncWith(ctx context.Context, pi peer.AddrInfo) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	if len(pi.Addrs) > 0 {
		if err := s.h.Connect(ctx, pi); err != nil {
			return fmt.Errorf("discovery: sync with %s: %w", pi.ID, err)
		}
	}
	return s.syncWith(ctx, pi.ID)
}

// startSync starts a background sync with p unless one ran recently.
func (s *Service) startSync(p peer.ID) {
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
	s.spawn(func() { s.syncRetrying(p) })
}

// syncRetrying syncs with p, retrying failures (a busy or rate-limiting
// responder, a timeout) with exponential backoff from 100 ms while p stays
// connected and still warrants a sync, at most 6 attempts.
func (s *Service) syncRetrying(p peer.ID) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.syncOnce(p)
		if err == nil || s.ctx.Err() != nil || errors.Is(err, catalog.ErrOtherNetwork) {
			return
		}
		if attempt == 6 || s.h.Network().Connectedness(p) != network.Connected || !s.shouldSync(p) {
			s.log.Debug("sync failed", "peer", p, "attempts", attempt, "err", err)
			return
		}
		t := time.NewTimer(jitter(wait, 0.5))
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, s.params.SyncTimeout)
	}
}

func (s *Service) syncOnce(p peer.ID) error {
	select {
	case s.starting <- struct{}{}:
		defer func() { <-s.starting }()
	case <-s.ctx.Done():
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.params.SyncTimeout)
	defer cancel()
	return s.syncWith(ctx, p)
}

func (s *Service) syncWith(ctx context.Context, p peer.ID) (err error) {
	start := time.Now()
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
			s.stats.syncsStarted.Add(1)
		}
		s.stats.syncDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(
			attribute.String("network", s.network.Short()), attribute.String("result", result)))
		span.End()
	}()
	st, err := s.h.NewStream(ctx, p, s.proto)
	if err != nil {
		if nw, ok := s.otherNetwork(p); ok {
			return fmt.Errorf("%w: %s serves the catalog of network %s: %v", ErrOtherNetwork, p, nw, err)
		}
		return fmt.Errorf("discovery: sync with %s: %w", p, err)
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	} else {
		_ = st.SetDeadline(time.Now().Add(s.params.SyncTimeout))
	}
	// The responder may reset the stream (another network, a refusal)
	// before our request is written: its code can surface at any step.
	failed := func(step string, err error) error {
		st.Reset()
		var se *network.StreamError
		if errors.As(err, &se) && se.ErrorCode == CodeDifferentNetwork {
			return fmt.Errorf("%w: %s refused our sync request", ErrOtherNetwork, p)
		}
		return fmt.Errorf("discovery: sync with %s: %s: %w", p, step, err)
	}
	req := &pb.SyncRequest{Network: s.network[:], Entries: s.entries(s.store.Snapshot())}
	if err := framer.WriteProto(st, req); err != nil {
		return failed("send", err)
	}
	if err := st.CloseWrite(); err != nil {
		return failed("close", err)
	}
	var resp pb.SyncResponse
	if err := framer.ReadProto(bufio.NewReader(st), s.params.MaxSyncMessage, &resp); err != nil {
		return failed("receive", err)
	}
	if len(resp.Entries) > maxSyncEntries {
		return fmt.Errorf("discovery: sync with %s: %d entries exceed the cap of %d", p, len(resp.Entries), maxSyncEntries)
	}
	s.mergeAll(resp.Entries, fromSync)
	return nil
}

// otherNetwork reports whether identify told us that p serves the catalog
// sync protocol of another network and not ours, and names that network
// (its short ID). The protocol ID carries the network, so a peer of
// another network fails negotiation rather than reaching our handler.
func (s *Service) otherNetwork(p peer.ID) (string, bool) {
	protos, err := s.h.Peerstore().GetProtocols(p)
	if err != nil || slices.Contains(protos, s.proto) {
		return "", false
	}
	for _, id := range protos {
		if hex, ok := strings.CutPrefix(string(id), syncProtocolPrefix); ok && len(hex) == 64 {
			return catalog.IDFromString(hex).Short(), true
		}
	}
	return "", false
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
func (s *Service) mergeAll(raw [][]byte, src source) {
	now := s.now()
	batch := make([]*catalog.SignedEntry, 0, len(raw))
	for _, b := range raw {
		e, err := s.store.Open(b, now)
		if err != nil {
			if !errors.Is(err, catalog.ErrLocal) {
				s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
			}
			continue
		}
		batch = append(batch, e)
	}
	outs, errs := s.store.MergeAll(batch, now)
	for i, e := range batch {
		s.merged(e, outs[i], errs[i], src)
	}
}

// admitSync applies the per-peer inbound limits: a token bucket (one
// token per SyncMinInterval, burst SyncBurst), and at most SyncBurst of
// the peer's syncs served at once, so that a few peers holding requests
// open until SyncTimeout cannot fill all MaxConcurrentSyncs slots and
// starve the others. It returns why the sync is refused, or "" after
// counting it in flight; the caller then calls releaseSync(p) when done.
func (s *Service) admitSync(p peer.ID) string {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	l, ok := s.limiters.Get(p)
	if !ok {
		l = rate.NewLimiter(rate.Every(s.params.SyncMinInterval), s.params.SyncBurst)
		s.limiters.Add(p, l)
	}
	if !l.Allow() {
		return "rate limited"
	}
	if s.syncing[p] >= s.params.SyncBurst {
		return "too many concurrent syncs from this peer"
	}
	s.syncing[p]++
	return ""
}

// releaseSync ends a sync admitted by admitSync.
func (s *Service) releaseSync(p peer.ID) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncing[p]--; s.syncing[p] <= 0 {
		delete(s.syncing, p)
	}
}

// handleSync serves one catalog sync. Syncs are served concurrently, at most
// MaxConcurrentSyncs at once (peers not in the catalog at most half of
// them), and per peer at most SyncBurst per SyncMinInterval and SyncBurst
// at once; refused syncs are reset with libp2p's rate-limit (per-peer
// limits) or resource (slots taken) codes.
func (s *Service) handleSync(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	p := st.Conn().RemotePeer()
	refuse := func(code network.StreamErrorCode, why string, args ...any) {
		s.stats.syncsRefused.Add(1)
		s.log.Debug("sync refused", append([]any{"peer", p, "why", why}, args...)...)
		_ = st.ResetWithError(code)
	}
	if why := s.admitSync(p); why != "" {
		refuse(network.StreamRateLimited, why)
		return
	}
	defer s.releaseSync(p)
	select {
	case s.serving <- struct{}{}:
		defer func() { <-s.serving }()
	default:
		refuse(network.StreamResourceLimitExceeded, "too many concurrent syncs")
		return
	}
	// A peer without a fresh entry here (a newcomer, or an identity made
	// up for a flood) may only use the strangers' half of the slots, so
	// no number of identities can keep the members from syncing.
	if _, member := s.store.Snapshot().Get(p); !member {
		select {
		case s.strangers <- struct{}{}:
			defer func() { <-s.strangers }()
		default:
			refuse(network.StreamResourceLimitExceeded, "too many concurrent syncs from peers not in the catalog")
			return
		}
	}
	_ = st.SetDeadline(time.Now().Add(s.params.SyncTimeout))
	var req pb.SyncRequest
	if err := framer.ReadProto(bufio.NewReader(st), s.params.MaxSyncMessage, &req); err != nil {
		s.stats.refuse(true, "malformed")
		refuse(CodeProtocolViolation, "bad request", "err", err)
		return
	}
	if !bytes.Equal(req.Network, s.network[:]) {
		refuse(CodeDifferentNetwork, "other network")
		return
	}
	_, span := s.tracer.Start(s.ctx, "mosaik.discovery.sync.serve", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("peer", p.String()), attribute.Int("entries", len(req.Entries))))
	defer span.End()
	if len(req.Entries) > maxSyncEntries {
		refuse(CodeProtocolViolation, "too many entries", "n", len(req.Entries))
		return
	}
	// Answer with the catalog as it was before merging the request, but
	// merge first, so the initiator's SyncWith returns after both merged.
	snap := s.store.Snapshot()
	s.mergeAll(req.Entries, fromSync)
	if err := framer.WriteProto(st, &pb.SyncResponse{Entries: s.entries(snap)}); err != nil {
		_ = st.Reset()
		return
	}
	s.stats.syncsServed.Add(1)
	_ = st.Close()
}
