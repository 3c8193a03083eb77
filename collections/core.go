package collections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"go.opentelemetry.io/otel/metric"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// Host is what a collection needs from its node: the groups service.
// *node.Node implements it.
type Host interface {
	Groups() *groups.Service
}

// Version is the log index of a committed mutation. A collection's
// version is the index of the last command it applied; every replica
// that reaches a version holds the same content at it.
type Version uint64

// kind is one collection type's pure core: its state, how a command
// changes it and how it is written to and read from a snapshot. Every
// method is called with the machine's working state held exclusively (on
// the group goroutine, or on a reader's publishing it under the machine's
// lock), one at a time, except that readers call methods of published
// states concurrently: a state handed to readers is never mutated again
// (clone makes the next working copy).
type kind[S any] interface {
	// empty returns the empty state.
	empty() S
	// clone returns a copy of s that can be mutated without changing s
	// (O(1) for the persistent structures).
	clone(s S) S
	// apply applies cmd to s in place and says what it did: applied, a
	// valid no-op (a compare-and-exchange that did not match), or invalid
	// (counted as rejected; s unchanged). It must be deterministic and
	// must not panic on any input.
	apply(s S, cmd *command) (S, outcome)
	// reports says whether the outcome of op is kept for its caller
	// (compare-and-exchange).
	reports(op uint8) bool
	// size is the number of items in s.
	size(s S) int
	// encode writes s as a stream of CBOR values; decode reads one.
	encode(s S, enc *cbor.Encoder) error
	decode(dec *cbor.Decoder) (S, error)
}

// published is an immutable state and the version it is at.
type published[S any] struct {
	state   S
	version Version
	size    int
}

// machine adapts a kind to groups.StateMachine.
//
// Apply mutates a working state that no reader sees, in place, and the
// state readers see is published from it lazily: only when a reader asks
// after a change (load), by handing the working state over as it is and
// going on with an O(1) clone of it. A run of commands that nobody reads
// in between therefore costs no clone and no copy-on-write of the tree's
// path per command, where publishing after every Apply made each insert
// copy every node from the root to its leaf (about 15 KB at 10 000 map
// entries). Reads of an unchanged state go to the published state through
// an atomic pointer and never wait for the group goroutine; the first
// read after a change waits for the Apply in progress, if any, to end.
// A snapshot being installed leaves the last state readable until the
// new one is published.
type machine[S any] struct {
	k    kind[S]
	sig  catalog.ID
	tag  string
	name string // the collection's, for Describe

	cur atomic.Pointer[published[S]]
	// stale says that work holds commands applied since cur. It is set
	// before version and size move, so that a reader that saw the new
	// version publishes (or waits for) the state at it.
	stale   atomic.Bool
	version atomic.Uint64 // of work: the index of the last command applied
	size    atomic.Int64  // of work

	mu      sync.Mutex
	work    S             // the working state; never published while it is work
	changed chan struct{} // closed and replaced at a change once watched
	watched bool          // someone holds changed

	rejected atomic.Uint64 // commands that were no-ops because invalid
	outcomes outcomeRing

	// The size gauge: one per machine, however many handles share it,
	// registered by the first and unregistered by the last.
	gaugeMu   sync.Mutex
	gaugeRefs int
	gaugeReg  metric.Registration
}

// outcome is what applying one command did.
type outcome uint8

const (
	applied outcome = iota + 1
	noop            // valid, but changed nothing (a CAS that did not match)
	invalid         // refused: no-op and counted
)

func newMachine[S any](k kind[S], sig catalog.ID, tag, name string) *machine[S] {
	m := &machine[S]{k: k, sig: sig, tag: tag, name: name, changed: make(chan struct{})}
	m.publish(&published[S]{state: k.empty()})
	return m
}

// Signature implements groups.StateMachine.
func (m *machine[S]) Signature() catalog.ID { return m.sig }

// Apply implements groups.StateMachine. It applies the run to the
// working state in place; readers see it at their next read (load).
func (m *machine[S]) Apply(actx groups.ApplyContext, cmds []command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.work
	for i := range cmds {
		o := invalid
		if !cmds[i].undecodable {
			s, o = m.k.apply(s, &cmds[i])
		}
		if o == invalid {
			m.rejected.Add(1)
		}
		if m.k.reports(cmds[i].Op) {
			m.outcomes.put(actx.Index(i), o)
		}
	}
	m.work = s
	m.stale.Store(true)
	m.size.Store(int64(m.k.size(s)))
	m.version.Store(actx.Index(len(cmds) - 1))
	m.notifyLocked()
}

