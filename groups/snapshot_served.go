package groups

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// servedChunks counts the chunks each holder answered in one transfer,
// for the "fetched a snapshot" debug record: which members served a
// snapshot, and how evenly, is what tells a slow transfer apart (the
// leader serving alone, a holder idle). Safe for concurrent use.
type servedChunks struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

// wrap returns fetch counting each chunk a holder answered without error
// (a chunk the fetcher then rejects is counted too: it was served).
func (s *servedChunks) wrap(fetch snapshotFetchFunc) snapshotFetchFunc {
	return func(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		c, err := fetch(ctx, holder, req, dst)
		if err == nil {
			s.mu.Lock()
			if s.n == nil {
				s.n = make(map[peer.ID]int)
			}
			s.n[holder]++
			s.mu.Unlock()
		}
		return c, err
	}
}

// String lists holder=chunks, the holders in the order of their IDs, each
// named by peer.ID.ShortString as the group's other records name peers.
func (s *servedChunks) String() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]peer.ID, 0, len(s.n))
	for id := range s.n {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s=%d", id.ShortString(), s.n[id])
	}
	return strings.Join(parts, " ")
}

// LogValue is String, built only when a record is written: the "fetched a
// snapshot" record is at debug level, usually off.
func (s *servedChunks) LogValue() slog.Value { return slog.StringValue(s.String()) }
