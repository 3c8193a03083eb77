package wire

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
