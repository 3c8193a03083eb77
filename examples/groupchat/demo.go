package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

// demoSummary is what the demo found; the test checks it.
type demoSummary struct {
	// Histories is each participant's history at the end, alice, bob,
	// carol (carol's when she left).
	Histories [][]Message
	// Sent is every message sent, in no particular order.
	Sent []Message
	// Users is alice's and bob's users map after carol left.
	Users []map[string]User
	// SawLeave says whether alice's and bob's watches reported carol
	// leaving.
	SawLeave []bool
}

// watcher records the events one participant's Watch reports, and prints
// them when it is the demo's screen.
type watcher struct {
	name   string
	screen *printer // nil: not printed
	mu     sync.Mutex
	events []Event
	change chan struct{} // closed and replaced on every event
}

func (w *watcher) emit(e Event) {
	if w.screen != nil {
		w.screen.printf("  %s │ ", w.name)
		w.screen.event(e)
	}
	w.mu.Lock()
	w.events = append(w.events, e)
	close(w.change)
	w.change = make(chan struct{})
	w.mu.Unlock()
}

// await waits until an event matches.
func (w *watcher) await(ctx context.Context, match func(Event) bool) error {
	for {
		w.mu.Lock()
		found := slices.ContainsFunc(w.events, match)
		ch := w.change
		w.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", w.name, ctx.Err())
		}
	}
}

// runDemo runs a room of three participants in this process (alice, bob
// and carol, on 127.0.0.1) through a short conversation: they join one
// after the other, talk in turn, all type at once, and carol leaves. It
// prints alice's screen and checks that everyone holds the same history.
func runDemo(ctx context.Context, timeout time.Duration, out io.Writer) (sum demoSummary, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pr := &printer{w: out}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()
	cfg := defaultConfig()
	names := []string{"alice", "bob", "carol"}
	var (
		ps   []*Participant
		ws   []*watcher
		boot *node.Node
		wg   sync.WaitGroup
	)
	wctx, stopWatch := context.WithCancel(ctx)
	closers = append(closers, func() error { stopWatch(); wg.Wait(); return nil })
	pr.printf("a room with alice, bob and carol, each a node on 127.0.0.1 in this process; alice's screen is shown\n")
	pr.printf("(run it with -name NAME in several terminals to chat yourself)\n\n")
	for i, name := range names {
		opts := nodeOptions(cfg.Listen, cfg.Log)
		if boot != nil {
			opts = append(opts, node.WithBootstrapPeers(boot.AddrInfo()))
		}
		pr.printf("%s joins\n", name)
		n, err := node.New(networkName("demo"), opts...)
		if err != nil {
			return sum, err
		}
		closers = append(closers, n.Close)
		if boot == nil {
			boot = n
		}
		p, err := Join(ctx, n, User{Nickname: name})
		if err != nil {
			return sum, fmt.Errorf("%s: join: %w", name, err)
		}
		closers = append(closers, p.Close)
		w := &watcher{name: name, change: make(chan struct{})}
		if i == 0 {
			w.screen = pr
		}
		users, history := p.Users(), p.Messages()
		wg.Go(func() { _ = p.Watch(wctx, users, len(history), w.emit) })
		ps, ws = append(ps, p), append(ws, w)
		pr.printf("%s is in as peer %s and sees %d participant(s), %d message(s) in history\n", name, short(p.ID()), len(users), len(history))
		// Wait until alice's screen shows the newcomer, so the screen
		// follows the story.
		if i > 0 {
			if err := ws[0].await(ctx, func(e Event) bool { return e.Kind == Joined && e.ID == p.ID() }); err != nil {
				return sum, err
			}
		}
	}

	// Everyone has seen a message once every replica reaches its version.
	seenByAll := func(v collections.Version) error {
		for _, p := range ps {
			if err := p.HasMessages(ctx, v); err != nil {
				return fmt.Errorf("%s did not see the message: %w", p.Me().Nickname, err)
			}
		}
		return nil
	}
	say := func(p *Participant, text string) error {
		pr.printf("%s types %q\n", p.Me().Nickname, text)
		v, err := p.Say(ctx, text)
		if err != nil {
			return fmt.Errorf("%s: say: %w", p.Me().Nickname, err)
		}
		sum.Sent = append(sum.Sent, Message{From: p.Me().Nickname, Peer: p.ID(), Text: text})
		return seenByAll(v)
	}
	for _, s := range []struct {
		who  int
		text string
	}{{1, "hi all, bob here"}, {2, "hello bob! carol"}, {0, "welcome both"}} {
		if err := say(ps[s.who], s.text); err != nil {
			return sum, err
		}
	}

	pr.printf("\nall three type at the same moment: the group puts their lines in one order, the same for everyone\n")
	var (
		mu   sync.Mutex
		last collections.Version
		errs []error
		twg  sync.WaitGroup
	)
	for _, p := range ps {
		text := "at once from " + p.Me().Nickname
		twg.Go(func() {
			v, err := p.Say(ctx, text)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			last = max(last, v)
			if err == nil {
				sum.Sent = append(sum.Sent, Message{From: p.Me().Nickname, Peer: p.ID(), Text: text})
			}
		})
	}
	twg.Wait()
	if err := errors.Join(errs...); err != nil {
		return sum, err
	}
	if err := seenByAll(last); err != nil {
		return sum, err
	}
	// The screen prints each message once its watch sees it.
	for _, m := range sum.Sent {
		if err := ws[0].await(ctx, func(e Event) bool { return e.Kind == Said && e.Msg.Text == m.Text }); err != nil {
			return sum, err
		}
	}
	for _, p := range ps {
		sum.Histories = append(sum.Histories, p.Messages())
	}

	carol := ps[2]
	pr.printf("\ncarol leaves: she removes herself from the users map and closes\n")
	v, err := carol.Leave(ctx)
	if err != nil {
		return sum, fmt.Errorf("carol: leave: %w", err)
	}
	if err := carol.Close(); err != nil {
		return sum, err
	}
	for i, p := range ps[:2] {
		if err := p.HasUsers(ctx, v); err != nil {
			return sum, fmt.Errorf("%s: %w", p.Me().Nickname, err)
		}
		sum.Users = append(sum.Users, p.Users())
		err := ws[i].await(ctx, func(e Event) bool { return e.Kind == Left && e.ID == carol.ID() })
		sum.SawLeave = append(sum.SawLeave, err == nil)
		if err != nil {
			return sum, err
		}
	}
	same := true
	for _, h := range sum.Histories[1:] {
		same = same && slices.Equal(h, sum.Histories[0])
	}
	pr.printf("\n%d messages; alice, bob and carol hold them in the same order: %v; still in the room: %s\n",
		len(sum.Histories[0]), same, strings.Join(nicknames(sum.Users[0]), ", "))
	return sum, nil
}

// short abbreviates a peer id.
func short(s string) string {
	if len(s) <= 10 {
		return s
	}
	return "…" + s[len(s)-6:]
}
