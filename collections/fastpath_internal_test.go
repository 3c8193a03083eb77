package collections

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// fastPathSeeds are CBOR items around the string fast paths' edges:
// shortest and over-long heads, indefinite lengths, truncation, invalid
// UTF-8, the wrong major type, null.
func fastPathSeeds() [][]byte {
	long := strings.Repeat("x", 300)
	return [][]byte{
		{}, {0x60}, {0x61, 'a'}, {0x40}, {0x41, 0x01}, {0xf6}, {0x01},
		{0x78, 0x01, 'a'}, {0x58, 0x01, 0x01}, // over-long heads
		append([]byte{0x78, 24}, strings.Repeat("y", 24)...),
		append([]byte{0x79, 0x01, 0x2c}, long...),
		append([]byte{0x79, 0x00, 0x20}, strings.Repeat("z", 32)...),
		append([]byte{0x5a, 0x00, 0x00, 0x01, 0x2c}, long...),
		{0x7f, 0x61, 'a', 0xff}, {0x5f, 0x41, 0x01, 0xff}, // indefinite
		{0x62, 'a'}, {0x61, 'a', 'b'}, {0x79, 0x01}, // truncated, trailing
		{0x62, 0xc3, 0x28}, {0x61, 0xff}, // invalid UTF-8
		{0xd8, 0x20, 0x61, 'a'}, // tagged
		{0x7b, 0, 0, 0, 0, 0, 0, 0, 1, 'a'},
	}
}

func checkFastPath[T any](t *testing.T, raw []byte) {
	t.Helper()
	got, gok := decode[T](raw)
	want, wok := decodeGeneral[T](raw)
	if gok != wok || (gok && !equalAny(got, want)) {
		t.Fatalf("decode[%T](%x) = %v, %v; the general path says %v, %v", got, raw, got, gok, want, wok)
	}
}

func equalAny(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y := b.([]byte)
		return bytes.Equal(x, y) && (x == nil) == (y == nil)
	}
	return a == b
}

// The fast paths accept exactly what the general decode accepts, with the
// same value.
func TestDecode_FastPathsAgree(t *testing.T) {
	for _, raw := range fastPathSeeds() {
		checkFastPath[string](t, raw)
		checkFastPath[[]byte](t, raw)
	}
}

func FuzzDecodeFastPath(f *testing.F) {
	for _, raw := range fastPathSeeds() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastPath[string](t, raw)
		checkFastPath[[]byte](t, raw)
	})
}

// encodeRaw writes the very bytes encode writes, across its flushes.
func TestMapEncodeRaw_MatchesEncode(t *testing.T) {
	k := mapKind[string, []byte]{}
	s := k.empty()
	for i := range 3000 {
		it, ok := k.item(raw(t, fmt.Sprintf("key-%05d", i)), raw(t, bytes.Repeat([]byte{byte(i)}, 1+i%70)))
		if !ok {
			t.Fatal("item does not decode")
		}
		s.set(it)
	}
	var want, got bytes.Buffer
	if err := k.encode(s, detcbor.NewEncoder(&want)); err != nil {
		t.Fatal(err)
	}
	if err := k.encodeRaw(s, &got); err != nil {
		t.Fatal(err)
	}
	if want.Len() < 64<<10 || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("encodeRaw wrote %d bytes, encode %d (equal: %v)", got.Len(), want.Len(), bytes.Equal(got.Bytes(), want.Bytes()))
	}
}

// FuzzMapDecodeRaw: decodeRaw accepts exactly the entry streams decode
// accepts, with the same content.
func FuzzMapDecodeRaw(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x82, 0x61, 'a', 0x01, 0x82, 0x61, 'b', 0x41, 0x02})
	f.Add([]byte{0x82, 0x61, 'b', 0x01, 0x82, 0x61, 'a', 0x02})             // out of order
	f.Add([]byte{0x82, 0x78, 0x01, 'a', 0x01})                              // over-long head
	f.Add([]byte{0x82, 0x61, 'a', 0x62, 'x'})                               // cut short
	f.Add([]byte{0x83, 0x61, 'a', 0x01, 0x02, 0x82, 0x61, 'a', 0x01})       // a 3-array
	f.Add([]byte{0x82, 0x7f, 0x61, 'a', 0xff, 0x01})                        // indefinite key
	f.Add([]byte{0x82, 0x61, 'a', 0x61, 'b', 0x82, 0x62, 0xc3, 0x28, 0x01}) // invalid UTF-8
	f.Add([]byte{0x98, 0x02, 0x61, 'a', 0x01})                              // a pair's over-long head
	f.Add([]byte{0x9f, 0x61, 'a', 0x01, 0xff})                              // an indefinite pair
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeRaw(t, mapKind[string, []byte]{}, b)
		checkDecodeRaw(t, mapKind[string, string]{}, b)
		checkDecodeRaw(t, mapKind[uint64, int]{}, b)
	})
}

