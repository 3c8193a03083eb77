package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestGroupChat_Demo runs the demo as `go run ./examples/groupchat` does:
// three participants on loopback join, talk in turn and all at once, and
// carol leaves. Everyone holds every message in the same order, and carol
// is gone from the others' users maps and was reported as leaving.
// mosaik: examples/group-chat.rs
func TestGroupChat_Demo(t *testing.T) {
	t.Parallel() // each waits on consensus timers more than on the CPU
	var out bytes.Buffer
	sum, err := runDemo(context.Background(), testutil.Scale(60*time.Second), &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Histories) != 3 || len(sum.Sent) != 6 {
		t.Fatalf("%d histories, %d messages sent; want 3 and 6", len(sum.Histories), len(sum.Sent))
	}
	for i, h := range sum.Histories {
		if !slices.Equal(h, sum.Histories[0]) {
			t.Errorf("history %d differs:\n%v\nfrom\n%v", i, h, sum.Histories[0])
		}
	}
	key := func(m Message) string { return m.Peer + "|" + m.From + "|" + m.Text }
	got := slices.Sorted(slices.Values(mapSlice(sum.Histories[0], key)))
	want := slices.Sorted(slices.Values(mapSlice(sum.Sent, key)))
	if !slices.Equal(got, want) {
		t.Errorf("history holds %v, sent %v", got, want)
	}
	// The three turns were sent one after another: they come first, in
	// that order.
	for i, text := range []string{"hi all, bob here", "hello bob! carol", "welcome both"} {
		if sum.Histories[0][i].Text != text {
			t.Errorf("message %d is %q, want %q", i, sum.Histories[0][i].Text, text)
		}
	}
	for i, us := range sum.Users {
		names := slices.Sorted(maps.Keys(nickIndex(us)))
		if !slices.Equal(names, []string{"alice", "bob"}) {
			t.Errorf("replica %d lists %v after carol left", i, names)
		}
	}
	if !slices.Equal(sum.SawLeave, []bool{true, true}) {
		t.Errorf("saw carol leave: %v", sum.SawLeave)
	}
}

func mapSlice[T, U any](ts []T, f func(T) U) []U {
	out := make([]U, 0, len(ts))
	for _, t := range ts {
		out = append(out, f(t))
	}
	return out
}

func nickIndex(us map[string]User) map[string]bool {
	out := map[string]bool{}
	for _, u := range us {
		out[u.Nickname] = true
	}
	return out
}

// syncBuffer is an io.Writer the test reads while a participant writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// terminal is one participant run as main runs it, with a pipe for stdin.
type terminal struct {
	in   *io.PipeWriter
	out  *syncBuffer
	p    chan *Participant
	done chan error
}

func startTerminal(t *testing.T, ctx context.Context, dir, name string) *terminal {
	t.Helper()
	cfg := defaultConfig()
	cfg.Name, cfg.Color, cfg.Dir = name, 0, dir
	cfg.Log = testutil.Logger()
	r, w := io.Pipe()
	term := &terminal{in: w, out: &syncBuffer{}, p: make(chan *Participant, 1), done: make(chan error, 1)}
	cfg.joined = func(p *Participant) { term.p <- p }
	go func() { term.done <- runChat(ctx, cfg, r, term.out) }()
	t.Cleanup(func() { _ = w.Close() })
	return term
}

func (term *terminal) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(term.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (term *terminal) shows(t *testing.T, text string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(term.out.String(), text) },
		"the terminal never shows %q; it shows:\n%s", text, term.out)
}

