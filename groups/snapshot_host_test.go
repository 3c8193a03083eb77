package groups

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// gateNet wraps a group's snapshot net to watch and steer its chunk
// requests: before runs first (under the gate's lock) and may refuse one.
type gateNet struct {
	snapshotNet
	mu     sync.Mutex
	served map[peer.ID]int
	before func(holder peer.ID, served map[peer.ID]int) error
}

func (w *gateNet) fetchChunk(ctx context.Context, holder peer.ID, req snapshotChunkRequest) (snapshotChunk, error) {
	w.mu.Lock()
	err := w.before(holder, w.served)
	w.mu.Unlock()
	if err != nil {
		return snapshotChunk{}, err
	}
	c, err := w.snapshotNet.fetchChunk(ctx, holder, req)
	if err == nil {
		w.mu.Lock()
		w.served[holder]++
		w.mu.Unlock()
	}
	return c, err
}

// On real libp2p hosts: a late joiner catches up through a chunked
// snapshot of ~5 MiB of state, over the bond layer's 4 MiB frame cap (a
// whole MsgSnap could never arrive); the next joiner fetches from that
// member, not the leader, and when that member dies mid-transfer the
// remaining chunks come from the leader.
func TestSnapshotTransfer_Hosts(t *testing.T) {
	n0, n1, n2 := newBondNode(t), newBondNode(t), newBondNode(t)
	meshed(t, n0, n1)
	g0 := joinBulk(t, n0.svc)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 210, 26<<10) // 5.3 MiB
	want := bulkOf(t, g0)
	if max := DefaultBondParams().MaxFrameSize; want.Len <= max {
		t.Fatalf("state of %d bytes is not over the bond frame cap %d", want.Len, max)
	}

	g1 := joinBulk(t, n1.svc)
	catchUp(t, g1, last, want)

	// n2 knows nobody until its gate is in place. It fetches one chunk at
	// a time; the leader refuses until n1 served one, and n1's service
	// closes after it served three.
	g2 := joinBulk(t, n2.svc)
	var leaderAsked, n1Closed bool
	gate := &gateNet{served: map[peer.ID]int{}, before: func(holder peer.ID, served map[peer.ID]int) error {
		switch holder {
		case n0.h.ID():
			if served[n1.h.ID()] == 0 {
				return errors.New("leader busy (test)")
			}
			leaderAsked = true
		case n1.h.ID():
			if served[n1.h.ID()] == 3 && !n1Closed {
				n1Closed = true
				_ = n1.svc.Close()
			}
		}
		return nil
	}}
	if err := g2.c.do(tctx(t, 5*time.Second), func() {
		gate.snapshotNet = g2.c.snap.net
		g2.c.snap.net = gate
		g2.c.snap.params.Window, g2.c.snap.params.PerHolder = 1, 1
	}); err != nil {
		t.Fatal(err)
	}
	meshed(t, n0, n1, n2)
	catchUp(t, g2, last, want)
	gate.mu.Lock()
	defer gate.mu.Unlock()
	if got := gate.served[n1.h.ID()]; got != 3 || !n1Closed {
		t.Fatalf("n1 served %d chunks (closed %v), want 3 before it closed", got, n1Closed)
	}
	if !leaderAsked || gate.served[n0.h.ID()] == 0 {
		t.Fatalf("the leader served %d chunks after n1 closed", gate.served[n0.h.ID()])
	}
}
