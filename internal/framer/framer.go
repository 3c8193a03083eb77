// Package framer is the length-delimited framing shared by mosaik's
// protocols (catalog sync, streams, groups): each message is an unsigned
// LEB128 varint length followed by that many bytes.
//
// Every reader takes a cap, checked before anything is read. Memory follows
// the bytes that arrive, not the length a peer declares: a frame that claims
// 4 MiB and delivers 10 bytes costs one small first chunk (at most
// FirstChunk bytes), and the buffer then doubles as data keeps coming.
//
// It sits at the bottom of the package graph and imports nothing of ours.
package framer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ErrTooLarge is returned when a frame's declared length exceeds the cap.
var ErrTooLarge = errors.New("framer: frame exceeds size limit")

// ErrBadLength is returned when a frame's length is not a valid varint
// (more than ten bytes, or over 64 bits): a malformed frame, not a
// transport failure.
var ErrBadLength = errors.New("framer: malformed frame length")

// FirstChunk is the most a reader allocates for a frame before its bytes
// arrive; past it the buffer grows by doubling as they do.
const FirstChunk = 4 << 10

// ReadFrame reads one frame of at most max bytes into a new buffer.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := readLen(r, max)
	if err != nil {
		return nil, err
	}
	return readBody(r, nil, n)
}

// readLen reads a frame's declared length and checks it against max.
func readLen(r io.ByteReader, max int) (int, error) {
	n, err := readUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("framer: read length: %w", err)
	}
	if n > uint64(max) {
		return 0, fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, max)
	}
	return int(n), nil
}

// readUvarint is binary.ReadUvarint with an overlong or overflowing
// varint reported as ErrBadLength: io.EOF before the first byte,
// io.ErrUnexpectedEOF inside it.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := range binary.MaxVarintLen64 {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return x, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return x, ErrBadLength
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return x, ErrBadLength
}

// readBody appends exactly n bytes from r to dst[:0]. Capacity already in
// dst is used as is; beyond it the buffer grows only as bytes arrive.
func readBody(r io.Reader, dst []byte, n int) ([]byte, error) {
	dst = dst[:0]
	if cap(dst) >= n {
		dst = dst[:n]
		if _, err := io.ReadFull(r, dst); err != nil {
			return dst, truncated(n, err)
		}
		return dst, nil
	}
	for len(dst) < n {
		step := min(n-len(dst), max(FirstChunk, len(dst)))
		if cap(dst)-len(dst) < step {
			grown := make([]byte, len(dst), len(dst)+step)
			copy(grown, dst)
			dst = grown
		}
		start := len(dst)
		dst = dst[:start+step]
		if _, err := io.ReadFull(r, dst[start:]); err != nil {
			return dst[:start], truncated(n, err)
		}
	}
	return dst, nil
}

func truncated(n int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("framer: read %d-byte frame: %w", n, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("framer: read %d-byte frame: %w", n, err)
}

// AppendFrame appends the framed form of p to dst.
func AppendFrame(dst, p []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

// WriteFrame writes p as one frame.
func WriteFrame(w io.Writer, p []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(p)+binary.MaxVarintLen64), p))
	return err
}

// WriteProto marshals m and writes it as one frame.
func WriteProto(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("framer: marshal: %w", err)
	}
	return WriteFrame(w, b)
}

// ReadProto reads one frame of at most max bytes into m.
func ReadProto(r *bufio.Reader, max int, m proto.Message) error {
	b, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("framer: decode %T: %w", m, err)
	}
	return nil
}

// Reader reads a sequence of frames of at most max bytes each, reusing one
// buffer. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader over r with an 8 KiB read buffer.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 8<<10), max: max}
}

// Buffered returns how many bytes past the last frame were already read
// from the underlying stream.
func (fr *Reader) Buffered() int { return fr.r.Buffered() }

// Complete reports whether a whole frame is already buffered, so that
// Next returns it without reading from the underlying stream.
func (fr *Reader) Complete() bool {
	k := fr.r.Buffered()
	if k == 0 {
		return false
	}
	b, _ := fr.r.Peek(min(k, binary.MaxVarintLen64))
	n, m := binary.Uvarint(b)
	if m <= 0 {
		return m < 0 // an overlong length: Next fails at once
	}
	return uint64(k-m) >= n
}

// Held returns the capacity of the buffer the reader keeps between frames.
func (fr *Reader) Held() int { return cap(fr.buf) }

// Max returns the reader's cap.
func (fr *Reader) Max() int { return fr.max }

// SetMax changes the cap for the frames read from now on: a protocol reads
// its small handshake frames under a small cap and raises it once the peer
// is authenticated, so that no unauthenticated peer makes it buffer a
// large frame.
func (fr *Reader) SetMax(max int) { fr.max = max }

// Next returns the next frame's body, valid only until the next call.
// An empty frame is returned as an empty, non-nil slice.
func (fr *Reader) Next() ([]byte, error) {
	n, err := readLen(fr.r, fr.max)
	if err != nil {
		return nil, err
	}
	b, err := readBody(fr.r, fr.buf, n)
	if cap(b) > cap(fr.buf) {
		fr.buf = b[:0]
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// NextInto is Next reading the body into a buffer from get instead of the
// reader's own, so the body stays valid after the next call. get is asked
// for a buffer of exactly the declared length only when that length is at
// most FirstChunk, or once at least half the bytes have arrived; until then
// the bytes are held in the reader's own growing buffer. It returns the
// buffer from get (nil if get was not called) for recycling.
func (fr *Reader) NextInto(get func(n int) []byte) (body, buf []byte, err error) {
	n, err := readLen(fr.r, fr.max)
	if err != nil {
		return nil, nil, err
	}
	if n <= FirstChunk {
		buf = get(n)
		if _, err := io.ReadFull(fr.r, buf[:n]); err != nil {
			return nil, buf, truncated(n, err)
		}
		return buf[:n], buf, nil
	}
	// A large claim: take the first half through the growing buffer, so a
	// peer that stops early never makes us hold the whole declared length.
	half := n / 2
	b, err := readBody(fr.r, fr.buf, half)
	if cap(b) > cap(fr.buf) {
		fr.buf = b[:0]
	}
	if err != nil {
		return nil, nil, err
	}
	buf = get(n)
	copy(buf, b)
	if _, err := io.ReadFull(fr.r, buf[half:n]); err != nil {
		return nil, buf, truncated(n, err)
	}
	return buf[:n], buf, nil
}
