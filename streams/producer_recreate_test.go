package streams_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// slowFirstUpdate is the node's discovery with one UpdateLocal (the first
// after arm) delayed until another UpdateLocal completed: the goroutine
// that calls it was descheduled, or waited for the local entry's lock
// behind a heartbeat.
type slowFirstUpdate struct {
	*discovery.Service
	armed atomic.Bool
	other chan struct{}
}

func (d *slowFirstUpdate) UpdateLocal(f func(*catalog.Entry)) (*catalog.SignedEntry, error) {
	if d.armed.CompareAndSwap(true, false) {
		select {
		case <-d.other:
		case <-time.After(2 * time.Second):
		}
		return d.Service.UpdateLocal(f)
	}
	se, err := d.Service.UpdateLocal(f)
	select {
	case d.other <- struct{}{}:
	default:
	}
	return se, err
}

// TestProducer_RecreatedWhileTheOldOneCloses: a NewProducer of a stream
// whose previous producer is closing (retrying on ErrProducerExists, as a
// restarting component does) stays advertised. Close unregistered the old
// producer before withdrawing its stream from the local entry, so a new
// producer could register and advertise in between, and the old one's
// withdrawal then deleted the new advertisement: the live producer was
// missing from the catalog and no consumer found it. The test delays the
// old producer's withdrawal until another UpdateLocal completed (at most
// 2 s), standing in for its goroutine being descheduled.
func TestProducer_RecreatedWhileTheOldOneCloses(t *testing.T) {
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	_ = pnode.Streams().Close() // replaced by a service over the wrapped discovery
	d := &slowFirstUpdate{Service: pnode.Discovery(), other: make(chan struct{}, 1)}
	svc, err := streams.New(pnode.Host(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	const name = "recreate-while-closing"
	old, err := streams.NewProducer[string](svc, name)
	if err != nil {
		t.Fatal(err)
	}
	select { // forget old's own advertisement
	case <-d.other:
	default:
	}
	d.armed.Store(true) // the next UpdateLocal is old's withdraw
	done := make(chan struct{})
	go func() { _ = old.Close(); close(done) }()
	var p *streams.Producer[string]
	// Retry as a restarting component does, until the old one is gone.
	testutil.Eventually(t, 10*time.Second, func() bool {
		if p, err = streams.NewProducer[string](svc, name); err != nil && !errors.Is(err, streams.ErrProducerExists) {
			t.Fatal(err)
		}
		return err == nil
	}, "NewProducer kept failing: %v", testutil.Lazy(func() error { return err }))
	t.Cleanup(func() { _ = p.Close() })
	<-done
	cons := mustConsumer[string](t, cnode, name)
	ctx := testCtx(t, 8*time.Second)
	if err := cons.Subscribed().Wait(ctx); err != nil {
		e, ok := cnode.Catalog().Get(pnode.ID())
		t.Fatalf("the consumer never found the live producer: %v (stream in the producer's local entry: %v, in the consumer's catalog: %v)",
			err, pnode.Catalog().Local().Entry.Produces(p.StreamID()), ok && e.Entry.Produces(p.StreamID()))
	}
}
