package groups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"
)

// snapshotFetchFunc sends one chunk request to a holder and returns its
// decoded answer (a refusal as a *snapshotRefusedError). It must return
// once ctx is done; the fetcher does not wait for one that does not, but
// its goroutine lives until it returns. dst, when not nil, is where the
// chunk's data belongs (req.MaxBytes bytes of the writer's memory,
// chunkPlacer): the function may read the data into it and return a
// chunk whose Data is dst, and must not write it after it returned.
type snapshotFetchFunc func(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error)

// snapshotFetchParams tune a snapshot transfer.
type snapshotFetchParams struct {
	// ChunkTimeout bounds one chunk request; a holder that does not answer
	// in time is dropped for the rest of the transfer (mosaik's
	// fetch_timeout, 5 s).
	ChunkTimeout time.Duration
	// ChunkBytes is the max_bytes of each request, at most
	// snapshotMaxChunk.
	ChunkBytes uint32
	// Window is how many chunks may be in flight at once (and so how many
	// out-of-order chunks wait in memory for their turn).
	Window int
	// PerHolder is how many of those one holder serves at once.
	PerHolder int
	// MaxTotal refuses a descriptor announcing a larger snapshot (required).
	MaxTotal uint64
}

func defaultSnapshotFetchParams() snapshotFetchParams {
	return snapshotFetchParams{
		ChunkTimeout: 5 * time.Second,
		ChunkBytes:   256 << 10,
		// A chunk is a stream round trip: with one holder (often only the
		// leader holds a fresh anchor) 2 in flight left a 100 000-entry
		// map's 8 MB at a fraction of a raw stream's throughput.
		Window:    8,
		PerHolder: 4,
		MaxTotal:  1 << 30,
	}
}

var (
	// errSnapshotNoHolder: every holder failed (timed out, refused, sent
	// an invalid chunk) before the transfer finished.
	errSnapshotNoHolder = errors.New("groups: snapshot transfer: no holder left")
	// errSnapshotHash: the assembled bytes do not match the descriptor.
	errSnapshotHash = errors.New("groups: snapshot transfer: hash mismatch")
	// errSnapshotChunk is wrapped by the reason a chunk was rejected.
	errSnapshotChunk = errors.New("groups: snapshot transfer: invalid chunk")
	// errSnapshotParams: the descriptor or the parameters are unusable.
	errSnapshotParams = errors.New("groups: snapshot transfer: bad parameters")
)

func (p snapshotFetchParams) validate() error {
	if p.ChunkTimeout <= 0 || p.ChunkBytes == 0 || p.ChunkBytes > snapshotMaxChunk || p.Window <= 0 || p.PerHolder <= 0 || p.MaxTotal == 0 {
		return fmt.Errorf("%w: %+v", errSnapshotParams, p)
	}
	return nil
}

// fetchSnapshot fetches the snapshot d describes from holders, writing its
// bytes to w in order, and checks the whole against d's hash. On error, w
// may hold a prefix (or, for errSnapshotHash, all) of wrong bytes: discard
// it.
//
// holders are in order of preference: each free chunk goes to the first
// holder with fewer than PerHolder requests in flight. The caller lists
// the leader last (as mosaik does), so that the leader, busiest of all,
// serves only when the other holders are busy or gone. A holder that times
// out, refuses or sends an invalid chunk is dropped and its chunks go to
// the next one; when no holder is left the transfer fails with
// errSnapshotNoHolder, which lists each holder's failure. Every wait is
// bounded by ChunkTimeout, so the transfer ends within about
// len(holders) × ChunkTimeout after the last successful chunk, or with ctx.
func fetchSnapshot(ctx context.Context, d snapshotDescriptor, holders []peer.ID, fetch snapshotFetchFunc, w io.Writer, p snapshotFetchParams) error {
	return fetchSnapshotMore(ctx, d, holders, nil, nil, fetch, w, p)
}

