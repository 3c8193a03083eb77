package catalog

import "sync"

// internSize bounds the distinct ID sets an interner keeps. Tag and stream
// sets repeat across a network (every validator in a region has the same
// tags, every producer of a stream the same ID), so a few hundred sets
// cover most catalogs; sets beyond the bound are kept as they came. When
// the table fills (an attacker sending entries of random tags) it starts
// over: that costs only the sharing, never correctness.
const internSize = 1024

// interner shares equal sets of IDs between entries, so a catalog of
// 10 000 peers holds each common set once. Safe for concurrent use. The
// shared slices are read-only, as every entry read from a catalog is.
type interner struct {
	mu   sync.Mutex
	sets map[string][]ID
}

// ids returns the shared slice equal to ids, adding ids when none is.
func (in *interner) ids(ids []ID) []ID {
	if len(ids) == 0 || len(ids) > 8 {
		return ids
	}
	var buf [8 * 32]byte
	k := buf[:0]
	for i := range ids {
		k = append(k, ids[i][:]...)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.sets[string(k)]; ok {
		return s
	}
	if in.sets == nil || len(in.sets) >= internSize {
		in.sets = make(map[string][]ID)
	}
	s := ids[:len(ids):len(ids)]
	in.sets[string(k)] = s
	return s
}

// intern shares the tag and stream sets of e, which must not be shared
// with other goroutines yet.
func (in *interner) intern(e *Entry) {
	e.Tags = in.ids(e.Tags)
	e.Streams = in.ids(e.Streams)
}
