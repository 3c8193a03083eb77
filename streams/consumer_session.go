package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/dialer"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// receiver is the consumer's link to one producer.
type receiver struct {
	sub    *subscription
	cancel context.CancelFunc
	expiry *time.Timer
	done   chan struct{}
	// drain is set (under Consumer.mu) while the producer ended in order
	// (withdrew the stream or departed) and the receiver is left to read
	// what is still on the link; it cancels the receiver when it fires.
	drain    *time.Timer
	drainGen uint64      // which drain the timer belongs to (under Consumer.mu)
	draining atomic.Bool // no retries once the current session ends
	// ended is set once the producer ended in order: the link's end is
	// then no refusal, so a producer that comes back (re-added the stream,
	// restarted) is subscribed to again at once.
	ended atomic.Bool
}

// receive runs one producer's receiver until it terminates; prev, if not
// nil, is closed when the producer's previous receiver ended, which this
// one waits for first.
func (c *Consumer[T]) receive(ctx context.Context, r *receiver, prev <-chan struct{}) {
	defer c.wg.Done()
	defer close(r.done)
	defer func() {
		c.mu.Lock()
		if c.running[r.sub.peer] == r.done {
			delete(c.running, r.sub.peer)
		}
		c.mu.Unlock()
	}()
	var err error
	var out sessionOutcome // the last session's (read by the deferred refusal)
	defer func() {
		if code, ok := codeOf(err); ok {
			var ce *CodeError
			if !errors.As(err, &ce) { // a reset carrying the code: expose it as a CodeError
				err = fmt.Errorf("%w: %w", &CodeError{Code: code, Remote: true}, err)
			}
		}
		c.set.setState(r.sub, Terminated, err)
		keep := false
		c.mu.Lock()
		if c.recvs[r.sub.peer] == r {
			delete(c.recvs, r.sub.peer)
		}
		r.stopTimers()
		if err != nil && ctx.Err() == nil && !r.ended.Load() {
			// Ended for good: do not retry until either entry changes in
			// content, then after a backoff, or RefusalRetryMax passed
			// (see refusal), and keep the
			// subscription visible in Producers() with its reason for a
			// while, so the application can see why.
			snap := c.svc.d.Catalog()
			if e, ok := snap.Get(r.sub.peer); ok {
				// The producer may have judged an older copy of our entry:
				// ours changed since it accepted us, or it did not know us.
				code, _ := codeOf(err)
				stale := (!out.accepted.IsZero() && out.ours != contentKey(&snap.Local().Entry)) || code == CodeUnknownPeer
				if old := c.refuse(r.sub, &e.Entry, &snap.Local().Entry, stale, err); old != nil {
					defer c.set.remove(old)
				}
				keep = true
				defer c.warnRefused(r.sub.peer, err) // not under c.mu
			}
		}
		c.mu.Unlock()
		if !keep {
			c.set.remove(r.sub)
		}
		c.poke()
	}()
	if prev != nil {
		// Waited for even when this receiver is cancelled meanwhile: a
		// later one waits on this one's done, which must mean that no
		// older receiver of the producer runs either. The wait is short:
		// a replaced receiver was cancelled (its ticket expired, it was
		// dropped or drained).
		<-prev
		if ctx.Err() != nil {
			return
		}
	}
	bo := c.cfg.backoff()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			wait := bo.NextBackOff()
			if wait == backoff.Stop {
				err = fmt.Errorf("streams: gave up on producer %s: %w", r.sub.peer, err)
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			r.sub.reconnects.Add(1)
			c.reconnects.Add(1)
		}
		out = sessionOutcome{}
		err = c.session(ctx, r, &out)
		if out.delivered || (!out.accepted.IsZero() && time.Since(out.accepted) >= stableSession) {
			// The backoff restarts after a session that carried data or
			// stayed up: its give-up time counts failing, not a quiet
			// subscription's connected time (a producer that sends rarely
			// would otherwise be given up at the first link failure after
			// MaxElapsedTime).
			bo.Reset()
		}
		if ctx.Err() != nil {
			err = nil
			return
		}
		code, hasCode := codeOf(err)
		switch {
		case hasCode:
			c.ends.add(code)
		case errors.Is(err, errProtocol) || errors.Is(err, errDecode):
			// Found here (an oversize, malformed or undecodable frame):
			// the link was ended with ProtocolViolation, which counts as
			// the producer's codes do.
			c.ends.add(CodeProtocolViolation)
		}
		if r.draining.Load() { // the producer ended: no retries
			return
		}
		switch {
		case errors.Is(err, errDecode):
			return // a producer sending undecodable datums is broken or hostile
		case hasCode && code == CodeUnknownPeer:
			// The producer does not know us yet: sync catalogs, then retry.
			e := r.sub.info().Entry
			sctx, cancel := context.WithTimeout(ctx, c.svc.params.HandshakeTimeout)
			serr := c.svc.d.SyncWith(sctx, e.Entry.AddrInfo())
			cancel()
			if serr != nil {
				err = fmt.Errorf("%w; catalog sync failed: %v", err, serr)
				return
			}
		case hasCode && code.Final():
			return
		}
		if hasCode {
			var ce *CodeError
			if !errors.As(err, &ce) {
				err = fmt.Errorf("%w: %w", &CodeError{Code: code, Remote: true}, err)
			}
		}
		c.set.setState(r.sub, Connecting, err)
		if c.cfg.lowestK > 0 {
			c.poke() // lowest() passes over a failing producer: choose again now, not at the next heartbeat
		}
		c.warnRefused(r.sub.peer, err) // a refusal that is retried: no capacity
		c.log.Debug("producer link failed; retrying", "peer", r.sub.peer, "err", err)
	}
}

