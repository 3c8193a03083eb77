// Package wire holds the length-delimited framing shared by mosaik's stream
// protocols: each message is an unsigned LEB128 varint length followed by
// that many bytes. Readers enforce a size cap before allocating.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ErrTooLarge is returned when a frame's declared length exceeds the cap.
var ErrTooLarge = errors.New("wire: frame exceeds size limit")

// ReadFrame reads one frame of at most max bytes. The declared length is
// checked before anything is allocated.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("wire: read length: %w", err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("wire: read %d-byte frame: %w", n, io.ErrUnexpectedEOF)
	}
	return buf, nil
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
		return fmt.Errorf("wire: marshal: %w", err)
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
		return fmt.Errorf("wire: decode %T: %w", m, err)
	}
	return nil
}
