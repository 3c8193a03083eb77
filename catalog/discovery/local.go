package discovery

import (
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// The local entry: its owner's changes (UpdateLocal), those held back by
// the update rate limit and sealed when due (flushLocal), and heartbeats
// (refresh). announceLoop publishes what these seal.

// UpdateLocal changes the local entry with f (which must be fast and must
// not block). If anything changed, the entry is re-signed with a new
// version, put into the catalog, announced on gossip and stored in the DHT.
// Versions are spaced by Catalog.MinUpdateInterval, as every receiver
// requires: a change sooner than that after the last version is held,
// coalesced with any further ones, and published when the interval ends;
// UpdateLocal then returns the entry still current. An entry that would
// exceed Catalog.MaxEntrySize is refused with an error.
func (s *Service) UpdateLocal(f func(*catalog.Entry)) (*catalog.SignedEntry, error) {
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	s.localMu.Lock()
	se, changed, err := s.local.Update(s.now(), f)
	if err == nil && changed {
		err = s.store.SetLocal(se)
	}
	_, held := s.local.Pending()
	s.localMu.Unlock()
	if err != nil {
		return nil, err
	}
	if changed {
		signal(s.announceNow)
		signal(s.dhtNow)
	}
	if held {
		signal(s.flushNow)
	}
	return se, nil
}

// flushLocal seals a held local change that is due. It returns the new
// entry, or nil, and when a change still held will be due.
func (s *Service) flushLocal() (*catalog.SignedEntry, time.Time, bool) {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	se, changed, err := s.local.Flush(s.now())
	if err == nil && changed {
		err = s.store.SetLocal(se)
	}
	if err != nil {
		s.log.Warn("cannot seal the local entry", "err", err)
	}
	due, held := s.local.Pending()
	if !changed {
		se = nil
	}
	return se, due, held
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// refresh bumps the local entry's version (a heartbeat).
func (s *Service) refresh() (*catalog.SignedEntry, error) {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	se, err := s.local.Refresh(s.now())
	if err == nil {
		err = s.store.SetLocal(se)
	}
	return se, err
}
