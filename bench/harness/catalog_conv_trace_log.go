package harness

// The convergence trace's slog handlers: the records each traced node's
// discovery service logs become the time line of convTrace.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

func (t *convTrace) logger(i int) *slog.Logger {
	if t == nil {
		return quiet
	}
	return slog.New(&convTraceHandler{t: t, i: i})
}

type convTraceHandler struct {
	t *convTrace
	i int
}

func (h *convTraceHandler) Enabled(context.Context, slog.Level) bool { return true }

// peerAttr is the record's "peer" attribute ("" when it has none).
func peerAttr(r slog.Record) string {
	var p string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "peer" {
			p = a.Value.String()
		}
		return true
	})
	return p
}

func (h *convTraceHandler) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "peer discovered", "peer discovered on gossip":
	case "peer identified", "peer connectedness", "sync started", "sync stream opened":
		p := peerAttr(r)
		h.t.mu.Lock()
		defer h.t.mu.Unlock()
		if j, ok := h.t.ids[p]; ok && j == 0 {
			k := fmt.Sprintf("%d %s", h.i, r.Message) // the first of each, with the bootstrap peer
			if _, seen := h.t.steps[k]; !seen {
				h.t.steps[k] = r.Time.Sub(h.t.start)
			}
		}
		return nil
	case "sync failed", "sync not served", "sync refused", "announce failed", "connect to catalog peer failed", "relay dropped", "gossip message refused":
		h.t.mu.Lock()
		h.t.syncs[r.Message]++
		h.t.mu.Unlock()
		return nil
	case "entry relayed", "topic peer joined":
		if h.i != 0 {
			return nil
		}
		p := peerAttr(r)
		h.t.mu.Lock()
		defer h.t.mu.Unlock()
		j, ok := h.t.ids[p]
		if !ok {
			return nil
		}
		m := h.t.relayAt
		if r.Message == "topic peer joined" {
			m = h.t.subAt
		}
		if _, seen := m[j]; !seen {
			m[j] = r.Time.Sub(h.t.start)
		}
		return nil
	default:
		return nil
	}
	var p, via, from string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "peer":
			p = a.Value.String()
		case "via":
			via = a.Value.String()
		case "from":
			from = a.Value.String()
		}
		return true
	})
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	j, ok := h.t.ids[p]
	if !ok {
		j = -1 - len(h.t.ids) // not started yet in our books: resolved at dump
		h.t.ids[p] = j
	}
	k := [2]int{h.i, j}
	if r.Message == "peer discovered" {
		if _, seen := h.t.learn[k]; !seen {
			h.t.learn[k] = convLearn{at: r.Time.Sub(h.t.start), via: via}
		}
	} else if _, seen := h.t.gfrom[k]; !seen {
		h.t.gfrom[k] = from
	}
	return nil
}

// WithAttrs drops gossipsub's records (its RPC trace would cost more
// than the rest of the node's logging).
func (h *convTraceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "pubsub" {
			if os.Getenv(convTraceEnv) == "3" {
				return convDropHandler{h.t, h.i}
			}
			return slog.DiscardHandler
		}
	}
	return h
}

// convDropHandler counts pubsub's records of messages it dropped or
// throttled, by message.
type convDropHandler struct {
	t *convTrace
	i int
}

func (h convDropHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h convDropHandler) Handle(_ context.Context, r slog.Record) error {
	m := r.Message
	if strings.Contains(m, "drop") || strings.Contains(m, "throttl") || strings.Contains(m, "full") || strings.Contains(m, "ignor") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" {
				m += ": " + strings.SplitN(a.Value.String(), ".", 2)[0]
			}
			return true
		})
		if h.i == 0 {
			m = "boot " + m
		}
		h.t.mu.Lock()
		h.t.drops[m]++
		h.t.mu.Unlock()
	}
	return nil
}
func (h convDropHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h convDropHandler) WithGroup(string) slog.Handler      { return h }
func (h *convTraceHandler) WithGroup(string) slog.Handler    { return h }
