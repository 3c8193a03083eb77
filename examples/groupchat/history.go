package main

import (
	"context"
	"slices"

	"github.com/mosaik-go/mosaik/collections"
)

// Messages is the room's history, in the order the group committed it.
var Messages = collections.MapDef[uint64, Message]("mosaik.example.group-chat.messages", chatGroup)

// history is the room's messages: a map from a dense sequence number to
// the message, ordered by key.
type history struct {
	m *collections.Map[uint64, Message]
}

func openHistory(h collections.Host) (*history, error) {
	m, err := Messages.Writer(h)
	if err != nil {
		return nil, err
	}
	return &history{m: m}, nil
}

// push claims the next free number with a compare-and-swap (absent → msg),
// retrying after a lost race: the local state holds the winner once the
// swap returns, so the next attempt takes the number after it.
func (h *history) push(ctx context.Context, msg Message) (collections.Version, error) {
	for {
		ok, v, err := h.m.CompareAndSwap(ctx, uint64(h.m.Len()), nil, &msg)
		if err != nil || ok {
			return v, err
		}
	}
}

func (h *history) all() []Message                                        { return slices.Collect(h.m.Values()) }
func (h *history) version() collections.Version                          { return h.m.Version() }
func (h *history) when() collections.When                                { return h.m.When() }
func (h *history) sync(ctx context.Context) (collections.Version, error) { return h.m.Sync(ctx) }
func (h *history) close() error                                          { return h.m.Close() }
