package policy

import (
	"container/list"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// verdictKey names one ticket as held by one peer. The holder is part of
// the key because the subject check depends on it.
type verdictKey struct {
	holder peer.ID
	ticket [32]byte // SHA-256 of the sealed ticket
}

// verdict is what a SignedTicketValidator concluded about a ticket apart
// from the time: err refuses it outright; otherwise its window is judged
// against now on every call, and claimErr (checked after the window, to
// keep the documented order) refuses it when the window passes.
type verdict struct {
	err                error
	notBefore, expires time.Time
	claimErr           error
}

// verdictCache is a bounded least-recently-used map of verdicts. It is
// safe for concurrent use; its one mutex is held only for map and list
// operations, never while a ticket is checked, so two callers may judge
// the same ticket at once and both store the same verdict.
type verdictCache struct {
	size int

	mu     sync.Mutex
	items  map[verdictKey]*list.Element // of *verdictItem
	order  *list.List                   // front: most recently used
	misses uint64                       // verdicts computed; read by tests
}

type verdictItem struct {
	key verdictKey
	vd  verdict
}

// newVerdictCache returns a cache of size verdicts, or nil for size <= 0.
func newVerdictCache(size int) *verdictCache {
	if size <= 0 {
		return nil
	}
	return &verdictCache{size: size, items: make(map[verdictKey]*list.Element), order: list.New()}
}

func (c *verdictCache) get(k verdictKey) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		c.misses++
		return verdict{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*verdictItem).vd, true
}

func (c *verdictCache) put(k verdictKey, vd verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		e.Value.(*verdictItem).vd = vd
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&verdictItem{key: k, vd: vd})
	for c.order.Len() > c.size {
		old := c.order.Remove(c.order.Back()).(*verdictItem)
		delete(c.items, old.key)
	}
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
