package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mosaik-go/mosaik/node"
)

// config is one participant's settings (the flags of main).
type config struct {
	Name   string
	Color  uint8
	Room   string
	Dir    string   // where participants on this machine meet; "" for defaultDir(Room)
	Peers  []string // more bootstrap addresses (multiaddrs ending in /p2p/<id>)
	Listen string
	// JoinTimeout bounds joining; LeaveTimeout bounds removing ourselves
	// on exit; SayTimeout bounds sending one line.
	JoinTimeout, LeaveTimeout, SayTimeout time.Duration
	EraseEcho                             bool // erase the typed line (a terminal echoes it)
	Log                                   *slog.Logger
	// joined, when set, is called with the participant once it joined
	// (tests look at its replicas).
	joined func(*Participant)
}

func defaultConfig() config {
	return config{
		Color: 32, Room: "lobby", Listen: "/ip4/127.0.0.1/tcp/0",
		JoinTimeout: 60 * time.Second, LeaveTimeout: 5 * time.Second, SayTimeout: 10 * time.Second,
		Log: slog.New(slog.DiscardHandler),
	}
}

// networkName is the mosaik network of a room: each room is its own
// network, so rooms never see each other's collections.
func networkName(room string) string { return "mosaik-groupchat/" + room }

// nodeOptions are the options of every participant's node.
func nodeOptions(listen string, log *slog.Logger) []node.Option {
	return []node.Option{node.WithListenAddrs(listen), node.WithFastProfile(), node.WithoutDHT(), node.WithLogger(log)}
}

// printer serialises lines from the input loop and the watch.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// paint colours s with an ANSI colour code (none for 0).
func paint(s string, color uint8) string {
	if color == 0 {
		return s
	}
	return fmt.Sprintf("\x1b[%dm%s\x1b[0m", color, s)
}

func (p *printer) event(e Event) {
	switch e.Kind {
	case Joined:
		p.printf("* %s joined\n", paint(e.User.Nickname, e.User.Color))
	case Left:
		p.printf("* %s left\n", paint(e.User.Nickname, e.User.Color))
	case Said:
		p.printf("%s: %s\n", paint(e.Msg.From, e.Msg.Color), e.Msg.Text)
	case Rewritten:
		p.printf("* the history was replaced by another cluster's (a merge)\n")
	}
}

// nicknames returns the sorted, coloured nicknames of us.
func nicknames(us map[string]User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, paint(u.Nickname, u.Color))
	}
	slices.Sort(out)
	return out
}

// runChat is one participant: it joins cfg.Room, prints the participants
// and the history, sends each line of in, prints what happens in the room
// to out, and on ctx's end or in's end removes itself and leaves.
func runChat(ctx context.Context, cfg config, in io.Reader, out io.Writer) (err error) {
	pr := &printer{w: out}
	opts := nodeOptions(cfg.Listen, cfg.Log)
	if len(cfg.Peers) > 0 {
		opts = append(opts, node.WithBootstrap(cfg.Peers...))
	}
	n, err := node.New(networkName(cfg.Room), opts...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	dir := cfg.Dir
	if dir == "" {
		dir = defaultDir(cfg.Room)
	}
	pr.printf("joining room %q as %s ...\nlocal peer id: %s\n", cfg.Room, paint(cfg.Name, cfg.Color), n.ID())
	local, err := openLocalDir(ctx, dir, n, cfg.Log)
	if err != nil {
		return fmt.Errorf("local directory %s: %w", dir, err)
	}
	defer func() { err = errors.Join(err, local.Close()) }()

	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	p, err := Join(jctx, n, User{Nickname: cfg.Name, Color: cfg.Color})
	cancel()
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	if cfg.joined != nil {
		cfg.joined(p)
	}
	users, history := p.Users(), p.Messages()
	pr.printf("--- %d participant(s): %s ---\n", len(users), strings.Join(nicknames(users), ", "))
	if len(history) > 0 {
		pr.printf("--- %d message(s) in history ---\n", len(history))
		for _, m := range history {
			pr.event(Event{Kind: Said, Msg: m})
		}
	}
	pr.printf("--- type a line to send it, /who to list the participants, Ctrl-C or Ctrl-D to quit ---\n")

	lines := make(chan string)
	go func() {
		// Ends with in (EOF or error); on Ctrl-C the process exits.
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- p.Watch(wctx, users, len(history), pr.event) }()

	chat(ctx, cfg, p, pr, lines)

	stopWatch()
	<-watched
	lctx, cancel := context.WithTimeout(context.Background(), cfg.LeaveTimeout)
	defer cancel()
	if _, err := p.Leave(lctx); err != nil {
		pr.printf("could not remove ourselves from the users map (the others will still list us): %v\n", err)
	} else {
		pr.printf("left room %q\n", cfg.Room)
	}
	return nil
}

// chat sends lines until ctx ends or lines closes.
func chat(ctx context.Context, cfg config, p *Participant, pr *printer, lines <-chan string) {
	for {
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return
		case line, ok = <-lines:
			if !ok {
				return
			}
		}
		if cfg.EraseEcho {
			// The terminal echoed the line; the room prints it back
			// once committed, in its place in the history.
			pr.printf("\x1b[1A\x1b[2K\r")
		}
		switch text := strings.TrimSpace(line); {
		case text == "":
		case text == "/who":
			us := p.Users()
			pr.printf("--- %d participant(s): %s ---\n", len(us), strings.Join(nicknames(us), ", "))
		default:
			sctx, cancel := context.WithTimeout(ctx, cfg.SayTimeout)
			if _, err := p.Say(sctx, line); err != nil {
				pr.printf("! not sent (%v): %s\n", err, line)
			}
			cancel()
		}
	}
}
