package harness

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// sybilTraceEnv turns on the sybil row's trace of the newcomer: when and
// by which path (the discovery service's "via": a sync hello, gossip) each
// honest node merged the newcomer's entry, and whether a full catalog
// evicted it. It costs a log record per Debug call of the honest nodes, so
// the numbers of a traced run are not the row's.
const sybilTraceEnv = "MOSAIK_BENCH_SYBIL_TRACE"

// sybilTrace collects the honest nodes' debug records about one peer.
type sybilTrace struct {
	mu     sync.Mutex
	start  time.Time
	target string
	lines  []string
}

func newSybilTrace() *sybilTrace {
	if os.Getenv(sybilTraceEnv) == "" {
		return nil
	}
	return &sybilTrace{}
}

// watch starts recording the records about id from now on.
func (t *sybilTrace) watch(id string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.start, t.target, t.lines = time.Now(), id, nil
	t.mu.Unlock()
}

// note records a harness event.
func (t *sybilTrace) note(format string, args ...any) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.target != "" {
		t.lines = append(t.lines, fmt.Sprintf("%8.1f ms harness: %s", float64(time.Since(t.start).Microseconds())/1e3, fmt.Sprintf(format, args...)))
	}
}

// logger is a node's logger: quiet unless tracing. all records every
// record of the node but gossipsub's (the newcomer's own).
func (t *sybilTrace) logger(node string, all bool) *slog.Logger {
	if t == nil {
		return quiet
	}
	return slog.New(&sybilTraceHandler{t: t, node: node, all: all})
}

func (t *sybilTrace) dump(w *os.File) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	slices.Sort(t.lines)
	fmt.Fprintf(w, "trace of newcomer %s:\n  %s\n", t.target, strings.Join(t.lines, "\n  "))
}

type sybilTraceHandler struct {
	t     *sybilTrace
	node  string
	all   bool // the newcomer's own node: record its discovery and node records too
	attrs []slog.Attr
}

func (h *sybilTraceHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *sybilTraceHandler) Handle(_ context.Context, r slog.Record) error {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	if h.t.target == "" {
		return nil
	}
	hit := false
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "rpc" {
			hit = false // gossipsub's RPC trace: noise here
			b.WriteString(" rpc=")
			return false
		}
		v := a.Value.String()
		if strings.Contains(v, h.t.target) {
			hit = true
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	})
	if h.all && !strings.HasPrefix(r.Message, "gossip message refused") && !strings.Contains(b.String(), " rpc=") && !strings.Contains(r.Message, ":") {
		hit = true
	}
	if hit {
		h.t.lines = append(h.t.lines, fmt.Sprintf("%8.1f ms %s: %s%s", float64(r.Time.Sub(h.t.start).Microseconds())/1e3, h.node, r.Message, b.String()))
	}
	return nil
}

func (h *sybilTraceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sybilTraceHandler{t: h.t, node: h.node, all: h.all, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *sybilTraceHandler) WithGroup(string) slog.Handler { return h }
