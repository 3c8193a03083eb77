package framer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/mosaik-go/mosaik/catalog/pb"
)

func TestFrame_RoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte{7}, 300)} {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for _, want := range []int{0, 1, 300} {
		got, err := ReadFrame(r, 1024)
		if err != nil || len(got) != want {
			t.Fatalf("ReadFrame = %d bytes, %v; want %d", len(got), err, want)
		}
	}
	if _, err := ReadFrame(r, 1024); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestReadFrame_CapCheckedBeforeAllocating(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<40) // claims a terabyte
	_, err := ReadFrame(bufio.NewReader(bytes.NewReader(huge)), 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// Bytes, not allocation counts: the reader, the error and the race
	// detector allocate a little; the claimed terabyte must never be.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		_, _ = ReadFrame(bufio.NewReader(bytes.NewReader(huge)), 1<<20)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing 10 huge frames allocated %d bytes", grew)
	}
}

func TestReadFrame_Truncated(t *testing.T) {
	b := append(binary.AppendUvarint(nil, 10), 1, 2, 3)
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want ErrUnexpectedEOF", err)
	}
}

func TestProto_RoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteProto(&buf, &pb.SyncResponse{Entries: [][]byte{[]byte("a"), []byte("bc")}}); err != nil {
		t.Fatal(err)
	}
	var got pb.SyncResponse
	if err := ReadProto(bufio.NewReader(&buf), 100, &got); err != nil || len(got.Entries) != 2 {
		t.Fatalf("ReadProto = %v, %v", got.Entries, err)
	}
}

// FuzzReadProto feeds arbitrary bytes to the sync-message decoder: it must
// never panic and never return a frame above the cap.
func FuzzReadProto(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteProto(&buf, &pb.SyncRequest{Network: make([]byte, 32), Entries: [][]byte{[]byte("entry")}})
	f.Add(buf.Bytes())
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			b, err := ReadFrame(r, 4096)
			if err != nil {
				return
			}
			if len(b) > 4096 {
				t.Fatalf("frame of %d bytes above the cap", len(b))
			}
			var m pb.SyncRequest
			_ = ReadProto(bufio.NewReader(bytes.NewReader(AppendFrame(nil, b))), 4096, &m)
		}
	})
}

// A peer that claims a large frame and sends a few bytes costs what it
// sent (rounded up to FirstChunk), not what it claimed.
func TestReader_MemoryFollowsArrivedBytes(t *testing.T) {
	claim := append(binary.AppendUvarint(nil, 4<<20), make([]byte, 10)...)
	for _, tc := range []struct {
		name string
		read func(r *Reader) error
	}{
		{"ReadFrame", func(r *Reader) error { _, err := ReadFrame(r.r, 8<<20); return err }},
		{"Next", func(r *Reader) error { _, err := r.Next(); return err }},
		{"NextInto", func(r *Reader) error {
			_, _, err := r.NextInto(func(n int) []byte { return make([]byte, n) })
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			const rounds = 20
			for range rounds {
				r := NewReader(bytes.NewReader(claim), 8<<20)
				if err := tc.read(r); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
				}
			}
			runtime.ReadMemStats(&after)
			// Each round also allocates the 8 KiB bufio buffer; a claimed
			// 4 MiB must never be allocated.
			if per := (after.TotalAlloc - before.TotalAlloc) / rounds; per > 64<<10 {
				t.Errorf("a 4 MiB claim with 10 bytes sent cost %d bytes per read", per)
			}
		})
	}
}

