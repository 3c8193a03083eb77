package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// newNodeWithKey is newNode on a host with the identity of key sk.
func newNodeWithKey(t *testing.T, nw catalog.NetworkID, k libp2p.Option) *testNode {
	t.Helper()
	n := &testNode{h: newHost(t, k)}
	n.ps = newPubSub(t, n.h)
	n.svc = startService(t, n.h, n.ps, nw)
	return n
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A second process with our key, started later, signs newer entries: the
// first one learns of them through a sync and reports it; the second does
// not (the first's entries are older than its own), nor does a peer.
func TestService_DuplicateIdentity(t *testing.T) {
	nw := catalog.IDFromString("dup-identity")
	sk, id := newKey(t)
	first := newNodeWithKey(t, nw, libp2p.Identity(sk))
	b := newNode(t, nw)
	connect(t, first.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(b.svc, id) }, "b never learned of the first process")
	if closed(first.svc.DuplicateIdentity()) || first.svc.DuplicateIdentityErr() != nil {
		t.Fatal("duplicate reported before a second process exists")
	}

	// A millisecond later at least: versions start at the run's millisecond.
	time.Sleep(2 * time.Millisecond)
	second := newNodeWithKey(t, nw, libp2p.Identity(sk))
	connect(t, second.h, b.h)
	start := second.svc.Local().Entry.Version
	testutil.Eventually(t, 10*time.Second, func() bool {
		e, ok := b.svc.Catalog().Get(id)
		return ok && e.Entry.Version.StartMS == start.StartMS
	}, "b never took the second process's entry")

	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	testutil.Eventually(t, 10*time.Second, func() bool {
		if closed(first.svc.DuplicateIdentity()) {
			return true
		}
		_ = first.svc.SyncWith(ctx, addrInfo(b.h)) // b's catalog holds the second's entry
		return closed(first.svc.DuplicateIdentity())
	}, "the first process never reported the duplicate")
	err := first.svc.DuplicateIdentityErr()
	var de *catalog.DuplicateIdentityError
	if !errors.As(err, &de) || !errors.Is(err, catalog.ErrDuplicateIdentity) {
		t.Fatalf("DuplicateIdentityErr = %v", err)
	}
	if de.Peer != id || de.Theirs.StartMS != start.StartMS {
		t.Fatalf("error fields: %+v (second started %v)", de, start)
	}
	if closed(second.svc.DuplicateIdentity()) || closed(b.svc.DuplicateIdentity()) {
		t.Fatal("the second process or a peer reported a duplicate")
	}
}

// A restart with the same key is no duplicate: the new run's entry is the
// newest, and copies of the old run's entries that peers still hold are
// older.
func TestService_RestartIsNoDuplicate(t *testing.T) {
	nw := catalog.IDFromString("dup-restart")
	sk, id := newKey(t)
	b := newNode(t, nw)
	old := newNodeWithKey(t, nw, libp2p.Identity(sk))
	connect(t, old.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(b.svc, id) }, "b never learned of the first run")
	_ = old.h.Close()                // a crash: no departure, b keeps the old run's entry
	time.Sleep(2 * time.Millisecond) // the new run starts a later millisecond
	restarted := newNodeWithKey(t, nw, libp2p.Identity(sk))
	connect(t, restarted.h, b.h)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := restarted.svc.SyncWith(ctx, addrInfo(b.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if closed(restarted.svc.DuplicateIdentity()) {
			return "restart reported as a duplicate: " + restarted.svc.DuplicateIdentityErr().Error()
		}
		return ""
	})
}
