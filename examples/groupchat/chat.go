package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
)

// User is what a participant publishes about itself in the users map.
type User struct {
	Nickname string
	Color    uint8 // ANSI colour code, 0 for none
}

// Message is one line of the chat.
type Message struct {
	From  string // the author's nickname
	Peer  string // the author's peer id
	Color uint8
	Text  string
}

// Users is the room's participants, keyed by peer id. Every participant
// opens it as a writer, so anyone can join without a server; the
// definition is shared, so every program derives the same group.
var Users = collections.MapDef[string, User]("mosaik.example.group-chat.users", chatGroup)

// chatGroup sets the consensus timings of both collections. A room of two
// has one voter (the group keeps an odd number). When that participant
// quits cleanly it hands the room over (the groups' graceful leave), but
// when it vanishes (a crash, a cut network) the other has no leader until
// the departed voter is removed from the membership, after RemoveAfter:
// mosaik's default of 15 s would leave the survivor unable to send for
// that long. A chat on one machine or a LAN can declare a silent peer
// gone sooner. MissedHeartbeats is part of
// the group id, so every participant must use the same value: it is fixed
// here, next to the definitions.
var chatGroup = collections.WithGroupOptions(groups.WithParams(chatParams()))

func chatParams() groups.Params {
	p := groups.DefaultParams()
	p.MissedHeartbeats = 6          // a bond fails after 3 s of silence
	p.RemoveAfter = 4 * time.Second // must exceed that
	return p
}

// recheck bounds how long a watch loop sleeps without a notification. The
// loops wait with When().Updated, which reports the first change after the
// call: a change that lands between a loop's read and its next call is
// seen at the change after it, or at the latest after recheck. The users
// loop also looks for participants gone from the catalog at each wake.
const recheck = 2 * time.Second

// Participant is one member of a room: a writer replica of the users map
// and of the messages, with its own entry in the users map. Safe for
// concurrent use; Close it.
type Participant struct {
	id      string
	me      User
	users   *collections.Map[string, User]
	msgs    *history
	catalog func() *catalog.Snapshot
	leaving atomic.Bool
	close   sync.Once
}

// goneAfter is how long a participant listed in the users map may be
// missing from the node's catalog (it crashed, or its process was
// killed, so it could not remove itself; the fast profile purges a silent
// peer after 3 s) before Watch removes its entry. A participant that was
// only cut off inserts itself again when it is back.
const goneAfter = 5 * time.Second

// Host is what a participant needs of its node; *node.Node has it.
type Host interface {
	collections.Host
	ID() peer.ID
	Catalog() *catalog.Snapshot
}

