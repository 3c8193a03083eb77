package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func stderrLoggerAt(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// lockedBuf is a bytes.Buffer safe for a command's goroutines and a test.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestProgress_LineAndPipes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newProgress(nil, t0)
	p.sent = 50
	if got := p.line(t0.Add(2*time.Second), 3); got != "sent 50 lines, 25 lines/s, 3 subscribers, 2s" {
		t.Fatalf("line = %q", got)
	}
	p.sent = 60
	if got := p.line(t0.Add(3*time.Second), 1); got != "sent 60 lines, 10 lines/s, 1 subscribers, 3s" {
		t.Fatalf("line = %q", got)
	}
	var b bytes.Buffer
	if w := progressWriter(Env{Stderr: &b}, "text"); w != nil {
		t.Fatal("progress on a stderr that is not a terminal")
	}
	p = newProgress(&b, t0)
	p.draw(t0, 0)
	p.done(t0, 0)
	if !strings.HasPrefix(b.String(), "\rsent 0 lines") || !strings.HasSuffix(b.String(), "\n") {
		t.Fatalf("drawn %q", b.String())
	}
}

// TestProduce_OversizeLine checks that a stdin line over the 4 MiB limit
// ends produce with exit 1 and an error naming the line and the limit,
// not a silent drop.
func TestProduce_OversizeLine(t *testing.T) {
	in := strings.Repeat("x", 10) + "\n" + strings.Repeat("y", 4<<20) + "\n"
	var out, errOut bytes.Buffer
	e := env(&out, &errOut, nil)
	e.Stdin = strings.NewReader(in)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Main(ctx, []string{"produce", "s", "--network", "x", "--listen", "/ip4/127.0.0.1/tcp/0", "--online-min", "0", "--log-level", "error"}, e)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut.String())
	}
	for _, want := range []string{"stdin line too long", "line 2 is longer than 4194288 bytes", "4194304-byte frame", "the 1 lines before it were sent"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, errOut.String())
		}
	}
}

// readLines takes a line of exactly the maximum, ended by "\n" or "\r\n"
// (the scanner's buffer must hold the line's end too), and refuses one
// byte more with bufio.ErrTooLong.
func TestReadLines_TheMaximumFits(t *testing.T) {
	const maxLine = 1000
	for _, end := range []string{"\n", "\r\n", ""} {
		for _, n := range []int{maxLine, maxLine + 1} {
			src, readErr := readLines(strings.NewReader(strings.Repeat("x", n)+end), maxLine, nil)
			var got []int
			for l := range src {
				got = append(got, len(l))
			}
			if n <= maxLine && (*readErr != nil || len(got) != 1 || got[0] != n) {
				t.Errorf("line of %d bytes ended %q: lines %v, err %v; want it read", n, end, got, *readErr)
			}
			if n > maxLine && (!errors.Is(*readErr, bufio.ErrTooLong) || len(got) != 0) {
				t.Errorf("line of %d bytes ended %q: lines %v, err %v; want ErrTooLong", n, end, got, *readErr)
			}
		}
	}
}
