package groups

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// Pipelined chunk requests (snapshot protocol 1.1.0, PROTOCOL.md §20): a
// fetcher opens one stream per holder for a whole transfer and writes its
// chunk requests on it as it makes them, without waiting for the
// answers; the holder answers them in order on the same stream. The
// messages, their caps and every check are those of 1.0.0, which opens a
// new stream per chunk (32 stream set-ups per 8 MB, each a protocol
// negotiation, a handler goroutine and a few small encrypted writes each
// way). A holder serves both; a fetcher uses 1.1.0 with a holder that does
// not say it only speaks 1.0.0.

// SnapshotPipelineProtocolPrefix is the pipelined snapshot transfer
// protocol without its network part: many chunk requests on one stream,
// answered in order.
const SnapshotPipelineProtocolPrefix = "/mosaik/groups/snapshot/1.1.0"

// SnapshotPipelineProtocolID returns the pipelined snapshot transfer
// protocol of a network.
func SnapshotPipelineProtocolID(nw catalog.NetworkID) protocol.ID {
	return protocol.ID(SnapshotPipelineProtocolPrefix + "/" + nw.String())
}

// snapshotPipelineMaxRequests caps the requests a holder answers on one
// stream; it then closes the stream (a fetcher opens another). 4096
// chunks of the default 256 KiB are a 1 GiB snapshot, the default cap.
const snapshotPipelineMaxRequests = 4096

// servePipelined answers the chunk requests of one 1.1.0 stream, in
// order, until the fetcher closes its side, a request is unreadable, a
// reply cannot be written, or snapshotPipelineMaxRequests were answered.
// Each request is read and answered within snapshotServeTimeout.
func servePipelined(st network.Stream, serve func(from peer.ID, req []byte) (snapshotChunk, []byte), log func(msg string, args ...any)) {
	serveRequests(st, serve, log, snapshotPipelineMaxRequests)
}

// serveRequests answers up to limit chunk requests of one stream, in order
// (1.0.0: one; 1.1.0: snapshotPipelineMaxRequests), then closes it. An
// unreadable request (oversize, cut short) is answered with a refusal
// and ends the stream.
func serveRequests(st network.Stream, serve func(from peer.ID, req []byte) (snapshotChunk, []byte), log func(msg string, args ...any), limit int) {
	from := st.Conn().RemotePeer()
	r := bufio.NewReader(st)
	for range limit {
		_ = st.SetDeadline(time.Now().Add(snapshotServeTimeout))
		req, err := framer.ReadFrame(r, snapshotRequestCap)
		if errors.Is(err, io.EOF) {
			break // the fetcher is done
		}
		if err != nil {
			log("snapshot request unreadable", "peer", from, "err", err)
			// Answered, then the stream ends (closed, not reset: a reset
			// could overtake the refusal).
			if framer.WriteFrame(st, encodeSnapshotRefusal(snapshotBadRequest, err.Error())) != nil {
				_ = st.Reset()
				return
			}
			_ = st.Close()
			return
		}
		chunk, refusal := serve(from, req)
		if refusal != nil {
			err = framer.WriteFrame(st, refusal)
		} else {
			err = writeSnapshotChunkFrame(st, chunk)
		}
		if err != nil {
			_ = st.Reset()
			return
		}
	}
	_ = st.Close()
}

// snapshotSessionNet is a snapshotNet that can carry a transfer's
// requests to one holder on one stream (bondNet).
type snapshotSessionNet interface {
	// openSnapshotSession opens a pipelined stream to holder; ok false
	// when the holder is known to speak only the one-chunk protocol.
	openSnapshotSession(ctx context.Context, holder peer.ID) (s *snapshotSession, ok bool, err error)
}

// snapshotSession is the fetcher's side of one 1.1.0 stream: fetch writes
// a request and waits for its answer, which the session's reader
// goroutine reads, in request order, into the caller's memory. An error
// on the stream (or a caller whose ctx ended, which resets it) ends the
// session: every request pending and every later one fails. Safe for
// concurrent use.
type snapshotSession struct {
	st     network.Stream
	holder peer.ID

	mu       sync.Mutex // writes and queue order; the fields below
	dead     error      // why no more requests are taken (nil: open)
	sent     int        // requests written
	finished bool       // queue closed
	queue    chan *sessionCall
	done     chan struct{} // closed when the reader returned
}