// fetchSnapshotMore is fetchSnapshot with holders that join the transfer
// after it started: each peer received from more (nil: none) that is not
// a holder already is added after the others, for the chunks not yet
// requested and the retries. Such a holder may hold d's bytes (its hash
// and size) at another anchor: it is asked for them at that anchor. A
// transfer whose holders all failed does not wait for more. busy (nil:
// none) names the holder that has the most other work (the leader): while
// another holder is usable, it is given at most one chunk at a time.
func fetchSnapshotMore(ctx context.Context, d snapshotDescriptor, holders []peer.ID, more <-chan holderAt, busy func(peer.ID) bool, fetch snapshotFetchFunc, w io.Writer, p snapshotFetchParams) error {
	if err := p.validate(); err != nil {
		return err
	}
	if d.TotalSize > p.MaxTotal {
		return fmt.Errorf("%w: snapshot of %d bytes over the cap of %d", errSnapshotParams, d.TotalSize, p.MaxTotal)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &snapshotFetcher{
		d: d, p: p, fetch: fetch, w: w, hash: newChunkHasher(p.Window),
		more:     more,
		busy:     busy,
		chunks:   (d.TotalSize + uint64(p.ChunkBytes) - 1) / uint64(p.ChunkBytes),
		results:  make(chan attemptResult),
		done:     make(chan struct{}),
		inflight: make(map[uint64]*attempt),
		ready:    make(map[uint64][]byte),
		placed:   make(map[uint64]placedChunk),
	}
	f.placer, _ = w.(chunkPlacer)
	defer close(f.done)
	defer f.hash.finish() // a failed transfer: the hasher still stops
	for _, h := range holders {
		f.holders = append(f.holders, &holderState{id: h})
	}
	if err := f.run(ctx); err != nil {
		return err
	}
	if f.hash.finish() != d.Hash {
		return fmt.Errorf("%w at %v", errSnapshotHash, d.Anchor)
	}
	return nil
}

// chunkHasher hashes a transfer's bytes, in order, on a goroutine of its
// own: the fetch loop hands it each chunk as the chunk's turn comes and
// goes on requesting and receiving the next ones while it hashes (the
// hash of a snapshot of megabytes used to hold up the requests behind
// it). The bytes handed over must not change until finish returned.
type chunkHasher struct {
	in       chan []byte
	done     chan struct{}
	sum      [32]byte
	finished bool
}

// newChunkHasher starts a hasher that takes up to depth chunks ahead of
// its hashing before write blocks.
func newChunkHasher(depth int) *chunkHasher {
	h := &chunkHasher{in: make(chan []byte, depth), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		// zeebo/blake3, not lukechampine.com/blake3 as elsewhere: the
		// same BLAKE3-256, but lukechampine's Hasher.Write starts a
		// goroutine per 16 KiB it is given (512 per 8 MB), which on a
		// reader busy with the transfer cost more than the hashing.
		b := blake3.New()
		for data := range h.in {
			_, _ = b.Write(data)
		}
		b.Sum(h.sum[:0])
	}()
	return h
}

// write hands data to the hasher, after the chunks handed before.
func (h *chunkHasher) write(data []byte) { h.in <- data }

// finish waits until everything written was hashed and returns the
// blake3-256 of it all. Only the first call stops the hasher; the
// goroutine that writes calls it.
func (h *chunkHasher) finish() [32]byte {
	if !h.finished {
		h.finished = true
		close(h.in)
	}
	<-h.done
	return h.sum
}

type snapshotFetcher struct {
	d     snapshotDescriptor
	p     snapshotFetchParams
	fetch snapshotFetchFunc
	w     io.Writer
	hash  *chunkHasher

	holders []*holderState
	more    <-chan holderAt // holders joining late (nil: none)
	busy    func(peer.ID) bool
	chunks  uint64 // number of chunks of the snapshot

	nextNew   uint64            // next chunk never requested
	retry     []uint64          // chunks to request again, any order
	nextWrite uint64            // next chunk to write to w
	ready     map[uint64][]byte // fetched, waiting for their turn
	placer    chunkPlacer       // nil: w takes no chunk in place
	unplaced  bool              // the placer refused a region: chunks use memory of their own
	placed    map[uint64]placedChunk
	inflight  map[uint64]*attempt
	seq       uint64 // attempt ids

	results chan attemptResult
	done    chan struct{} // closed when fetchSnapshot returns
}

type holderState struct {
	id       peer.ID
	anchor   snapshotAnchor // where it holds the bytes (zero: the descriptor's anchor)
	inflight int
	err      error // why it was dropped; nil while usable
}

type attempt struct {
	chunk    uint64
	holder   *holderState
	req      snapshotChunkRequest
	deadline time.Time
	cancel   context.CancelFunc
}

// placedChunk is the first attempt at a chunk, which was given the
// chunk's place in the writer's memory: done is closed once its fetch
// returned (and so wrote there for the last time).
type placedChunk struct {
	region []byte
	done   chan struct{}
}

type attemptResult struct {
	id    uint64
	chunk snapshotChunk
	err   error
}

func (f *snapshotFetcher) run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for f.nextWrite < f.chunks {
		f.takeQueued()
		f.dispatch(ctx)
		if len(f.inflight) == 0 {
			return f.noHolder()
		}
		timer.Reset(time.Until(f.earliestDeadline()))
		select {
		case r := <-f.results:
			if err := f.handle(r); err != nil {
				return err
			}
		case <-timer.C:
			now := time.Now()
			for id, a := range f.inflight {
				if !now.Before(a.deadline) {
					f.fail(id, a, fmt.Errorf("no answer within %v", f.p.ChunkTimeout))
				}
			}
		case x := <-f.more:
			f.addHolder(x)
		case <-ctx.Done():
			return fmt.Errorf("groups: snapshot transfer at %v: %w", f.d.Anchor, ctx.Err())
		}
	}
	return nil
}

