package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
)

// progressEvery is how often produce redraws its progress line.
const progressEvery = time.Second

// progressWriter is where produce reports its progress: stderr when it is
// a terminal and the logs are text, else nowhere (nil), so that a piped
// or logged stderr holds only log records.
func progressWriter(env Env, logFormat string) io.Writer {
	f, ok := env.Stderr.(*os.File)
	if !ok || logFormat != "text" || !isatty.IsTerminal(f.Fd()) {
		return nil
	}
	return f
}

// progress is produce's status line on a terminal: lines sent, the rate
// since the last redraw, and the consumers subscribed.
type progress struct {
	w              io.Writer
	start, last    time.Time
	lastSent, sent int
}

func newProgress(w io.Writer, now time.Time) *progress {
	return &progress{w: w, start: now, last: now}
}

// line is the status line at now, without the carriage return.
func (p *progress) line(now time.Time, subscribers int) string {
	rate := 0.0
	if d := now.Sub(p.last).Seconds(); d > 0 {
		rate = float64(p.sent-p.lastSent) / d
	}
	p.last, p.lastSent = now, p.sent
	return fmt.Sprintf("sent %d lines, %.0f lines/s, %d subscribers, %s", p.sent, rate, subscribers, now.Sub(p.start).Round(time.Second))
}

// draw redraws the status line in place (\r and an erase to the end of
// the line).
func (p *progress) draw(now time.Time, subscribers int) {
	if p.w != nil {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(now, subscribers))
	}
}

// done ends the status line so that the logs that follow start on a line
// of their own.
func (p *progress) done(now time.Time, subscribers int) {
	if p.w != nil {
		p.draw(now, subscribers)
		fmt.Fprintln(p.w)
	}
}