func checkDecodeRaw[K comparable, V any](t *testing.T, k mapKind[K, V], b []byte) {
	t.Helper()
	want, werr := k.decode(detcbor.NewDecoder(bytes.NewReader(b)))
	got, gerr := k.decodeRaw(b, 0)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("decode: %v, decodeRaw: %v", werr, gerr)
	}
	if werr != nil {
		return
	}
	var x, y bytes.Buffer
	if err := k.encodeRaw(want, &x); err != nil {
		t.Fatal(err)
	}
	if err := k.encodeRaw(got, &y); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x.Bytes(), y.Bytes()) || want.Len() != got.Len() {
		t.Fatal("decode and decodeRaw read different entries")
	}
}

// commandSeeds are log entries around decodeCommandFast's edges: the
// commands replicas write, then hand-made variants (over-long heads, an
// op past uint8, invalid UTF-8, undefined, an empty Many, trailing and
// missing bytes, indefinite lengths, a map).
func commandSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range []command{
		{Op: mapInsert, A: raw(tb, "a"), B: raw(tb, []byte{1, 2})},
		{Op: mapInsert, A: raw(tb, strings.Repeat("k", 300)), B: raw(tb, bytes.Repeat([]byte{7}, 70000))},
		{Op: mapRemove, A: raw(tb, "a")},
		{Op: mapClear},
		{Op: mapCAS, A: raw(tb, "a"), N: 3, B: raw(tb, "x"), C: raw(tb, "y")},
		{Op: vecSwap, N: 1 << 40, M: 300},
		{Op: mapInsert, A: raw(tb, 1), B: raw(tb, "v")},
		{Op: mapExtend, Many: []cbor.RawMessage{raw(tb, "a"), raw(tb, "b")}},
	} {
		b, err := groups.CBOR[command]{}.Encode(c)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	seeds = append(seeds,
		[]byte{0x87, 0x01, 0x61, 'a', 0xf6, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x87, 0x18, 0x01, 0x61, 'a', 0x40, 0xf6, 0x19, 0x00, 0x01, 0x00, 0xf6},
		[]byte{0x87, 0x19, 0x01, 0x00, 0x61, 'a', 0x40, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x87, 0x01, 0x61, 0xff, 0x40, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x87, 0x01, 0x78, 0x01, 'a', 0x40, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x87, 0x01, 0x61, 'a', 0xf7, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x87, 0x01, 0x61, 'a', 0x40, 0xf6, 0x00, 0x00, 0x80},
		[]byte{0x87, 0x01, 0x61, 'a', 0x40, 0xf6, 0x00, 0x00, 0xf6, 0x00},
		[]byte{0x87, 0x01, 0x61, 'a', 0x40, 0xf6, 0x00, 0x00},
		[]byte{0x87, 0x01, 0x7f, 0x61, 'a', 0xff, 0x40, 0xf6, 0x00, 0x00, 0xf6},
		[]byte{0x86, 0x01, 0x61, 'a', 0x40, 0xf6, 0x00, 0x00},
		[]byte{0xa1, 0x00, 0x01},
	)
	return seeds
}

// decodeCommandFast gives what the groups CBOR codec gives on every entry
// it takes.
func checkCommandFast(t *testing.T, b []byte) {
	t.Helper()
	fast, ok := decodeCommandFast(b)
	if !ok {
		return
	}
	general, err := groups.CBOR[command]{}.Decode(b)
	if err != nil {
		t.Fatalf("%x: the fast path took what the codec refuses (%v)", b, err)
	}
	if !reflect.DeepEqual(fast, general) {
		t.Fatalf("%x: fast path %+v, codec %+v", b, fast, general)
	}
}

func TestDecodeCommandFast_MatchesCodec(t *testing.T) {
	took := 0
	for _, b := range commandSeeds(t) {
		checkCommandFast(t, b)
		if _, ok := decodeCommandFast(b); ok {
			took++
		}
	}
	// The commands replicas write with string arguments (six), the
	// null arguments and the over-long integer heads: the fast path must
	// not silently fall back on them.
	if took != 8 {
		t.Fatalf("the fast path took %d seeds, want 8", took)
	}
}

func FuzzCommandDecodeFast(f *testing.F) {
	for _, b := range commandSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkCommandFast)
}