// holderAt is a holder of a transfer's bytes and the anchor it holds
// them at (the zero anchor: the descriptor's).
type holderAt struct {
	id     peer.ID
	anchor snapshotAnchor
}

// takeQueued adds the holders already waiting in more, without waiting
// for any: when the holders in use fail at once, one offered meanwhile
// takes their chunks instead of the transfer failing with it unread.
func (f *snapshotFetcher) takeQueued() {
	for {
		select {
		case x := <-f.more:
			f.addHolder(x)
		default:
			return
		}
	}
}

// addHolder adds a holder that joined late, unless it is one already
// (a dropped holder stays dropped).
func (f *snapshotFetcher) addHolder(x holderAt) {
	for _, h := range f.holders {
		if h.id == x.id {
			return
		}
	}
	f.holders = append(f.holders, &holderState{id: x.id, anchor: x.anchor})
}

// dispatch requests free chunks, within the window, from usable holders.
func (f *snapshotFetcher) dispatch(ctx context.Context) {
	for len(f.inflight) < f.p.Window {
		h := f.freeHolder()
		if h == nil {
			return
		}
		var chunk uint64
		switch {
		case len(f.retry) > 0:
			// The lowest first: it is the one holding up the writes.
			k := 0
			for i, c := range f.retry {
				if c < f.retry[k] {
					k = i
				}
			}
			chunk = f.retry[k]
			f.retry = append(f.retry[:k], f.retry[k+1:]...)
		case f.nextNew < f.chunks && f.nextNew < f.nextWrite+f.lead():
			chunk = f.nextNew
			f.nextNew++
		default:
			return
		}
		f.start(ctx, h, chunk)
	}
}

// placedLead is how many Windows ahead of the next chunk to write a new
// request may go while chunks are read in place: a chunk that arrives
// before its turn then waits in its place in the snapshot's memory, not
// in memory of its own, so a fast holder need not idle behind a slow one
// (with the lead of one Window, a holder that had served its share of the
// Window waited for the slowest chunk before it). The lead stays bounded
// because a reply of another shape is read into memory of its own.
const placedLead = 4

// lead is how far ahead of the next chunk to write requests may go.
func (f *snapshotFetcher) lead() uint64 {
	if f.placer != nil && !f.unplaced {
		return uint64(placedLead * f.p.Window)
	}
	return uint64(f.p.Window)
}

// freeHolder is the first usable holder with room for one more request.
// The busy holder (the leader) comes after every other and, while
// another is usable, serves one chunk at a time.
func (f *snapshotFetcher) freeHolder() *holderState {
	var busy *holderState
	others := false
	for _, h := range f.holders {
		if h.err != nil {
			continue
		}
		if f.busy != nil && f.busy(h.id) {
			busy = h
			continue
		}
		others = true
		if h.inflight < f.p.PerHolder {
			return h
		}
	}
	if busy != nil && (busy.inflight < 1 || !others && busy.inflight < f.p.PerHolder) {
		return busy
	}
	return nil
}

func (f *snapshotFetcher) start(ctx context.Context, h *holderState, chunk uint64) {
	off := chunk * uint64(f.p.ChunkBytes)
	anchor := f.d.Anchor
	if h.anchor != (snapshotAnchor{}) {
		anchor = h.anchor
	}
	req := snapshotChunkRequest{Anchor: anchor, Offset: off, MaxBytes: uint32(min(uint64(f.p.ChunkBytes), f.d.TotalSize-off)), Hash: f.d.Hash}
	actx, cancel := context.WithTimeout(ctx, f.p.ChunkTimeout)
	f.seq++
	id := f.seq
	f.inflight[id] = &attempt{chunk: chunk, holder: h, req: req, deadline: time.Now().Add(f.p.ChunkTimeout), cancel: cancel}
	h.inflight++
	// Only a chunk's first attempt reads in place: a retry may overlap
	// with an earlier attempt that still writes there (see write).
	var dst []byte
	var done chan struct{}
	if _, again := f.placed[chunk]; !again && f.placer != nil && req.MaxBytes > 0 {
		if dst = f.placer.place(off, int(req.MaxBytes)); dst != nil {
			done = make(chan struct{})
			f.placed[chunk] = placedChunk{region: dst, done: done}
		} else {
			f.unplaced = true
		}
	}
	go func() {
		c, err := f.fetch(actx, h.id, req, dst)
		if done != nil {
			close(done)
		}
		if err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			// The attempt's own deadline, racing the fetcher's timer:
			// the same failure, said the same way.
			err = fmt.Errorf("no answer within %v", f.p.ChunkTimeout)
		}
		select {
		case f.results <- attemptResult{id: id, chunk: c, err: err}:
		case <-f.done:
		}
	}()
}

