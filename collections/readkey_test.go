package collections

import (
	"bytes"
	"math"
	"testing"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// checkReadKey fails unless encodeReadKey gives k exactly detcbor's
// encoding, on both its paths.
func checkReadKey[K any](t *testing.T, k K) {
	t.Helper()
	want, err := detcbor.Marshal(k)
	if err != nil {
		t.Fatalf("detcbor %T %v: %v", k, k, err)
	}
	rk, ok := encodeReadKey(k)
	if !ok {
		t.Fatalf("encodeReadKey(%T %v) refused", k, k)
	}
	defer rk.release()
	if !bytes.Equal(rk.enc, want) {
		t.Errorf("encodeReadKey(%T %v) = %x, detcbor %x", k, k, rk.enc, want)
	}
}

// TestReadKey_MatchesDetcbor holds the reads' own key encoder to the
// encoding every replica stores (detcbor), at each head-length boundary,
// for every kind it encodes itself and one it hands to detcbor.
func TestReadKey_MatchesDetcbor(t *testing.T) {
	lengths := []int{0, 1, 23, 24, 255, 256, 65535, 65536}
	for _, n := range lengths {
		checkReadKey(t, string(bytes.Repeat([]byte{'k'}, n)))
		checkReadKey(t, bytes.Repeat([]byte{7}, n))
	}
	checkReadKey(t, "\xff\xfe not UTF-8")
	checkReadKey(t, []byte{})
	checkReadKey(t, []byte(nil)) // null: detcbor's path
	for _, v := range []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -24, -25, -256, -257, -65536, -65537, math.MinInt32, math.MinInt64} {
		checkReadKey(t, v)
		checkReadKey(t, int(v))
	}
	for _, v := range []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		checkReadKey(t, v)
		checkReadKey(t, uint(v))
	}
	checkReadKey(t, int32(math.MinInt32))
	checkReadKey(t, int16(-300))
	checkReadKey(t, int8(-128))
	checkReadKey(t, uint32(math.MaxUint32))
	checkReadKey(t, uint16(65535))
	checkReadKey(t, uint8(255))
	type named string // not encoded here: detcbor's path
	checkReadKey(t, named("x"))
	checkReadKey(t, benchValue{ID: 1, Name: "n", Score: -2})
}

// FuzzReadKey: encodeReadKey is detcbor.Marshal for any string, byte
// string and integer.
func FuzzReadKey(f *testing.F) {
	f.Add("", []byte{}, int64(0), uint64(0))
	f.Add("key-00000001", []byte("v"), int64(-25), uint64(1<<32))
	f.Fuzz(func(t *testing.T, s string, b []byte, i int64, u uint64) {
		checkReadKey(t, s)
		checkReadKey(t, b)
		checkReadKey(t, i)
		checkReadKey(t, u)
		checkReadKey(t, int32(i))
		checkReadKey(t, uint16(u))
	})
}