var errDecode = errors.New("streams: datum does not decode")

// stableSession is how long an accepted session must stay up, carrying
// data or not, for the reconnect backoff to start again after it: shorter
// sessions (a producer that accepts and drops the link at once) keep
// backing off and are given up after the backoff's MaxElapsedTime.
const stableSession = 5 * time.Second

// sessionOutcome is what a session tells the reconnect loop.
type sessionOutcome struct {
	accepted  time.Time  // when the producer accepted; zero if it did not
	ours      catalog.ID // contentKey of our entry then
	delivered bool       // a datum was handed to the buffer
}

// session connects, subscribes and reads datums until the link fails.
// It records in *out when the producer accepted and whether a datum was
// handed to the buffer.
func (c *Consumer[T]) session(ctx context.Context, r *receiver, out *sessionOutcome) error {
	h := c.svc.h
	e := r.sub.info().Entry
	if len(e.Entry.Addrs) > 0 {
		h.Peerstore().AddAddrs(e.Entry.PeerID, e.Entry.Addrs, time.Hour)
	}
	start := time.Now()
	sctx, span := c.svc.tracer.Start(ctx, "mosaik.streams.subscribe", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer", r.sub.peer.String()), attribute.String("stream", c.id.Short())))
	handshake := func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			c.svc.subscribeDur.Record(ctx, time.Since(start).Seconds(), c.attrs)
		}
		span.End()
	}
	hctx, cancel := context.WithTimeout(sctx, c.svc.params.HandshakeTimeout)
	var err error
	if h.Network().Connectedness(r.sub.peer) != network.Connected {
		// The receiver paces its own retries: a dial that failed while the
		// producer was down must not keep its restarted run out for the
		// swarm's dial backoff (which grows to minutes). The dial is
		// dialer.Connect's, which also survives crossing a dial of the
		// producer's node to this one (discovery, a group bond).
		dialer.ClearBackoff(h, r.sub.peer)
		err = dialer.Connect(hctx, h, peer.AddrInfo{ID: r.sub.peer})
	}
	var st network.Stream
	if err == nil {
		st, err = h.NewStream(hctx, r.sub.peer, ProtocolID)
	}
	cancel()
	if err != nil {
		handshake(err)
		return err
	}
	// Close the stream when ctx ends, so a blocked read returns.
	// The reset must be over when the session returns: nothing of it may
	// outlive the consumer's Close.
	reset := make(chan struct{})
	link := &consumerLink{st: st}
	stop := context.AfterFunc(ctx, func() {
		defer close(reset)
		link.end(CodeCancelled, "consumer closed")
	})
	defer func() {
		if !stop() {
			<-reset
		}
	}()
	defer st.Close()
	nw := c.svc.d.Network()
	c.mu.Lock()
	prev, known := c.seen[r.sub.peer]
	c.mu.Unlock()
	// Ask to resume after the last datum held of the producer's run; a
	// producer with a replay window of that run resends what followed.
	resume := known && prev.epoch != 0
	sub, _ := appendControl(nil, frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: c.id[:], Criteria: c.cfg.criteria, Features: supportedFeatures,
		Codec: codecName(c.codec), Resume: resume, ResumeEpoch: prev.epoch, ResumeAfter: prev.last})
	_ = st.SetDeadline(time.Now().Add(c.svc.params.HandshakeTimeout))
	if _, err := st.Write(sub); err != nil {
		_ = st.Reset()
		handshake(err)
		return err
	}
	// The answer is a control frame (type byte and body): read under its
	// cap, so a producer cannot make this consumer buffer MaxFrameSize
	// before it has accepted.
	fr := newFrameReader(st, 1+maxControlFrame)
	typ, body, err := fr.next()
	fr.setMax(c.svc.params.MaxFrameSize)
	if err != nil {
		if errors.Is(err, errProtocol) {
			_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
		} else {
			_ = st.Reset()
		}
		handshake(err)
		return err
	}
	if typ == frameReject {
		handshake(errors.New("rejected"))
	} else {
		handshake(nil)
	}
	var acc *pb.Accept
	switch typ {
	case frameAccept:
		acc, err = decodeControl(body, &pb.Accept{})
		if err != nil {
			_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
			return err
		}
		link.inband.Store(acc.GetFeatures()&featureCloseFrames != 0)
		if !bytes.Equal(acc.Network, nw[:]) {
			link.end(CodeDifferentNetwork, "accepted for another network")
			return &CodeError{Code: CodeDifferentNetwork, Reason: "producer accepted for another network"}
		}
		if !bytes.Equal(acc.Stream, c.id[:]) {
			link.end(CodeStreamNotFound, "accepted another stream")
			return &CodeError{Code: CodeStreamNotFound, Reason: "producer accepted another stream"}
		}
		// An older producer does not say its codec; then nothing is checked.
		if have, want := acc.GetCodec(), codecName(c.codec); have != "" && want != "" && have != want {
			why := "producer encodes " + have + ", consumer decodes " + want
			link.end(CodeCodecMismatch, why)
			return &CodeError{Code: CodeCodecMismatch, Reason: why}
		}
	case frameReject:
		rej, err := decodeControl(body, &pb.Reject{})
		if err != nil {
			_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
			return err
		}
		return &CodeError{Code: Code(rej.Code), Reason: rej.Reason, Remote: true}
	default:
		_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
		return fmt.Errorf("%w: frame type %#x before Accept", errProtocol, typ)
	}
	_ = st.SetDeadline(time.Time{})
	c.mu.Lock()
	delete(c.retries, r.sub.peer) // accepted: a later refusal starts a fresh backoff
	c.mu.Unlock()
	c.set.setState(r.sub, Connected, nil)
	if c.cfg.lowestK > 0 {
		c.poke() // a producer that connects competes again for the k places (lowest)
	}
	out.accepted, out.ours = time.Now(), contentKey(&c.svc.d.Catalog().Local().Entry)
	epoch := acc.GetEpoch()
	seq := newSequencer(epoch, prev, known)
	// A session of a producer's new run owes the application a restart
	// gap on its first datum: if none is handed over, the next session
	// still owes it (position.restart).
	restartOwed, restartPrev := seq.restart, seq.prev
	// The producer resends from its window: a jump before the first datum
	// is what left the window.
	seq.replay = resume && acc.GetFeatures()&featureReplay != 0 && epoch == prev.epoch
	// handed is the sequence number of the last datum handed to the
	// delivery buffer: where this session leaves the producer's datums.
	// The sequencer moves on as frames are read; datums read but not
	// handed over when the receiver is cancelled (the buffer full) are
	// dropped, and the next session must resume before them (a replay
	// window resends them, or they count as missed).
	handed := seq.cur.last
	defer func() {
		pos, ok := seq.position()
		if handed < pos.last {
			// Also with nothing handed over ({epoch, 0}): the next
			// session resumes from the start of this run, so that what
			// was read and dropped is resent or counted.
			pos.last, pos.clean = handed, false
			ok = pos.epoch != 0
			if handed == 0 && restartOwed {
				pos.restart = &restartPrev
			}
		}
		if ok {
			c.remember(r.sub.peer, pos)
		}
	}()
	var bb *borrowBuf // the buffer of the frame just read (borrowing codecs)
	getBuf := func(n int) []byte { bb = c.getBuf(n); return bb.b }
	// Datums decoded from frames that were already buffered go to the
	// delivery buffer together, once the next frame is not buffered whole
	// (reading it could block) or recvBatch are pending: one lock and at
	// most one wake-up of the application per run instead of per datum.
	pending := make([]delivery[T], 0, recvBatch)
	var pendingBytes uint64
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		// Counted before the application can take them (a reader woken by
		// put may look at the subscription's stats at once); what put could
		// not hand over is taken back.
		// So are the gaps: Stats.Gaps counts the gaps that the datums handed
		// over report, and a gap on a datum dropped here is reported (or
		// resent away) by the next session.
		gaps := func(ds []delivery[T]) (n uint64) {
			for _, d := range ds {
				if d.gap != nil {
					n += d.gap.Missed
				}
			}
			return n
		}
		r.sub.datums.Add(uint64(len(pending)))
		r.sub.bytes.Add(pendingBytes)
		if g := gaps(pending); g > 0 {
			r.sub.gaps.Add(g)
			c.gaps.Add(g)
		}
		n, err := c.out.put(ctx, pending)
		if n > 0 {
			out.delivered = true
			handed = pending[n-1].seq
		}
		if n < len(pending) {
			var lost uint64
			for _, d := range pending[n:] {
				lost += uint64(d.n)
			}
			// Adding ^(x-1) subtracts x.
			r.sub.datums.Add(^uint64(len(pending) - n - 1))
			r.sub.bytes.Add(^(lost - 1))
			if g := gaps(pending[n:]); g > 0 {
				r.sub.gaps.Add(^(g - 1))
				c.gaps.Add(^(g - 1))
			}
		}
		clear(pending)
		pending, pendingBytes = pending[:0], 0
		return err
	}
	// Whatever ends the session, datums read before it are delivered
	// first (unless the consumer is closing).
	defer func() { _ = flush() }()
	for {
		if len(pending) >= recvBatch || (len(pending) > 0 && !fr.complete()) {
			if err := flush(); err != nil {
				return err
			}
		}
		var typ byte
		var body []byte
		if c.borrow {
			typ, body, _, err = fr.nextInto(getBuf)
		} else {
			typ, body, err = fr.next()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &CodeError{Code: CodeUnexpectedClose, Reason: "stream ended without Close"}
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return &CodeError{Code: CodeUnexpectedClose, Reason: "stream ended inside a frame"}
			}
			if errors.Is(err, errProtocol) {
				link.end(CodeProtocolViolation, "protocol violation")
			}
			return err
		}
		switch typ {
		case frameData, frameDataTimed:
			var (
				n       uint64
				payload []byte
				sent    time.Time
				err     error
			)
			if typ == frameData {
				n, payload, err = parseData(body)
			} else if n, sent, payload, err = parseTimed(body); err == nil {
				c.svc.latency.Record(ctx, time.Since(sent).Seconds(), c.attrs)
			}
			var gap *Gap
			if err == nil {
				gap, err = seq.next(n)
			}
			if err != nil {
				link.end(CodeProtocolViolation, "protocol violation")
				return err
			}
			if gap != nil {
				// Counted when handed over (flush). Debug: the application
				// sees it in RecvDatum and decides.
				c.log.Debug("datums missed", "peer", r.sub.peer, "cause", gap.Cause, "missed", gap.Missed, "after", gap.After)
			}
			v, err := c.codec.Decode(payload)
			if err != nil {
				link.end(CodeProtocolViolation, "protocol violation")
				return fmt.Errorf("%w: %v", errDecode, err)
			}
			pending = append(pending, delivery[T]{v: v, n: len(payload), seq: n, epoch: epoch, sub: r.sub, gap: gap, bb: bb})
			pendingBytes += uint64(len(payload))
		case frameClose:
			cl, err := decodeControl(body, &pb.Close{})
			if err != nil {
				link.end(CodeProtocolViolation, "protocol violation")
				return err
			}
			seq.closed(Code(cl.Code) == CodeGracefulShutdown)
			return &CodeError{Code: Code(cl.Code), Reason: cl.Reason, Remote: true}
		default:
			link.end(CodeProtocolViolation, "protocol violation")
			return fmt.Errorf("%w: unexpected frame type %#x", errProtocol, typ)
		}
	}
}

// recvBatch bounds the datums a receiver decodes before it hands them to
// the delivery buffer, so a full buffer holds back at most that many more.
const recvBatch = 64

// consumerLink is the consumer's end of one subscription stream. It ends
// the stream once: with a Close frame, then a clean close, when the
// producer confirmed featureCloseFrames and the frame can be written;
// with a reset carrying the code otherwise.
type consumerLink struct {
	st     network.Stream
	inband atomic.Bool // the producer's Accept confirmed featureCloseFrames
	once   sync.Once
}

func (l *consumerLink) end(code Code, reason string) {
	l.once.Do(func() {
		if l.inband.Load() {
			_ = l.st.SetWriteDeadline(time.Now().Add(inBandCutGrace))
			if _, err := l.st.Write(closeFrame(code, reason)); err == nil {
				_ = l.st.CloseWrite()
				_ = l.st.CloseRead() // a read blocked in the session returns
				return
			}
		}
		_ = l.st.ResetWithError(network.StreamErrorCode(code))
	})
}