// handle takes one answer: a valid chunk is written (or kept for its
// turn); anything else drops the holder.
func (f *snapshotFetcher) handle(r attemptResult) error {
	a, ok := f.inflight[r.id]
	if !ok {
		return nil // already timed out or cancelled
	}
	err := r.err
	if err == nil {
		err = f.check(a.req, r.chunk)
	}
	if err != nil {
		f.fail(r.id, a, err)
		return nil
	}
	a.cancel()
	delete(f.inflight, r.id)
	a.holder.inflight--
	f.ready[a.chunk] = r.chunk.Data
	for {
		data, ok := f.ready[f.nextWrite]
		if !ok {
			return nil
		}
		delete(f.ready, f.nextWrite)
		f.unplace(f.nextWrite, data)
		f.hash.write(data)
		if _, err := f.w.Write(data); err != nil {
			return fmt.Errorf("groups: snapshot transfer at %v: write: %w", f.d.Anchor, err)
		}
		f.nextWrite++
	}
}

// unplace is called before chunk's data is written: when its place was
// given to an attempt other than the one data comes from, and that
// attempt's fetch has not returned yet, it may still write there, so the
// writer moves to memory of its own (a rare case: an attempt that timed
// out, or that its holder's failure cancelled, and is slow to stop).
func (f *snapshotFetcher) unplace(chunk uint64, data []byte) {
	p, ok := f.placed[chunk]
	if !ok {
		return
	}
	delete(f.placed, chunk)
	if sameStart(data, p.region) {
		return // read in place by the attempt that returned it
	}
	select {
	case <-p.done:
	default:
		f.placer.relocate()
	}
}

// check verifies that c answers req for the snapshot being fetched.
func (f *snapshotFetcher) check(req snapshotChunkRequest, c snapshotChunk) error {
	want := uint64(req.MaxBytes)
	switch {
	case c.Anchor != req.Anchor:
		return fmt.Errorf("%w: anchor %v, asked %v", errSnapshotChunk, c.Anchor, req.Anchor)
	case c.Offset != req.Offset:
		return fmt.Errorf("%w: offset %d, asked %d", errSnapshotChunk, c.Offset, req.Offset)
	case c.TotalSize != f.d.TotalSize:
		return fmt.Errorf("%w: total size %d, descriptor says %d", errSnapshotChunk, c.TotalSize, f.d.TotalSize)
	case uint64(len(c.Data)) != want:
		return fmt.Errorf("%w: %d bytes, asked %d", errSnapshotChunk, len(c.Data), want)
	case c.Last != (req.Offset+want == f.d.TotalSize):
		return fmt.Errorf("%w: last flag %v at %d of %d", errSnapshotChunk, c.Last, req.Offset+want, f.d.TotalSize)
	}
	return nil
}

// fail drops a's holder with err, and puts back its chunks (this one and
// any other it was serving) for the next holder.
func (f *snapshotFetcher) fail(id uint64, a *attempt, err error) {
	h := a.holder
	if h.err == nil {
		h.err = err
	}
	for oid, o := range f.inflight {
		if o.holder == h || oid == id {
			o.cancel()
			delete(f.inflight, oid)
			o.holder.inflight--
			f.retry = append(f.retry, o.chunk)
		}
	}
}

func (f *snapshotFetcher) earliestDeadline() time.Time {
	var t time.Time
	for _, a := range f.inflight {
		if t.IsZero() || a.deadline.Before(t) {
			t = a.deadline
		}
	}
	return t
}

func (f *snapshotFetcher) noHolder() error {
	errs := make([]error, 0, len(f.holders))
	for _, h := range f.holders {
		errs = append(errs, fmt.Errorf("holder %s: %w", h.id, h.err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w at %v: no holders given", errSnapshotNoHolder, f.d.Anchor)
	}
	return fmt.Errorf("%w at %v, %d of %d chunks written: %w", errSnapshotNoHolder, f.d.Anchor, f.nextWrite, f.chunks, errors.Join(errs...))
}