// Join opens the room's collections on h as a writer, waits until both
// are online and caught up, and inserts the participant under its peer
// id. On error nothing stays open.
func Join(ctx context.Context, h Host, me User) (_ *Participant, err error) {
	p := &Participant{id: h.ID().String(), me: me, catalog: h.Catalog}
	if p.users, err = Users.Writer(h); err != nil {
		return nil, err
	}
	if p.msgs, err = openHistory(h); err != nil {
		_ = p.users.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	if err := p.users.When().Online(ctx); err != nil {
		return nil, fmt.Errorf("users map not online: %w", err)
	}
	if err := p.msgs.when().Online(ctx); err != nil {
		return nil, fmt.Errorf("messages not online: %w", err)
	}
	if err := p.register(ctx); err != nil {
		return nil, err
	}
	// Online means caught up with what the leader had committed when we
	// joined; Sync makes the history read below include every message
	// sent before our insert.
	err = retry(ctx, p.msgs.when(), func() error {
		_, err := p.msgs.sync(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	return p, nil
}

// register inserts (or re-inserts) the participant's own entry.
func (p *Participant) register(ctx context.Context) error {
	err := retry(ctx, p.users.When(), func() error {
		_, err := p.users.Insert(ctx, p.id, p.me)
		return err
	})
	if err != nil {
		return fmt.Errorf("insert ourselves in the users map: %w", err)
	}
	return nil
}

// retryPause spaces the attempts of retry: a collection can report online
// (a leader known) before a forward to that leader succeeds.
const retryPause = 200 * time.Millisecond

// retry runs op until it succeeds, fails for another reason than a missing
// leader, or ctx ends, waiting for the collection to be online between
// attempts. A room loses its leader when the participant leading it quits;
// the others elect another, or, when it was the only voter and vanished
// without leaving, take over once it is removed from the membership
// (chatParams.RemoveAfter). An attempt
// that failed offline may still have applied (MutationError.MayApply): a
// retried message can then show twice, as in any at-least-once chat.
func retry(ctx context.Context, w collections.When, op func() error) error {
	for {
		err := op()
		if err == nil || !errors.Is(err, collections.ErrOffline) {
			return err
		}
		if werr := w.Online(ctx); werr != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryPause):
		}
	}
}

// ID returns the participant's key in the users map.
func (p *Participant) ID() string { return p.id }

// Me returns what the participant published about itself.
func (p *Participant) Me() User { return p.me }

// Users returns the participants this replica knows, by peer id.
func (p *Participant) Users() map[string]User { return maps.Collect(p.users.All()) }

// Messages returns the history this replica holds, in the order every
// replica holds it.
func (p *Participant) Messages() []Message { return p.msgs.all() }

// Say appends a message to the room's history; it returns once the message
// is committed and applied here, with the messages' version then.
func (p *Participant) Say(ctx context.Context, text string) (collections.Version, error) {
	m := Message{From: p.me.Nickname, Peer: p.id, Color: p.me.Color, Text: text}
	var v collections.Version
	err := retry(ctx, p.msgs.when(), func() (err error) {
		v, err = p.msgs.push(ctx, m)
		return err
	})
	return v, err
}

// Leave removes the participant from the users map, so the others see it
// go, and stops Watch from re-inserting it. It returns the users map's
// version at the removal.
func (p *Participant) Leave(ctx context.Context) (collections.Version, error) {
	p.leaving.Store(true)
	var v collections.Version
	err := retry(ctx, p.users.When(), func() (err error) {
		v, err = p.users.Remove(ctx, p.id)
		return err
	})
	return v, err
}

// HasMessages waits until this replica's history is at version v (from
// another participant's Say) or later.
func (p *Participant) HasMessages(ctx context.Context, v collections.Version) error {
	return p.msgs.when().Reaches(ctx, v)
}

// HasUsers waits until this replica's users map is at version v (from
// another participant's Leave) or later.
func (p *Participant) HasUsers(ctx context.Context, v collections.Version) error {
	return p.users.When().Reaches(ctx, v)
}

// Close leaves both collections on this node (without removing the
// participant's entry: call Leave first). Idempotent.
func (p *Participant) Close() error {
	var err error
	p.close.Do(func() {
		err = errors.Join(p.msgs.close(), p.users.Close())
	})
	return err
}

// EventKind says what an Event reports.
type EventKind int

const (
	// Joined: a participant appeared in the users map.
	Joined EventKind = iota + 1
	// Left: a participant's entry is gone.
	Left
	// Said: a message was appended to the history.
	Said
	// Rewritten: the history shrank (this replica lost a merge with
	// another cluster and took the winner's history); Watch carries on
	// from the new end.
	Rewritten
)

// Event is one change Watch reports.
type Event struct {
	Kind EventKind
	ID   string // Joined, Left: the participant's peer id
	User User   // Joined, Left
	Msg  Message
}

// Watch reports changes of the room until ctx ends or the collections
// close, starting from known (the users already shown, by peer id) and
// shown (how many messages are already shown). The participant's own
// entry is never reported; if it vanishes (this replica lost a merge with
// a cluster that never heard of it) Watch inserts it again, unless Leave
// was called. Watch also removes the entries of participants gone from
// the catalog for goneAfter, who could not remove themselves. emit is called from two goroutines, never at once, and must
// not block for long. Watch returns ctx's error, or nil once the
// collections are closed.
func (p *Participant) Watch(ctx context.Context, known map[string]User, shown int, emit func(Event)) error {
	var mu sync.Mutex
	one := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		emit(e)
	}
	errs := make(chan error, 2)
	go func() { errs <- p.watchUsers(ctx, maps.Clone(known), one) }()
	go func() { errs <- p.watchMessages(ctx, shown, one) }()
	return errors.Join(<-errs, <-errs)
}

func (p *Participant) watchUsers(ctx context.Context, known map[string]User, emit func(Event)) error {
	missing := map[string]time.Time{} // since when a listed peer is not in the catalog
	for {
		seen := p.users.Version()
		cur := p.Users()
		for id, u := range cur {
			if _, ok := known[id]; !ok && id != p.id {
				emit(Event{Kind: Joined, ID: id, User: u})
			}
		}
		for id, u := range known {
			if _, ok := cur[id]; !ok && id != p.id {
				emit(Event{Kind: Left, ID: id, User: u})
			}
		}
		known = cur
		if _, ok := cur[p.id]; !ok && !p.leaving.Load() {
			// Failure is retried at the next change or recheck.
			rctx, cancel := context.WithTimeout(ctx, recheck)
			_ = p.register(rctx)
			cancel()
		}
		if gone := p.gone(cur, missing, time.Now()); len(gone) > 0 {
			// Every participant may do this; removing twice is harmless.
			rctx, cancel := context.WithTimeout(ctx, recheck)
			_ = retry(rctx, p.users.When(), func() error {
				_, err := p.users.RemoveMany(rctx, gone)
				return err
			})
			cancel()
		}
		if err := changed(ctx, p.users.When(), p.users.Version, seen); err != nil {
			return done(ctx, err)
		}
	}
}

// gone returns the listed participants missing from the catalog for
// goneAfter, tracking since when each is missing in missing.
func (p *Participant) gone(listed map[string]User, missing map[string]time.Time, now time.Time) []string {
	snap := p.catalog()
	var out []string
	for id := range listed {
		pid, err := peer.Decode(id)
		if id == p.id || err != nil {
			continue
		}
		if _, ok := snap.Get(pid); ok {
			delete(missing, id)
			continue
		}
		since, ok := missing[id]
		if !ok {
			missing[id] = now
		} else if now.Sub(since) >= goneAfter {
			out = append(out, id)
		}
	}
	for id := range missing {
		if _, ok := listed[id]; !ok {
			delete(missing, id)
		}
	}
	return out
}

func (p *Participant) watchMessages(ctx context.Context, shown int, emit func(Event)) error {
	for {
		seen := p.msgs.version()
		all := p.msgs.all()
		if len(all) < shown {
			emit(Event{Kind: Rewritten})
			shown = len(all)
		}
		for _, m := range all[shown:] {
			emit(Event{Kind: Said, Msg: m})
		}
		shown = len(all)
		if err := changed(ctx, p.msgs.when(), p.msgs.version, seen); err != nil {
			return done(ctx, err)
		}
	}
}

// changed returns once the collection's version is no longer seen (at
// once if it already moved), or after recheck.
func changed(ctx context.Context, w collections.When, version func() collections.Version, seen collections.Version) error {
	if version() != seen {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, recheck)
	defer cancel()
	_, err := w.Updated(wctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// done turns the end of a watch loop into Watch's result.
func done(ctx context.Context, err error) error {
	if errors.Is(err, collections.ErrTerminated) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
