package groups

import (
	"fmt"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkBoltStore_Save measures one Save of a batch of 64-byte entries
// with a hard state, as the core does per Ready: with fsync (the default)
// and with boltOptions.NoSync, which trades durability against a machine
// crash for speed. Run it short: go test -run '^$' -bench BoltStore_Save
// -benchtime 200x ./groups.
func BenchmarkBoltStore_Save(b *testing.B) {
	payload := make([]byte, 64)
	for _, noSync := range []bool{false, true} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("nosync=%v/batch=%d", noSync, batch), func(b *testing.B) {
				s, err := openBoltStore(filepath.Join(b.TempDir(), "g.db"), boltOptions{NoSync: noSync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ents := make([]*raftpb.Entry, batch)
				next := uint64(1)
				b.SetBytes(int64(batch * len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					for k := range ents {
						ents[k] = &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Data: payload}
						next++
					}
					if err := s.Save(hardState(1, 1, next-1), nil, ents); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkWALStore_Save is BenchmarkBoltStore_Save on the WAL store.
func BenchmarkWALStore_Save(b *testing.B) {
	payload := make([]byte, 64)
	for _, noSync := range []bool{false, true} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("nosync=%v/batch=%d", noSync, batch), func(b *testing.B) {
				s, err := openWALStore(filepath.Join(b.TempDir(), "g"), walOptions{NoSync: noSync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ents := make([]*raftpb.Entry, batch)
				next := uint64(1)
				b.SetBytes(int64(batch * len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					for k := range ents {
						ents[k] = &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Data: payload}
						next++
					}
					if err := s.Save(hardState(1, 1, next-1), nil, ents); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}