// errSessionFull: the session wrote as many requests as a holder answers
// on one stream (snapshotPipelineMaxRequests); the next go on a new one.
var errSessionFull = errors.New("groups: snapshot session full")

type sessionCall struct {
	req snapshotChunkRequest
	dst []byte
	res chan sessionResult // buffered: the reader never waits on it
}

type sessionResult struct {
	chunk snapshotChunk
	err   error
}

// snapshotSessionQueue bounds the requests written and not yet answered
// on one session; the fetcher's PerHolder keeps it far below.
const snapshotSessionQueue = 64

func newSnapshotSession(st network.Stream, holder peer.ID) *snapshotSession {
	s := &snapshotSession{st: st, holder: holder, queue: make(chan *sessionCall, snapshotSessionQueue), done: make(chan struct{})}
	go s.readLoop()
	return s
}

// fetch sends req and returns its answer, as fetchChunkInto does: with
// dst (req.MaxBytes bytes, or nil) as the place for the chunk's data, not
// written after fetch returned. It returns once ctx ends: that resets the
// stream, which fails the session's other requests too (the fetcher drops
// a holder that timed out anyway).
func (s *snapshotSession) fetch(ctx context.Context, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
	c := &sessionCall{req: req, dst: dst, res: make(chan sessionResult, 1)}
	s.mu.Lock()
	err := s.dead
	if err == nil && s.sent == snapshotPipelineMaxRequests {
		s.mu.Unlock()
		return snapshotChunk{}, errSessionFull
	}
	if err == nil && len(s.queue) == cap(s.queue) {
		err = errors.New("too many requests in flight")
	}
	if err == nil {
		s.sent++
		if dl, ok := ctx.Deadline(); ok {
			_ = s.st.SetWriteDeadline(dl)
		}
		if err = framer.WriteFrame(s.st, encodeSnapshotChunkRequest(req)); err == nil {
			s.queue <- c
		} else {
			s.dead = err
			_ = s.st.Reset()
		}
	}
	s.mu.Unlock()
	if err != nil {
		return snapshotChunk{}, fmt.Errorf("groups: snapshot request to %s: %w", s.holder, err)
	}
	var r sessionResult
	select {
	case r = <-c.res:
	case <-ctx.Done():
		s.kill(ctx.Err())
		r = <-c.res // the reader stops writing into dst before it answers
	}
	return r.chunk, r.err
}

// readLoop answers the queued calls in order, reading each reply (into
// the call's dst when it has the usual shape); the first error ends the
// session.
func (s *snapshotSession) readLoop() {
	defer close(s.done)
	r := bufio.NewReaderSize(s.st, 64<<10)
	var err error
	for c := range s.queue {
		if err == nil {
			var chunk snapshotChunk
			chunk, err = readSnapshotReplyInto(r, s.st, c.req.MaxBytes, c.dst)
			if err == nil {
				c.res <- sessionResult{chunk: chunk}
				continue
			}
			var ref *snapshotRefusedError
			if !errors.As(err, &ref) {
				err = fmt.Errorf("groups: snapshot reply from %s: %w", s.holder, err)
			}
			s.kill(err)
			c.res <- sessionResult{err: err}
			continue
		}
		c.res <- sessionResult{err: err} // after the session ended
	}
	if err == nil {
		_ = s.st.Close()
	}
}

// kill ends the session with err: the stream is reset and no request is
// taken any more.
func (s *snapshotSession) kill(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = err
	}
	_ = s.st.Reset()
}

// close ends the session once the transfer is over and waits for its
// reader (finish, then wait).
func (s *snapshotSession) close() {
	s.finish()
	<-s.done
}

// finish takes no more requests: the write side closes, so the holder
// ends the stream after answering what it read, and the reader returns
// once it read those answers.
func (s *snapshotSession) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		// A request that picked this session before it was retired goes
		// on a new one, as a request past the limit does.
		s.dead = fmt.Errorf("%w: session closed", errSessionFull)
		_ = s.st.CloseWrite()
	}
	if !s.finished {
		s.finished = true
		close(s.queue)
	}
}

