package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
)

// colBatch is the number of entries per Map.Extend when filling a map.
const colBatch = 2000

func colKey(i int) string { return fmt.Sprintf("key-%08d", i) }

// colParams are the mode's groups.Params with snapshots every quarter of
// the fill's commands and a compaction window of one entry, so the log is
// compacted after the fill and a late reader is sent a snapshot (raft
// cannot replay the log to it), as a reader joining a long-lived map is.
// These two fields are per node and not part of the group id.
func (r *runner) colParams(n int) groups.Params {
	p := r.groupsParams()
	p.SnapshotEntries = uint64(max(1, (n+colBatch-1)/colBatch/4))
	p.CompactionWindow = 1
	return p
}

// fillMap inserts entries 0..n-1 (64 B values) with Extend in batches of
// colBatch and returns the version of the last batch.
func fillMap(ctx context.Context, m *benchMap, n int) (collections.Version, error) {
	val := make([]byte, 64)
	var v collections.Version
	for i := 0; i < n; i += colBatch {
		kvs := make([]collections.KV[string, []byte], 0, colBatch)
		for k := i; k < min(n, i+colBatch); k++ {
			kvs = append(kvs, collections.KV[string, []byte]{Key: colKey(k), Value: val})
		}
		var err error
		if v, err = m.Extend(ctx, kvs); err != nil {
			return 0, fmt.Errorf("extend at %d: %w", i, err)
		}
	}
	return v, nil
}