// Describe implements groups.Describer for status pages. It reads the
// applied version and size, so it is safe concurrently with Apply.
func (m *machine[S]) Describe() groups.Description {
	return groups.Description{Kind: m.tag, Name: m.name, Items: int(m.size.Load()), Version: m.version.Load()}
}

// Query implements groups.StateMachine: the version applied here. A strong
// query answers once this node has applied everything committed before
// it, which is what Sync waits for.
func (m *machine[S]) Query(struct{}) Version { return Version(m.version.Load()) }

// snapshotHeader opens every collection snapshot.
type snapshotHeader struct {
	_       struct{} `cbor:",toarray"`
	Tag     string
	Version uint64
	Size    uint64
}

// Snapshot implements groups.StateMachine: a header, then the kind's
// items in their deterministic order.
func (m *machine[S]) Snapshot(w io.Writer) error { return m.writeSnapshot(m.load(), w) }

// CaptureSnapshot implements groups.SnapshotCapturer: a published state
// is immutable (Apply works on the working state, which load hands over
// and replaces with a copy-on-write clone), so it can be written on
// another goroutine while the group applies on.
func (m *machine[S]) CaptureSnapshot() func(w io.Writer) error {
	p := m.load()
	return func(w io.Writer) error { return m.writeSnapshot(p, w) }
}

func (m *machine[S]) writeSnapshot(p *published[S], w io.Writer) error {
	enc := detcbor.NewEncoder(w)
	if err := enc.Encode(snapshotHeader{Tag: m.tag, Version: uint64(p.version), Size: uint64(p.size)}); err != nil {
		return err
	}
	if re, ok := m.k.(rawEncoder[S]); ok {
		return re.encodeRaw(p.state, w)
	}
	return m.k.encode(p.state, enc)
}

// rawEncoder is a kind that can write what its encode writes without the
// encoder's reflection per item, by appending the canonical bytes it
// already holds. A snapshot of a large collection is built that way.
type rawEncoder[S any] interface {
	encodeRaw(s S, w io.Writer) error
}

// Restore implements groups.StateMachine. An empty reader (the snapshot of
// nothing) resets the collection.
func (m *machine[S]) Restore(r io.Reader) error {
	if rd, ok := m.k.(rawDecoder[S]); ok {
		return m.restoreRaw(rd, r)
	}
	dec := detcbor.NewDecoder(r)
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		if errors.Is(err, io.EOF) {
			m.publish(&published[S]{state: m.k.empty()})
			return nil
		}
		return fmt.Errorf("collections: snapshot header: %w", err)
	}
	if h.Tag != m.tag {
		return fmt.Errorf("collections: snapshot of a %q, not a %q", h.Tag, m.tag)
	}
	s, err := m.k.decode(dec)
	if err != nil {
		return fmt.Errorf("collections: snapshot of %s: %w", m.tag, err)
	}
	if n := m.k.size(s); uint64(n) != h.Size {
		return fmt.Errorf("collections: snapshot of %s holds %d items, its header says %d", m.tag, n, h.Size)
	}
	m.publish(&published[S]{state: s, version: Version(h.Version), size: m.k.size(s)})
	return nil
}

// rawDecoder is a kind that reads what its decode reads from the bytes
// themselves, without a stream decoder's reflection per item. size is
// the number of items the header announces, unchecked: a hint.
type rawDecoder[S any] interface {
	decodeRaw(b []byte, size uint64) (S, error)
}

// restoreRaw is Restore for a rawDecoder, with the same checks.
func (m *machine[S]) restoreRaw(rd rawDecoder[S], r io.Reader) error {
	var data []byte
	if sb, ok := r.(groups.SnapshotBytes); ok {
		// groups never modifies them: the restored entries alias them.
		data = sb.SnapshotBytes()
	} else if l, ok := r.(interface{ Len() int }); ok {
		// Another reader in memory (a bytes.Reader): one copy of the
		// right size.
		data = make([]byte, l.Len())
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("collections: snapshot: %w", err)
		}
	} else {
		var err error
		if data, err = io.ReadAll(r); err != nil {
			return fmt.Errorf("collections: snapshot: %w", err)
		}
	}
	return m.restoreBytes(rd, data)
}

