package harness

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The raw baseline: one libp2p stream per subscriber carrying the exact
// framing of mosaik streams (uvarint length, type byte 0x10, uvarint
// sequence number, payload), written through a 32 KiB bufio.Writer and
// read with a 64 KiB bufio.Reader and one reused frame buffer. The reader
// checks the sequence number and hands the payload in place (no copy, no
// queue): the physical limit of the transport with equal framing.

const (
	rawProto      protocol.ID = "/mosaik-bench/raw/1.0.0"
	rawFirstProto protocol.ID = "/mosaik-bench/raw-first/1.0.0"
	rawFrame                  = 0x10 // the data frame type of the streams wire format
	rawMaxFrame               = 4 << 20
)

type rawSystem struct{}

func (rawSystem) name() string { return "raw" }

type rawSession struct {
	hosts    []host.Host
	flush    bool
	outs     []*rawOut
	started  chan struct{}
	deliver  func(int, []byte)
	handlers tracker
	once     sync.Once
}

type rawOut struct {
	st  network.Stream
	bw  *bufio.Writer
	seq uint64
	hdr [24]byte
}

func (rawSystem) open(ctx context.Context, o openOpts) (session, error) {
	hs, err := newHosts(1 + o.subs)
	if err != nil {
		return nil, err
	}
	s := &rawSession{hosts: hs, flush: o.flush, started: make(chan struct{})}
	for i, h := range hs[1:] {
		h.SetStreamHandler(rawProto, func(st network.Stream) {
			if !s.handlers.enter() {
				_ = st.Reset()
				return
			}
			defer s.handlers.leave()
			<-s.started
			if err := rawRead(st, func(p []byte) { s.deliver(i, p) }); err != nil {
				_ = st.Reset()
				return
			}
			_ = st.Close()
		})
	}
	if err := connectStar(ctx, hs); err != nil {
		_ = s.close()
		return nil, err
	}
	for _, h := range hs[1:] {
		st, err := hs[0].NewStream(ctx, h.ID(), rawProto)
		if err != nil {
			_ = s.close()
			return nil, err
		}
		s.outs = append(s.outs, &rawOut{st: st, bw: bufio.NewWriterSize(st, 32<<10)})
	}
	return s, nil
}

func (s *rawSession) start(deliver func(int, []byte)) {
	s.deliver = deliver
	close(s.started)
}

func (o *rawOut) write(p []byte) error {
	o.seq++
	if _, err := o.bw.Write(rawHeader(o.hdr[:0], o.seq, len(p))); err != nil {
		return err
	}
	_, err := o.bw.Write(p)
	return err
}

// send writes one frame to every stream (flushing each in latency mode).
func (s *rawSession) send(_ context.Context, p []byte) error {
	for _, o := range s.outs {
		if err := o.write(p); err != nil {
			return err
		}
		if s.flush {
			if err := o.bw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendBulk writes n frames to every stream, each from its own goroutine
// (like the producer's per-consumer writers), then flushes.
func (s *rawSession) sendBulk(_ context.Context, n int, p []byte) error {
	errs := make([]error, len(s.outs))
	var wg sync.WaitGroup
	for i, o := range s.outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := o.write(p); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = o.bw.Flush()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *rawSession) close() error {
	var err error
	s.once.Do(func() {
		select {
		case <-s.started:
		default:
			s.deliver = func(int, []byte) {}
			close(s.started)
		}
		for _, o := range s.outs {
			_ = o.bw.Flush()
			_ = o.st.Close()
		}
		for _, h := range s.hosts[1:] {
			h.RemoveStreamHandler(rawProto)
		}
		err = closeHosts(s.hosts)
		s.handlers.shutdown()
	})
	return err
}

// rawHeader appends a data frame header exactly as mosaik streams does.
func rawHeader(dst []byte, seq uint64, n int) []byte {
	var tmp [binary.MaxVarintLen64]byte
	sl := binary.PutUvarint(tmp[:], seq)
	dst = binary.AppendUvarint(dst, uint64(1+sl+n))
	dst = append(dst, rawFrame)
	return append(dst, tmp[:sl]...)
}

// rawRead reads data frames until EOF, checks the sequence and calls
// onFrame with each payload (valid only during the call).
func rawRead(r io.Reader, onFrame func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	next := uint64(1)
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if n == 0 || n > rawMaxFrame {
			return fmt.Errorf("bad frame length %d", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n, max(int(n), 4096))
		}
		body := buf[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if body[0] != rawFrame {
			return fmt.Errorf("frame type %#x", body[0])
		}
		seq, k := binary.Uvarint(body[1:])
		if k <= 0 || seq != next {
			return fmt.Errorf("sequence %d, want %d", seq, next)
		}
		next++
		onFrame(body[1+k:])
	}
}

// firstDatum opens a new stream on an existing connection to a handler
// that writes one frame at once, and reads that frame.
func (rawSystem) firstDatum(ctx context.Context, ops int, sample func(time.Duration)) error {
	hs, err := newHosts(2)
	if err != nil {
		return err
	}
	payload := make([]byte, 64)
	var handlers tracker
	defer func() {
		hs[0].RemoveStreamHandler(rawFirstProto)
		_ = closeHosts(hs) // resets open streams, so handlers return
		handlers.shutdown()
	}()
	hs[0].SetStreamHandler(rawFirstProto, func(st network.Stream) {
		if !handlers.enter() {
			_ = st.Reset()
			return
		}
		defer handlers.leave()
		bw := bufio.NewWriterSize(st, 32<<10)
		var hdr [24]byte
		_, _ = bw.Write(rawHeader(hdr[:0], 1, len(payload)))
		_, _ = bw.Write(payload)
		if bw.Flush() != nil {
			_ = st.Reset()
			return
		}
		_, _ = st.Read(hdr[:1]) // until the reader closes
		_ = st.Close()
	})
	if err := connectStar(ctx, hs); err != nil {
		return err
	}
	for range ops {
		start := time.Now()
		st, err := hs[1].NewStream(ctx, hs[0].ID(), rawFirstProto)
		if err != nil {
			return err
		}
		br := bufio.NewReaderSize(st, 64<<10)
		n, err := binary.ReadUvarint(br)
		if err == nil {
			_, err = io.ReadFull(br, make([]byte, n))
		}
		if err != nil {
			_ = st.Reset()
			return err
		}
		sample(time.Since(start))
		_ = st.Close()
	}
	return nil
}