func TestReader_LargeFramesAndReuse(t *testing.T) {
	var in []byte
	sizes := []int{0, 1, FirstChunk, FirstChunk + 1, 100_000, 3, 1 << 20}
	for i, n := range sizes {
		in = AppendFrame(in, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	r, r2 := NewReader(bytes.NewReader(in), 1<<20), NewReader(bytes.NewReader(in), 1<<20)
	for i, n := range sizes {
		b, err := r.Next()
		b2, _, err2 := r2.NextInto(func(n int) []byte { return make([]byte, n) })
		want := bytes.Repeat([]byte{byte(i + 1)}, n)
		if err != nil || err2 != nil || !bytes.Equal(b, want) || !bytes.Equal(b2, want) {
			t.Fatalf("frame %d (%d bytes): Next %d bytes %v, NextInto %d bytes %v", i, n, len(b), err, len(b2), err2)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	r3 := NewReader(bytes.NewReader(in), 1<<19)
	var err error
	for err == nil {
		_, err = r3.Next()
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("1 MiB frame under a 512 KiB cap: %v, want ErrTooLarge", err)
	}
}

// FuzzReader checks that Next and NextInto read the same frames, never
// above the cap, and that the held buffer stays within the cap.
func FuzzReader(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("ab")), bytes.Repeat([]byte{1}, 5000)))
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Add(append(binary.AppendUvarint(nil, 6000), 1, 2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		const capBytes = 8 << 10
		r, r2 := NewReader(bytes.NewReader(data), capBytes), NewReader(bytes.NewReader(data), capBytes)
		for range len(data) + 1 {
			b, err := r.Next()
			b2, _, err2 := r2.NextInto(func(n int) []byte {
				if n > capBytes {
					t.Fatalf("NextInto asked for %d bytes, cap %d", n, capBytes)
				}
				return make([]byte, n)
			})
			if (err == nil) != (err2 == nil) || !bytes.Equal(b, b2) {
				t.Fatalf("Next %x %v; NextInto %x %v", b, err, b2, err2)
			}
			if len(b) > capBytes || r.Held() > capBytes {
				t.Fatalf("frame %d bytes, held %d, cap %d", len(b), r.Held(), capBytes)
			}
			if err != nil {
				return
			}
		}
	})
}

// Complete says whether Next can return a frame without reading: false on
// an empty buffer, a partial length or a partial body, true once a whole
// frame (an empty one too) is buffered.
func TestReader_Complete(t *testing.T) {
	pr, pw := io.Pipe()
	fr := NewReader(pr, 1<<20)
	if fr.Complete() {
		t.Fatal("Complete on an empty buffer")
	}
	frame := AppendFrame(nil, bytes.Repeat([]byte{1}, 200)) // a 2-byte length
	go func() {
		_, _ = pw.Write(frame[:1])                    // half the length
		_, _ = pw.Write(frame[1:100])                 // the length, part of the body
		_, _ = pw.Write(append(frame[100:], 0, 0x80)) // the rest, an empty frame, half a length
		_ = pw.Close()
	}()
	if _, err := fr.r.Peek(1); err != nil { // one read: the first byte
		t.Fatal(err)
	}
	if fr.Complete() {
		t.Fatal("Complete with half the length")
	}
	if _, err := fr.r.Peek(fr.r.Buffered() + 1); err != nil {
		t.Fatal(err)
	}
	if fr.Complete() {
		t.Fatal("Complete with part of the body")
	}
	if _, err := fr.r.Peek(len(frame) + 2); err != nil {
		t.Fatal(err)
	}
	if !fr.Complete() {
		t.Fatal("not Complete with the whole frame buffered")
	}
	if b, err := fr.Next(); err != nil || len(b) != 200 {
		t.Fatalf("Next = %d bytes, %v", len(b), err)
	}
	if !fr.Complete() {
		t.Fatal("an empty frame buffered is complete")
	}
	if b, err := fr.Next(); err != nil || len(b) != 0 {
		t.Fatalf("Next = %d bytes, %v; want the empty frame", len(b), err)
	}
	if fr.Complete() {
		t.Fatal("Complete with half a length buffered")
	}
}

// A length that is no valid varint is ErrBadLength, not a transport
// error; a stream that ends inside the length is io.ErrUnexpectedEOF, and
// every valid varint reads as binary.Uvarint reads it.
func TestReadLen_Malformed(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{bytes.Repeat([]byte{0x80}, 10), ErrBadLength},              // an eleventh byte would follow
		{append(bytes.Repeat([]byte{0xff}, 9), 0x02), ErrBadLength}, // over 64 bits
		{bytes.Repeat([]byte{0x80}, 3), io.ErrUnexpectedEOF},        // ends inside
		{nil, io.EOF}, // nothing
		{append(bytes.Repeat([]byte{0xff}, 9), 0x01), ErrTooLarge},              // MaxUint64: valid, over the cap
		{binary.AppendUvarint(nil, 1<<40), ErrTooLarge},                         // valid, over the cap
		{append(binary.AppendUvarint(nil, 3), 'a', 'b', 'c'), nil},              // fine
		{append([]byte{0x83, 0x00}, 'a', 'b', 'c'), nil},                        // non-minimal, as binary reads it
		{append(binary.AppendUvarint(nil, 1<<20), make([]byte, 1<<20)...), nil}, // fine
	} {
		_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tc.in)), 4<<20)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("% x…: %v, want %v", tc.in[:min(len(tc.in), 12)], err, tc.want)
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 1 << 35, 1<<63 + 5, ^uint64(0)} {
		b := binary.AppendUvarint(nil, v)
		got, err := readUvarint(bytes.NewReader(b))
		if err != nil || got != v {
			t.Errorf("readUvarint(%d) = %d, %v", v, got, err)
		}
	}
}

// SetMax changes the cap for the frames that follow.
func TestReader_SetMax(t *testing.T) {
	var buf bytes.Buffer
	for _, n := range []int{10, 100, 100} {
		if err := WriteFrame(&buf, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewReader(&buf, 16)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := fr.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("100 bytes under a 16-byte cap: %v", err)
	}
	fr = NewReader(bytes.NewReader(append(binary.AppendUvarint(nil, 100), make([]byte, 100)...)), 16)
	fr.SetMax(128)
	if b, err := fr.Next(); err != nil || len(b) != 100 || fr.Max() != 128 {
		t.Fatalf("after SetMax(128): %d bytes, %v, max %d", len(b), err, fr.Max())
	}
}