// restoreBytes is restoreRaw of the snapshot's bytes, which the restored
// state may alias.
func (m *machine[S]) restoreBytes(rd rawDecoder[S], data []byte) error {
	if len(data) == 0 {
		m.publish(&published[S]{state: m.k.empty()})
		return nil
	}
	var h snapshotHeader
	rest, err := detcbor.UnmarshalFirst(data, &h)
	if err != nil {
		return fmt.Errorf("collections: snapshot header: %w", err)
	}
	if h.Tag != m.tag {
		return fmt.Errorf("collections: snapshot of a %q, not a %q", h.Tag, m.tag)
	}
	s, err := rd.decodeRaw(rest, h.Size)
	if err != nil {
		return fmt.Errorf("collections: snapshot of %s: %w", m.tag, err)
	}
	if n := m.k.size(s); uint64(n) != h.Size {
		return fmt.Errorf("collections: snapshot of %s holds %d items, its header says %d", m.tag, n, h.Size)
	}
	m.publish(&published[S]{state: s, version: Version(h.Version), size: m.k.size(s)})
	return nil
}

// core is what every collection handle shares: the group and its machine.
type core[S any] struct {
	name   string
	kind   string
	writer bool
	g      *groups.Group[command, struct{}, Version]
	m      *machine[S]

	closeOnce sync.Once
	// life ends (cancelled with cause ErrTerminated) when this handle
	// closes; closed is its Done channel: this handle's waits end.
	life   context.Context
	end    context.CancelCauseFunc
	closed <-chan struct{}
}

func open[S any](h Host, kindName, name string, k kind[S], writer bool, parts []string, opts []Option) (*core[S], error) {
	if h == nil || h.Groups() == nil {
		return nil, errors.New("collections: the host has no groups service")
	}
	if name == "" {
		return nil, errors.New("collections: empty name")
	}
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	sig := signature(kindName, name, parts...)
	m := newMachine(k, sig, kindName, name)
	gopts := append(append([]groups.Option(nil), cfg.group...), groups.WithCodec[command](commandCodec{}))
	for _, v := range cfg.tickets {
		gopts = append(gopts, groups.WithRequireTicket(v))
	}
	if cfg.sync != nil {
		gopts = append(gopts, groups.WithSnapshotParams(cfg.sync.SnapshotParams()))
	}
	switch {
	case writer && !cfg.noVote:
		gopts = append(gopts, groups.WithRole(groups.RoleWriter))
	case writer:
		gopts = append(gopts, groups.WithRole(groups.RoleReader))
	default:
		// A reader only reads: it shares the replica of a writer of the
		// name open on the node, whatever its role (mosaik does too).
		gopts = append(gopts, groups.WithRole(groups.RoleReader), groups.WithRunningRole())
	}
	g, err := groups.Join[command, struct{}, Version](h.Groups(), groupKey(name), m, gopts...)
	if err != nil {
		return nil, fmt.Errorf("collections: open %s %q: %w", kindName, name, err)
	}
	// A collection already open on the node: g is another handle to its
	// running group, which applies to the machine of the first open.
	running, ok := g.StateMachine().(*machine[S])
	if !ok {
		_ = g.Close()
		return nil, fmt.Errorf("collections: open %s %q: the running group applies to a %T", kindName, name, g.StateMachine())
	}
	c := &core[S]{name: name, kind: kindName, writer: writer, g: g, m: running}
	c.life, c.end = context.WithCancelCause(context.Background())
	c.closed = c.life.Done()
	if err := running.holdGauge(h.Groups(), c); err != nil {
		_ = g.Close()
		return nil, fmt.Errorf("collections: open %s %q: metrics: %w", kindName, name, err)
	}
	return c, nil
}

// close leaves the collection on this node. Idempotent.
func (c *core[S]) close() error {
	c.closeOnce.Do(func() {
		c.end(ErrTerminated)
		c.m.releaseGauge()
	})
	return c.g.Close()
}

// done is closed when this handle closed or the collection's group ended
// on this node: what every wait of the handle also stops on.
func (c *core[S]) done() (closed, ended <-chan struct{}) { return c.closed, c.g.When().Terminated() }

// bind returns ctx that also ends, with cause ErrTerminated, when this
// handle closes: a call under way (ExecuteMany, Sync) stops with its
// handle, as new calls and When waits do, even while another handle keeps
// the group running. Call stop when the call returns.
func (c *core[S]) bind(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(c.life, func() { cancel(ErrTerminated) })
	return ctx, func() { unhook(); cancel(nil) }
}

// closedErr is ErrTerminated when ctx (from bind) ended because the handle
// closed, else nil.
func closedErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrTerminated) {
		return ErrTerminated
	}
	return nil
}

