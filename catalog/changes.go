package catalog

import (
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// changeLogSize is how many peer changes the store remembers for
// [Snapshot.ChangedSince]: a reader that falls further behind rescans.
const changeLogSize = 4096

// changeLogStart is the ring's first size: it doubles up to changeLogSize
// as changes come. A full ring is 96 KiB of pointers that the garbage
// collector scans on every cycle, so a store allocated it at start; with
// many nodes in one process (tests, the benchmark's 100) that was a fifth
// of the live heap during a join.
const changeLogStart = 64

// changeLog is a ring of the peers each snapshot version changed, shared
// by the store and its snapshots.
type changeLog struct {
	mu   sync.Mutex
	ring []changeRecord // grows from changeLogStart up to max
	max  int
	head int // index of the oldest record
	n    int
	// floor is the newest version whose records were overwritten: changes
	// at or before it are no longer known.
	floor uint64
}

type changeRecord struct {
	version uint64
	id      peer.ID
}

func newChangeLog(size int) *changeLog {
	return &changeLog{ring: make([]changeRecord, min(size, changeLogStart)), max: size}
}

func (l *changeLog) add(v uint64, id peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == len(l.ring) && len(l.ring) < l.max {
		grown := make([]changeRecord, min(2*len(l.ring), l.max))
		k := copy(grown, l.ring[l.head:])
		copy(grown[k:], l.ring[:l.head])
		l.ring, l.head = grown, 0
	}
	if l.n == len(l.ring) {
		l.floor = l.ring[l.head].version
		l.head = (l.head + 1) % len(l.ring)
		l.n--
	}
	l.ring[(l.head+l.n)%len(l.ring)] = changeRecord{v, id}
	l.n++
}

// since returns the peers changed by versions in (from, to], without
// duplicates, or false when some of those changes are forgotten.
func (l *changeLog) since(from, to uint64) ([]peer.ID, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from < l.floor {
		return nil, false
	}
	var ids []peer.ID
	for i := range l.n {
		r := l.ring[(l.head+i)%len(l.ring)]
		if r.version > from && r.version <= to {
			ids = append(ids, r.id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), true
}

// ChangedSince returns the peers whose entries differ between old and s:
// added, updated, removed, and the local peer when the local entry
// changed. old must be an earlier snapshot of the same store. It reports
// false when the store no longer remembers that far back (the caller then
// compares everything); it costs O(changes remembered), not O(n).
func (s *Snapshot) ChangedSince(old *Snapshot) ([]peer.ID, bool) {
	if old == nil || old.log != s.log || old.version > s.version {
		return nil, false
	}
	if old.version == s.version {
		return nil, true
	}
	return s.log.since(old.version, s.version)
}
