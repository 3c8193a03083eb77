package groups

import (
	"testing"

	lblake3 "lukechampine.com/blake3"
)

// TestChunkHasher_MatchesSum256 checks that the fetcher's hasher (zeebo's
// BLAKE3) gives the hash the holders compute (lukechampine's Sum256) for
// the same bytes handed over in chunks of uneven sizes.
func TestChunkHasher_MatchesSum256(t *testing.T) {
	data := make([]byte, 600<<10+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	for _, tc := range []struct{ size, n int }{
		{1, 5000}, // byte by byte, across a 1 KiB chunk boundary
		{1000, len(data)}, {1024, len(data)}, {64 << 10, len(data)}, {256 << 10, len(data)}, {len(data), len(data)},
	} {
		h := newChunkHasher(4)
		for off := 0; off < tc.n; off += tc.size {
			h.write(data[off:min(off+tc.size, tc.n)])
		}
		if got, want := h.finish(), lblake3.Sum256(data[:tc.n]); got != want {
			t.Fatalf("%d bytes in chunks of %d: hash %x, Sum256 %x", tc.n, tc.size, got, want)
		}
	}
}

// BenchmarkChunkHasher is the reader's hashing of a fetched snapshot of
// 8 MB (a 100 000-entry map) in 256 KiB chunks, as the fetcher hands it
// over; lukechampine is the library the holders' Sum256 uses, for
// comparison.
func BenchmarkChunkHasher(b *testing.B) {
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	const chunk = 256 << 10
	b.Run("zeebo", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			h := newChunkHasher(8)
			for off := 0; off < len(data); off += chunk {
				h.write(data[off : off+chunk])
			}
			h.finish()
		}
	})
	b.Run("lukechampine", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			h := lblake3.New(32, nil)
			for off := 0; off < len(data); off += chunk {
				_, _ = h.Write(data[off : off+chunk])
			}
			h.Sum(nil)
		}
	})
}