// state returns the latest applied state.
func (c *core[S]) state() *published[S] { return c.m.load() }

// execute commits cmds and waits until they are applied here. arg is
// handed back in the error.
func execute[S, A any](ctx context.Context, c *core[S], op string, arg A, cmds ...command) (Version, error) {
	if len(cmds) == 0 {
		return c.state().version, nil
	}
	closed, ended := c.done()
	select {
	case <-closed:
		// Nothing is sent: say so, rather than wrapErr's "may apply".
		return 0, &MutationError[A]{Collection: c.name, Op: op, Arg: arg, Err: ErrTerminated}
	case <-ended:
		return 0, &MutationError[A]{Collection: c.name, Op: op, Arg: arg, Err: ErrTerminated}
	default:
	}
	for i := range cmds {
		if err := cmds[i].fitsReplicas(); err != nil {
			return 0, &MutationError[A]{Collection: c.name, Op: op, Arg: arg, Err: err}
		}
	}
	ctx, stop := c.bind(ctx)
	defer stop()
	r, err := c.g.ExecuteMany(ctx, cmds)
	if err != nil {
		if closedErr(ctx) != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The handle closed while the commands were in flight: they
			// may still commit.
			return 0, &MutationError[A]{Collection: c.name, Op: op, Arg: arg, Err: ErrTerminated, MayApply: true}
		}
		return 0, wrapErr(c, op, arg, err)
	}
	return Version(r.Last), nil
}

// encode encodes v canonically, as every key and value of a command. It
// refuses a value that does not decode back to the same bytes as a T (a
// string that is not UTF-8, for one): the replicas decode every argument
// that way, so such a command would commit and then be rejected on every
// replica, while its caller was told it applied.
func encode[T any](v T) (cbor.RawMessage, error) {
	b, err := detcbor.Marshal(v)
	if err != nil {
		return nil, err
	}
	if _, ok := decode[T](b); !ok {
		return nil, errRoundTrip
	}
	return b, nil
}

var errRoundTrip = errors.New("the value does not decode back to its own encoding (a string that is not UTF-8?)")

// decode decodes a canonical argument; a non-canonical one (only a
// hand-crafted command has one) is refused, so that equal values always
// have equal encodings on every replica.
func decode[T any](raw cbor.RawMessage) (T, bool) { return fastDecode[T](raw, false) }

// fastDecode is decode, and with alias the decoded strings and byte strings
// point into raw instead of copies (raw must then never change). Strings
// and byte strings, the most common keys and values, skip the reflective
// decode and re-encode: their canonical form is a shortest-length head and
// the bytes (fastpath.go). Anything else takes the general path, which
// decides alike. An aliased byte string's capacity ends with it, so an
// append by the caller copies instead of writing over what follows.
func fastDecode[T any](raw []byte, alias bool) (T, bool) {
	var v T
	switch p := any(&v).(type) {
	case *string:
		if b, ok := canonicalString(raw, cborText); ok && utf8.Valid(b) {
			if alias {
				*p = aliasString(b)
			} else {
				*p = string(b)
			}
			return v, true
		}
	case *[]byte:
		if b, ok := canonicalString(raw, cborBytes); ok && len(b) > 0 {
			if alias {
				*p = b[:len(b):len(b)]
			} else {
				*p = bytes.Clone(b)
			}
			return v, true
		}
	}
	return decodeGeneral[T](raw)
}

// decodeGeneral is decode without the fast paths.
func decodeGeneral[T any](raw cbor.RawMessage) (T, bool) {
	var v T
	if len(raw) == 0 || detcbor.Unmarshal(raw, &v) != nil {
		return v, false
	}
	again, err := detcbor.Marshal(v)
	if err != nil || string(again) != string(raw) {
		return v, false
	}
	return v, true
}

// ErrOutcomeUnknown is returned by a compare-and-exchange whose outcome
// is no longer kept (more than a thousand such commands were applied
// between its commit and its caller's wake-up): it committed at the
// version returned, but whether it matched is unknown. Read the value.
var ErrOutcomeUnknown = errors.New("collections: compare-and-exchange committed, outcome no longer known")

// swapped reports whether the compare-and-exchange applied at v matched.
func (c *core[S]) swapped(v Version) (bool, error) {
	switch c.m.outcomes.get(uint64(v)) {
	case applied:
		return true, nil
	case noop, invalid:
		return false, nil
	}
	return false, ErrOutcomeUnknown
}