// cborLen is the length of a CBOR text or byte string of n bytes.
func cborLen(n int) int {
	switch {
	case n < 24:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

// colStateBytes is the size of the entries of a filled map in its
// snapshot: per entry a 2-array of the key's and the value's canonical
// CBOR (collections/map.go encode). It is what a late reader must
// receive; the raw row moves exactly this many bytes.
func colStateBytes(n int) int64 {
	var b int64
	for i := range n {
		b += int64(1 + cborLen(len(colKey(i))) + cborLen(64))
	}
	return b
}

// colSyncScenario fills one map on 3 writer replicas with n entries, then
// per repetition a late reader joins on a fresh node (its own host,
// bootstrapped from the first writer, its catalog already holding the
// writers): the time from NewMapReader until it holds the last version,
// the time from its first bond in the map's group until then, and the
// bytes its host received (every protocol). The raw row moves the
// state's bytes over one libp2p stream between two hosts.
func (r *runner) colSyncScenario(ctx context.Context, id string, n int) error {
	c, err := openMapCluster(ctx, 3, r.colParams(n))
	if err != nil {
		return err
	}
	defer func() { _ = c.close() }()
	li := c.leader()
	if li < 0 {
		return errors.New("no leader after set-up")
	}
	start := time.Now()
	target, err := fillMap(ctx, c.maps[li], n)
	if err != nil {
		return err
	}
	for i, m := range c.maps {
		if err := waitVersion(ctx, m, target); err != nil {
			return fmt.Errorf("writer %d: %w", i, err)
		}
	}
	state := colStateBytes(n)
	r.prog.step(fmt.Sprintf("filled %s entries in %s s (%s MB of state), version %d", fmtNum(float64(n)), fmtNum(time.Since(start).Seconds()), fmtNum(float64(state)/1e6), target))
	// A late reader joins a map that has been written, not one racing its
	// last write: let the writers snapshot the quiet state
	// (groups.Params.SnapshotQuiet), as a long-lived map's writers have.
	if err := c.waitSnapshotted(ctx, 10*time.Second); err != nil {
		r.prog.step("no snapshot of the filled state: " + err.Error())
	}
	raw, err := openRawBulk(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = raw.close() }()
	note := fmt.Sprintf("%s entries of 64 B, %s MB of state; snapshot every %d commands of %d entries", fmtNum(float64(n)), fmtNum(float64(state)/1e6), c.params.SnapshotEntries, colBatch)
	for rep := range r.plan.reps {
		d, bonded, cpu, in, mem, err := r.colSyncRep(ctx, c, n, target, id, rep)
		if err != nil {
			return fmt.Errorf("rep %d: %w", rep+1, err)
		}
		r.sample(id, "time", "mosaik", "ms", Lower, ms(d)).addNote("reader opened → last version applied; " + note)
		r.sample(id, "state throughput", "mosaik", "MB/s", Higher, float64(state)/1e6/d.Seconds())
		r.sample(id, "time (first bond → synced)", "mosaik", "ms", Lower, ms(bonded))
		r.sample(id, "bytes received (host)", "mosaik", "MB", Lower, float64(in)/1e6)
		r.sample(id, "CPU time (process)", "mosaik", "ms", Lower, ms(cpu)).addNote("the process's CPU time over the same span (writers' and reader's), steadier than the time on a shared machine")
		r.sample(id, "page faults (process)", "mosaik", "faults", Lower, float64(mem.faults)).addNote("minor page faults over the same span: first touches of fresh memory, 10–15 µs each on the benchmark VM")
		r.sample(id, "allocated (process)", "mosaik", "MB", Lower, float64(mem.alloc)/1e6)
		r.prog.step(fmt.Sprintf("rep %d/%d mosaik: %s ms, %s MB received", rep+1, r.plan.reps, fmtNum(ms(d)), fmtNum(float64(in)/1e6)))
		mem0 := readProcMem()
		cpu0 := cpuTime()
		rd, err := raw.move(ctx, state)
		cpu = cpuTime() - cpu0
		mem = readProcMem().since(mem0)
		if err != nil {
			return fmt.Errorf("rep %d raw: %w", rep+1, err)
		}
		r.sample(id, "time", "raw", "ms", Lower, ms(rd)).addNote("one libp2p stream, 32 KiB writes, the state's bytes")
		r.sample(id, "state throughput", "raw", "MB/s", Higher, float64(state)/1e6/rd.Seconds())
		r.sample(id, "bytes received (host)", "raw", "MB", Lower, float64(state)/1e6)
		r.sample(id, "CPU time (process)", "raw", "ms", Lower, ms(cpu))
		r.sample(id, "page faults (process)", "raw", "faults", Lower, float64(mem.faults))
		r.sample(id, "allocated (process)", "raw", "MB", Lower, float64(mem.alloc)/1e6)
		r.prog.step(fmt.Sprintf("rep %d/%d raw: %s ms", rep+1, r.plan.reps, fmtNum(ms(rd))))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// waitVersion waits until m has applied version v.
func waitVersion(ctx context.Context, m interface {
	When() collections.When
}, v collections.Version) error {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if err := m.When().Reaches(ctx, v); err != nil {
		return fmt.Errorf("version %d not reached: %w", v, err)
	}
	return nil
}

func (r *runner) colSyncRep(ctx context.Context, c *mapCluster, n int, target collections.Version, id string, rep int) (d, bonded, cpu time.Duration, in int64, mem procMem, err error) {
	bw := metrics.NewBandwidthCounter()
	h, err := newHost(libp2p.BandwidthReporter(bw))
	if err != nil {
		return 0, 0, 0, 0, procMem{}, err
	}
	defer func() { err = errors.Join(err, h.Close()) }()
	nd, err := c.newNode(h)
	if err != nil {
		return 0, 0, 0, 0, procMem{}, err
	}
	defer func() { err = errors.Join(err, nd.Close()) }()
	// Not measured: the catalog sync of a fresh node (the reader would
	// find no member to bond with).
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !knowsAll(nd, c.nodes) {
		select {
		case <-wctx.Done():
			return 0, 0, 0, 0, procMem{}, fmt.Errorf("reader's catalog holds %d peers: %w", nd.Catalog().Len(), wctx.Err())
		case <-time.After(5 * time.Millisecond): // polling the catalog
		}
	}
	// Each repetition starts after a runtime.GC(), as the streams rows'
	// do: the process holds three writers' copies of the map (1.2 GB of
	// live heap at 1M entries), whose mark phase would otherwise land in
	// some repetitions and not others, and a repetition whose reader is
	// given memory the process never touched (the heap grows until a GC
	// frees the last readers') pays the first touch of every page: on the
	// benchmark VM the kernel's page zeroing alone took 40 % of the CPU of
	// such a repetition at 1M entries. The page faults row shows which
	// kind each repetition was; a late reader in a process of its own
	// touches its state's memory for the first time too (BENCHMARKS.md).
	runtime.GC()
	end := func() {}
	if r.cfg.Measured != nil {
		end = r.cfg.Measured(id, rep)
	}
	mem0 := readProcMem()
	start, cpu0 := time.Now(), cpuTime()
	rd, err := collections.NewMapReader[string, []byte](nd, benchMapName, c.options()...)
	if err != nil {
		end()
		return 0, 0, 0, 0, procMem{}, err
	}
	defer func() { err = errors.Join(err, rd.Close()) }()
	err = waitVersion(ctx, rd, target)
	synced, cpu := time.Now(), cpuTime()-cpu0
	end()
	mem = readProcMem().since(mem0)
	if err != nil {
		return 0, 0, 0, 0, procMem{}, fmt.Errorf("reader: %w", err)
	}
	d = synced.Sub(start)
	if rd.Len() != n {
		return 0, 0, 0, 0, procMem{}, fmt.Errorf("reader holds %d entries, want %d", rd.Len(), n)
	}
	first := synced
	for _, gb := range nd.Groups().BondStatus().Groups {
		if gb.Group != rd.GroupID() {
			continue
		}
		for _, b := range gb.Bonds {
			if b.Since.Before(first) {
				first = b.Since
			}
		}
	}
	// The bandwidth counter's totals move once per second (go-flow-metrics
	// sweeps); wait for the sweep, outside the measured time.
	time.Sleep(1100 * time.Millisecond)
	return d, synced.Sub(first), cpu, bw.GetBandwidthTotals().TotalIn, mem, nil
}

// waitSnapshotted waits until every replica holds a snapshot of its whole
// applied state, or d passed.
func (c *mapCluster) waitSnapshotted(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		done := true
		for i := range c.maps {
			st, ok := c.status(i)
			done = done && ok && st.SnapshotIndex >= st.AppliedIndex
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // polling the status
		}
	}
}

// knowsAll reports whether nd's catalog holds every node of ns.
func knowsAll(nd *node.Node, ns []*node.Node) bool {
	cat := nd.Catalog()
	for _, o := range ns {
		if _, ok := cat.Get(o.ID()); !ok {
			return false
		}
	}
	return true
}

// rawBulk moves a number of bytes over a new libp2p stream between two
// hosts of newHost: the writer writes 32 KiB chunks and closes its side,
// the reader reads into one 64 KiB buffer until EOF.
type rawBulk struct {
	hosts    []host.Host
	got      chan int64
	handlers tracker
	once     sync.Once
}

const rawBulkProto protocol.ID = "/mosaik-bench/raw-bulk/1.0.0"

func openRawBulk(ctx context.Context) (*rawBulk, error) {
	hs, err := newHosts(2)
	if err != nil {
		return nil, err
	}
	b := &rawBulk{hosts: hs, got: make(chan int64, 1)}
	hs[1].SetStreamHandler(rawBulkProto, func(st network.Stream) {
		if !b.handlers.enter() {
			_ = st.Reset()
			return
		}
		defer b.handlers.leave()
		buf := make([]byte, 64<<10)
		var n int64
		for {
			k, err := st.Read(buf)
			n += int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				_ = st.Reset()
				n = -1
				break
			}
		}
		_ = st.Close()
		b.got <- n
	})
	if err := connectStar(ctx, hs); err != nil {
		_ = b.close()
		return nil, err
	}
	return b, nil
}

// move sends size bytes and returns the time until the reader has them.
func (b *rawBulk) move(ctx context.Context, size int64) (time.Duration, error) {
	chunk := make([]byte, 32<<10)
	start := time.Now()
	st, err := b.hosts[0].NewStream(ctx, b.hosts[1].ID(), rawBulkProto)
	if err != nil {
		return 0, err
	}
	defer func() { _ = st.Close() }()
	for left := size; left > 0; {
		k := int(min(left, int64(len(chunk))))
		if _, err := st.Write(chunk[:k]); err != nil {
			_ = st.Reset()
			return 0, err
		}
		left -= int64(k)
	}
	if err := st.CloseWrite(); err != nil {
		return 0, err
	}
	select {
	case n := <-b.got:
		if n != size {
			return 0, fmt.Errorf("raw reader got %d bytes, want %d", n, size)
		}
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (b *rawBulk) close() error {
	var err error
	b.once.Do(func() {
		b.hosts[1].RemoveStreamHandler(rawBulkProto)
		err = closeHosts(b.hosts)
		b.handlers.shutdown()
	})
	return err
}
