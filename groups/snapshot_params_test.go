package groups

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

func TestSnapshotParams_Validate(t *testing.T) {
	if err := DefaultSnapshotParams().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if d, f := DefaultSnapshotParams(), defaultSnapshotFetchParams(); d.fetch() != f {
		t.Fatalf("defaults differ from the fetcher's: %+v vs %+v", d.fetch(), f)
	}
	for name, f := range map[string]func(*SnapshotParams){
		"no chunk":      func(p *SnapshotParams) { p.ChunkBytes = 0 },
		"chunk too big": func(p *SnapshotParams) { p.ChunkBytes = snapshotMaxChunk + 1 },
		"no timeout":    func(p *SnapshotParams) { p.ChunkTimeout = 0 },
		"no ttl":        func(p *SnapshotParams) { p.TTL = -time.Second },
		"no window":     func(p *SnapshotParams) { p.Window = 0 },
		"no per holder": func(p *SnapshotParams) { p.PerHolder = 0 },
		"no max total":  func(p *SnapshotParams) { p.MaxTotal = 0 },
		"nothing held":  func(p *SnapshotParams) { p.MaxHeld = 0 },
	} {
		p := DefaultSnapshotParams()
		f(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s: %v, want ErrInvalidParams", name, err)
		}
		n := newMemNet()
		_, err := Join[bulkCmd, struct{}, bulkState](n.service(t, "0", false), KeyFromSecret("bulk"), &bulk{},
			WithParams(TestParams()), WithSnapshotParams(p))
		if !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s: Join: %v, want ErrInvalidParams", name, err)
		}
	}
}

// WithSnapshotParams reaches the group: the chunk size of the fetcher and
// the TTL and size of the holder's cache.
func TestSnapshotParams_Applied(t *testing.T) {
	n := newMemNet()
	p := DefaultSnapshotParams()
	p.ChunkBytes, p.ChunkTimeout, p.TTL, p.MaxHeld = 1000, time.Second, time.Minute, 2
	g, err := Join[bulkCmd, struct{}, bulkState](n.service(t, "0", false), KeyFromSecret("bulk"), &bulk{},
		WithParams(TestParams()), WithSnapshotParams(p))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var got snapshotFetchParams
	var ttl time.Duration
	var held int
	read := make(chan struct{})
	if err := g.c.do(tctx(t, 5*time.Second), func() {
		got, ttl, held = g.c.snap.params, g.c.snap.cache.ttl, g.c.snap.cache.maxAnchors
		close(read)
	}); err != nil {
		t.Fatal(err)
	}
	<-read
	if got != p.fetch() || ttl != p.TTL || held != p.MaxHeld {
		t.Fatalf("group runs %+v, ttl %v, %d held; want %+v", got, ttl, held, p)
	}
}

// Snapshot metrics: a late joiner's transfer counts one sync served and
// the bytes on the holder, one sync received and the same bytes on the
// fetcher; a holder that serves many chunks to one fetcher counts one sync.
func TestMetrics_SnapshotTransfer(t *testing.T) {
	r0, r1 := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
	mp0, mp1 := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r0)), sdkmetric.NewMeterProvider(sdkmetric.WithReader(r1))
	defer mp0.Shutdown(context.Background())
	defer mp1.Shutdown(context.Background())
	n := newMemNet()
	s0 := n.service(t, "0", false)
	s0.meter = mp0
	g0 := joinBulk(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 230, 4<<10) // ~920 KiB: 4 chunks
	want := bulkOf(t, g0)
	s1 := n.service(t, "1", false)
	s1.meter = mp1
	g1 := joinBulk(t, s1)
	catchUp(t, g1, last, want)

	served, _ := metricValue(t, r0, "mosaik.groups.snapshot.syncs.served")
	received, _ := metricValue(t, r1, "mosaik.groups.snapshot.syncs.received")
	bytesOut, _ := metricValue(t, r0, "mosaik.groups.snapshot.bytes.served")
	bytesIn, _ := metricValue(t, r1, "mosaik.groups.snapshot.bytes.received")
	if served != 1 || received != 1 {
		t.Fatalf("syncs served %v, received %v; want 1 and 1", served, received)
	}
	if bytesIn < 900<<10 || bytesOut != bytesIn {
		t.Fatalf("snapshot bytes served %v, received %v; want equal, over 900 KiB", bytesOut, bytesIn)
	}
	if failed, _ := metricValue(t, r1, "mosaik.groups.snapshot.syncs.failed"); failed != 0 {
		t.Fatalf("%v failed transfers", failed)
	}
}
