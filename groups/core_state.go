package groups

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"

	"github.com/mosaik-go/mosaik/catalog"
)

// coreState is the core's registry of the groups joined on a Service.
// Lock order: coreState.mu, then the bond layer's locks (attach is called
// under mu); the bond layer never calls back into coreState, and inbox
// methods take no lock of the core's but the bond queue's leaf lock.
type coreState struct {
	mu      sync.Mutex
	groups  map[catalog.ID]*joined
	joining map[catalog.ID]chan struct{} // Joins opening their store, and groups leaving (release), closed when done
	closed  bool
}

// joined is one running group and its open handles.
type joined struct {
	c       *groupCore
	refs    int
	typ     reflect.Type // StateMachine[C, Q, R] of the first Join
	sm      any          // that StateMachine[C, Q, R]
	codec   any          // its Codec[C]
	role    Role
	reluct  bool
	stopped bool
}

func (s *Service) logger() *slog.Logger {
	if s.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.log
}

// Join joins the group that key, sm's signature, the consensus params and
// the ticket validators name on this node's network, and returns a handle.
// It does not block on the network: watch When() for a leader.
//
// Joining an id that is already joined on this node returns another handle
// to the same running group; sm and the options of the later call are
// discarded, and other command, query or result types (ErrTypeMismatch),
// another role or another Reluctant setting are an error (unless the
// later call asks WithRunningRole: it then joins in the running role). Each handle has
// its own Close; the group ends on this node when the last one closes.
// A Join while that last Close is leaving the group (at most LeaveTimeout)
// waits for it, then joins afresh.
func Join[C, Q, R any](s *Service, key Key, sm StateMachine[C, Q, R], opts ...Option) (*Group[C, Q, R], error) {
	if sm == nil {
		return nil, errors.New("groups: nil state machine")
	}
	cfg := defaultConfig()
	for _, o := range s.joinDefaults {
		o(&cfg)
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.params.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.snapshot.Validate(); err != nil {
		return nil, err
	}
	if cfg.role != RoleWriter && cfg.role != RoleReader {
		return nil, fmt.Errorf("groups: unknown role %d", cfg.role)
	}
	var codec Codec[C] = CBOR[C]{}
	if cfg.codec != nil {
		cc, ok := cfg.codec.(Codec[C])
		if !ok {
			return nil, fmt.Errorf("groups: codec %T does not encode the command type %v", cfg.codec, reflect.TypeFor[C]())
		}
		codec = cc
	}
	cfg.maxBatch = batchLimit(s.net.frameLimit())
	id, err := DeriveID(key, cfg.params, sm.Signature(), cfg.tickets)
	if err != nil {
		return nil, err
	}
	typ := reflect.TypeFor[StateMachine[C, Q, R]]()

	cs := &s.core
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for {
		if cs.closed {
			return nil, ErrTerminated
		}
		if j := cs.groups[id]; j != nil && j.c.ended() {
			// It ended on its own (a state machine panic): a new Join starts
			// it afresh; the old handles keep reporting the failure.
			delete(cs.groups, id)
		}
		if j := cs.groups[id]; j != nil {
			if j.typ != typ {
				return nil, fmt.Errorf("%w: joined as %v, now %v", ErrTypeMismatch, j.typ, typ)
			}
			if !cfg.anyRole && (j.role != cfg.role || j.reluct != cfg.reluctant) {
				return nil, fmt.Errorf("groups: group %s already joined with role %v, reluctant %v: close its handles first (or join WithRunningRole)", id.Short(), j.role, j.reluct)
			}
			j.refs++
			return newHandle[C, Q, R](s, id, j), nil
		}
		busy := cs.joining[id]
		if busy == nil {
			break
		}
		// Another Join of this id is opening its store: wait for it,
		// then look again.
		cs.mu.Unlock()
		<-busy
		cs.mu.Lock()
	}
	// Opening the store (the data dir's lock, a log replay, the state
	// machine's Restore) may take seconds: not under mu, which every other
	// group's Join and Close and the snapshot server of every group take.
	busy := make(chan struct{})
	if cs.joining == nil {
		cs.joining = map[catalog.ID]chan struct{}{}
	}
	cs.joining[id] = busy
	cs.mu.Unlock()
	var c *groupCore
	func() {
		defer cs.mu.Lock() // also if newGroupCore panics: the deferred Unlock stays balanced
		c, err = newGroupCore(s, id, cfg, &typedMachine[C, Q, R]{sm: sm, codec: codec, log: s.logger()})
	}()
	release := func() {
		delete(cs.joining, id)
		close(busy)
	}
	if err != nil {
		release()
		return nil, err
	}
	if cs.closed {
		// Closed meanwhile: the store is closed before closeAll, which
		// waits for this Join, returns (a data dir can be opened again).
		if c.ticker != nil {
			c.ticker.Stop()
		}
		_ = c.store.Close()
		release()
		return nil, ErrTerminated
	}
	release()
	tr, err := s.net.attach(spec{
		ID: id, Key: key.h, Role: cfg.role, Tickets: cfg.tickets,
		Heartbeat: cfg.params.Heartbeat, HeartbeatJitter: cfg.params.HeartbeatJitter,
		MissedHeartbeats: cfg.params.MissedHeartbeats,
	}, c)
	if err != nil {
		if c.ticker != nil {
			c.ticker.Stop()
		}
		_ = c.store.Close()
		return nil, fmt.Errorf("groups: attach %s: %w", id.Short(), err)
	}
	c.start(tr)
	j := &joined{c: c, refs: 1, typ: typ, sm: sm, codec: codec, role: cfg.role, reluct: cfg.reluctant}
	if cs.groups == nil {
		cs.groups = map[catalog.ID]*joined{}
	}
	cs.groups[id] = j
	c.log.Info("joined group", "role", cfg.role.String())
	return newHandle[C, Q, R](s, id, j), nil
}

// release drops one handle's reference; the last one stops the group.
func (cs *coreState) release(id catalog.ID, j *joined) error {
	cs.mu.Lock()
	j.refs--
	last := j.refs == 0 && !j.stopped
	var busy chan struct{}
	if last {
		j.stopped = true
		if cs.groups[id] == j {
			delete(cs.groups, id)
			// A Join of id while the group leaves (up to LeaveTimeout) waits
			// for it, as for a Join opening the store, then starts afresh:
			// it failed with "already attached" (or on the store's lock).
			if cs.joining[id] == nil {
				busy = make(chan struct{})
				if cs.joining == nil {
					cs.joining = map[catalog.ID]chan struct{}{}
				}
				cs.joining[id] = busy
			}
		}
	}
	cs.mu.Unlock()
	if last {
		j.c.stop(j.c.p.LeaveTimeout)
	}
	if busy != nil {
		cs.mu.Lock()
		delete(cs.joining, id)
		close(busy)
		cs.mu.Unlock()
	}
	return nil
}

// leaveAll runs, in parallel, the graceful leave of every group whose log
// is in memory (Service.Leave); the groups keep running.
func (cs *coreState) leaveAll() {
	cs.mu.Lock()
	var all []*joined
	for _, j := range cs.groups {
		if j.c.cfg.openStore == nil {
			all = append(all, j)
		}
	}
	cs.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range all {
		wg.Go(func() { j.c.leave(j.c.p.LeaveTimeout) })
	}
	wg.Wait()
}

// closeAll stops every group (Service.Close).
func (cs *coreState) closeAll() error {
	cs.mu.Lock()
	cs.closed = true
	var all []*joined
	for id, j := range cs.groups {
		j.stopped = true
		all = append(all, j)
		delete(cs.groups, id)
	}
	var joining []chan struct{}
	for _, busy := range cs.joining {
		joining = append(joining, busy)
	}
	cs.mu.Unlock()
	// A group whose log is in memory cannot come back as the same member:
	// it leaves gracefully. One with a data dir keeps its membership, to
	// resume it on restart. The groups stop in parallel, also with those
	// a last Close is stopping (release), so Close waits for one
	// LeaveTimeout at most.
	var wg sync.WaitGroup
	for _, j := range all {
		leave := j.c.p.LeaveTimeout
		if j.c.cfg.openStore != nil {
			leave = 0
		}
		wg.Go(func() { j.c.stop(leave) })
	}
	// Joins still opening their store find the service closed and close
	// it again before they let go.
	for _, busy := range joining {
		<-busy
	}
	wg.Wait()
	return nil
}