// TestGroupChat_Terminals runs two participants as two terminals would
// (`-name alice`, `-name bob`, nothing else but a shared meeting
// directory): they find each other through it, the late one gets the
// history, lines typed in one show in the other, and a participant that
// quits (Ctrl-D) is reported as gone and removed from the users map.
// mosaik: examples/group-chat.rs
func TestGroupChat_Terminals(t *testing.T) {
	t.Parallel() // each waits on consensus timers more than on the CPU
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(60*time.Second))
	defer cancel()
	dir := t.TempDir()
	alice := startTerminal(t, ctx, dir, "alice")
	alice.shows(t, "--- type a line")
	alice.typeLine(t, "is anyone here?")
	alice.shows(t, "alice: is anyone here?")

	bob := startTerminal(t, ctx, dir, "bob")
	bob.shows(t, "--- 1 message(s) in history ---\nalice: is anyone here?\n")
	bob.shows(t, "--- 2 participant(s): alice, bob ---")
	alice.shows(t, "* bob joined")
	bob.typeLine(t, "hi alice")
	alice.shows(t, "bob: hi alice")
	bob.typeLine(t, "/who")
	bob.shows(t, "--- 2 participant(s): alice, bob ---\n")

	pa := <-alice.p
	_ = bob.in.Close() // Ctrl-D
	if err := <-bob.done; err != nil {
		t.Fatal("bob:", err)
	}
	bob.shows(t, `left room "lobby"`)
	alice.shows(t, "* bob left")
	if us := pa.Users(); len(us) != 1 || us[pa.ID()].Nickname != "alice" {
		t.Errorf("alice's users map after bob left: %v", us)
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Errorf("bob left his file in the meeting directory: %v", files)
	}
	_ = alice.in.Close()
	if err := <-alice.done; err != nil {
		t.Fatal("alice:", err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("files left in the meeting directory: %v", files)
	}
}

func TestReadAddrFile(t *testing.T) {
	dir := t.TempDir()
	const id = "12D3KooWHhZt5mw4L1B5Kdrne4y3GzHXqbfhc8NqtmxJYt9ASm5k"
	const other = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
	pid, err := peer.Decode(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, body string
		ok         bool
	}{
		{"loopback", "/ip4/127.0.0.1/tcp/4001/p2p/" + id + "\n", true},
		{"two", "/ip4/127.0.0.1/tcp/4001/p2p/" + id + "\n/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + id + "\n", true},
		{"lan", "/ip4/192.168.1.2/tcp/4001/p2p/" + id + "\n", false},
		{"other peer", "/ip4/127.0.0.1/tcp/4001/p2p/" + other + "\n", false},
		{"no p2p", "/ip4/127.0.0.1/tcp/4001\n", false},
		{"garbage", "hello\n", false},
		{"empty", "", false},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		pi, err := readAddrFile(path, pid)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, %v", c.name, pi, err)
		}
	}
	if got := pathSafe("a/b\\c"); got != "a_b_c" {
		t.Errorf("pathSafe: %q", got)
	}
}

// TestGroupChat_GoneWithoutLeaving: a participant whose node goes away
// without removing itself from the users map (a killed process) is
// removed by the others once the catalog no longer lists it, and reported
// as gone.
func TestGroupChat_GoneWithoutLeaving(t *testing.T) {
	t.Parallel() // each waits on consensus timers more than on the CPU
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(60*time.Second))
	defer cancel()
	cfg := defaultConfig()
	cfg.Log = testutil.Logger()
	start := func(boot *node.Node) (*node.Node, *Participant) {
		opts := nodeOptions(cfg.Listen, cfg.Log)
		if boot != nil {
			opts = append(opts, node.WithBootstrapPeers(boot.AddrInfo()))
		}
		n, err := node.New(networkName("gone-test"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		p, err := Join(ctx, n, User{Nickname: "p" + n.ID().String()[len(n.ID().String())-4:]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return n, p
	}
	na, alice := start(nil)
	nb, bob := start(na)
	left := make(chan Event, 8)
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() {
		watched <- alice.Watch(wctx, alice.Users(), 0, func(e Event) {
			if e.Kind == Left {
				left <- e
			}
		})
	}()
	defer func() { stop(); <-watched }()
	testutil.Eventually(t, 20*time.Second, func() bool { _, ok := alice.Users()[bob.ID()]; return ok }, "alice never lists bob")

	// bob's process is killed: its host dies with no departure notice and
	// no leave (node.Close would send both; the cleanup closes the rest).
	if err := nb.Host().Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-left:
		if e.ID != bob.ID() {
			t.Fatalf("left: %+v, want bob", e)
		}
	case <-ctx.Done():
		t.Fatalf("alice never saw bob go; she lists %v", alice.Users())
	}
	if us := alice.Users(); len(us) != 1 {
		t.Errorf("alice lists %v after bob went", us)
	}
}
