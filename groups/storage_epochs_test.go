package groups

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// The epochs record survives Close and open, is replaced whole, and is
// absent (nil) in a new store.
func TestWALStore_EpochsRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g")
	s, err := openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.Epochs(); err != nil || b != nil {
		t.Fatalf("new store's epochs record: %x, %v; want none", b, err)
	}
	for _, rec := range [][]byte{[]byte("first"), []byte("second, longer than the first")} {
		if err := s.SaveEpochs(rec); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
	if _, err := s.Epochs(); err == nil {
		t.Fatal("Epochs on a closed store succeeded")
	}
	s, err = openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if b, err := s.Epochs(); err != nil || string(b) != "second, longer than the first" {
		t.Fatalf("epochs record after reopen: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, epochsTmpName)); !os.IsNotExist(err) {
		t.Fatalf("temporary epochs file left: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, epochsFileName), make([]byte, maxEpochsFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Epochs(); err == nil {
		t.Fatal("an epochs record over the cap was read")
	}
}

// encodeEpochs keeps the last abandonment and the parent whatever the
// size of the lost set, and decodeEpochs reads it back; records over the
// caps are refused.
func TestEpochsRecord_Codec(t *testing.T) {
	c := handCore(t, "a")
	for e := uint64(1); e <= 3*maxLostKept; e++ {
		c.lost[e<<20] = true
	}
	c.lost[7], c.lost[9] = true, true
	c.lostEpoch, c.lostTerm, c.parent, c.epoch = 7, 4, 9, 11
	rec := c.epochsRecord()
	rec.Lost = append(rec.Lost, 11) // as forceEpoch adds the epoch it leaves
	b, err := encodeEpochs(rec)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeEpochs(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetLost()) != maxLostKept || !slices.Contains(r.GetLost(), 7) || !slices.Contains(r.GetLost(), 9) {
		t.Fatalf("lost set of %d epochs kept, with 7: %v, 9: %v", len(r.GetLost()), slices.Contains(r.GetLost(), 7), slices.Contains(r.GetLost(), 9))
	}
	if r.GetLostEpoch() != 7 || r.GetLostTerm() != 4 || r.GetParentEpoch() != 9 || r.GetForcedEpoch() != 11 {
		t.Fatalf("decoded %v", r)
	}
	var many []byte
	for e := range uint64(maxLostKept + 1) {
		many = protowire.AppendTag(many, 4, protowire.VarintType)
		many = protowire.AppendVarint(many, e+1)
	}
	if _, err := decodeEpochs(many); err == nil {
		t.Fatal("a record with more lost epochs than kept was read")
	}
	if _, err := decodeEpochs(bytes.Repeat([]byte{0}, maxEpochsFile+1)); err == nil {
		t.Fatal("a record over the size cap was read")
	}
	if _, err := decodeEpochs([]byte{0xff}); err == nil {
		t.Fatal("garbage was read as a record")
	}
}

// A restarted node never takes the epoch it is in as lost (the record is
// written before the log changes: a crash between leaves the old log),
// and restores a parent only for the epoch it was forced into.
func TestEpochsRecord_LoadSkipsOwnEpoch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g")
	st, err := openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := proto.Marshal(&pb.CoreEpochs{ParentEpoch: 5, ForcedEpoch: 6, LostEpoch: 5, LostTerm: 0, Lost: []uint64{5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveEpochs(b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		epoch      uint64
		wantParent uint64
		wantLost   []uint64
	}{
		{epoch: 6, wantParent: 5, wantLost: []uint64{5}},    // restarted in the forced epoch
		{epoch: 5, wantParent: 0, wantLost: []uint64{6}},    // crashed before the log was replaced
		{epoch: 7, wantParent: 0, wantLost: []uint64{5, 6}}, // in another epoch since: not its parent
		{epoch: 0, wantParent: 0, wantLost: []uint64{5, 6}}, // fresh
	} {
		c := handCore(t, "a")
		c.store, c.epoch = st, tc.epoch
		if err := c.loadEpochs(); err != nil {
			t.Fatal(err)
		}
		var lost []uint64
		for e := range c.lost {
			lost = append(lost, e)
		}
		slices.Sort(lost)
		if c.parent != tc.wantParent || !slices.Equal(lost, tc.wantLost) {
			t.Fatalf("in epoch %d: parent %d lost %v; want %d %v", tc.epoch, c.parent, lost, tc.wantParent, tc.wantLost)
		}
	}
}

func FuzzDecodeEpochs(f *testing.F) {
	b, _ := proto.Marshal(&pb.CoreEpochs{ParentEpoch: 5, LostEpoch: 7, LostTerm: 3, Lost: []uint64{5, 7}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeEpochs(data)
		if err != nil {
			return
		}
		if len(data) > maxEpochsFile || len(r.GetLost()) > maxLostKept {
			t.Fatalf("accepted a record over the caps: %d bytes, %d lost", len(data), len(r.GetLost()))
		}
	})
}