// snapshotSessions are a transfer's sessions, one per holder, opened on
// the first request to each; fetch is a snapshotFetchFunc. A holder that
// speaks only 1.0.0, or whose session cannot be opened, is asked one
// chunk per stream (fallback). close ends them all.
type snapshotSessions struct {
	net      snapshotSessionNet
	fallback snapshotFetchFunc

	mu      sync.Mutex
	closed  bool
	by      map[peer.ID]*sessionSlot
	retired []*snapshotSession // full, finishing their last answers
}

type sessionSlot struct {
	mu     sync.Mutex // held while opening
	s      *snapshotSession
	legacy bool // the holder speaks only 1.0.0
}

func newSnapshotSessions(net snapshotSessionNet, fallback snapshotFetchFunc) *snapshotSessions {
	return &snapshotSessions{net: net, fallback: fallback, by: map[peer.ID]*sessionSlot{}}
}

func (ss *snapshotSessions) fetch(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
	for {
		s, err := ss.session(ctx, holder)
		if err != nil || s == nil {
			if err != nil {
				return snapshotChunk{}, err
			}
			return ss.fallback(ctx, holder, req, dst)
		}
		c, err := s.fetch(ctx, req, dst)
		if !errors.Is(err, errSessionFull) {
			return c, err
		}
		ss.retire(holder, s)
	}
}

// retire replaces holder's full session s: s finishes its pending
// requests, and the next request opens a new one.
func (ss *snapshotSessions) retire(holder peer.ID, s *snapshotSession) {
	ss.mu.Lock()
	slot := ss.by[holder]
	ss.mu.Unlock()
	slot.mu.Lock()
	if slot.s == s {
		slot.s = nil
		s.finish()
		ss.mu.Lock()
		ss.retired = append(ss.retired, s)
		ss.mu.Unlock()
	}
	slot.mu.Unlock()
}

// session returns holder's session, opening it on first use; nil (and no
// error) for a holder asked on 1.0.0.
func (ss *snapshotSessions) session(ctx context.Context, holder peer.ID) (*snapshotSession, error) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil, errors.New("groups: snapshot transfer over")
	}
	slot := ss.by[holder]
	if slot == nil {
		slot = &sessionSlot{}
		ss.by[holder] = slot
	}
	ss.mu.Unlock()
	slot.mu.Lock()
	if slot.s == nil && !slot.legacy {
		s, ok, err := ss.net.openSnapshotSession(ctx, holder)
		if err != nil {
			slot.mu.Unlock()
			return nil, err // the next request tries again
		}
		ss.mu.Lock()
		if ss.closed && s != nil {
			ss.mu.Unlock()
			slot.mu.Unlock()
			s.close()
			return nil, errors.New("groups: snapshot transfer over")
		}
		slot.s, slot.legacy = s, !ok
		ss.mu.Unlock()
	}
	s := slot.s
	slot.mu.Unlock()
	return s, nil
}

// close ends every session and waits for their readers.
func (ss *snapshotSessions) close() {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	open := ss.retired
	for _, slot := range ss.by {
		slot.mu.Lock()
		if slot.s != nil {
			open = append(open, slot.s)
		}
		slot.mu.Unlock()
	}
	ss.mu.Unlock()
	for _, s := range open {
		s.close()
	}
}

// openSnapshotSession implements snapshotSessionNet.
func (n *bondNet) openSnapshotSession(ctx context.Context, holder peer.ID) (*snapshotSession, bool, error) {
	v11, v10 := SnapshotPipelineProtocolID(n.network), SnapshotProtocolID(n.network)
	if ps, err := n.h.Peerstore().SupportsProtocols(holder, v11, v10); err == nil && len(ps) == 1 && ps[0] == v10 {
		return nil, false, nil
	}
	st, err := n.h.NewStream(ctx, holder, v11)
	if nse := (msmux.ErrNotSupported[protocol.ID]{}); errors.As(err, &nse) {
		return nil, false, nil // negotiated: the holder speaks only 1.0.0
	}
	if err != nil {
		return nil, false, fmt.Errorf("groups: snapshot stream to %s: %w", holder, err)
	}
	return newSnapshotSession(st, holder), true, nil
}
