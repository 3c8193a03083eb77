package main

import (
	"context"
	"slices"

	"github.com/mosaik-go/mosaik/collections"
)

// Messages is the room's history, in the order the group committed it:
// the same on every replica.
var Messages = collections.VecDef[Message]("mosaik.example.group-chat.messages", chatGroup)

// history is the room's messages: a writer replica of the Vec.
type history struct {
	v *collections.Vec[Message]
}

func openHistory(h collections.Host) (*history, error) {
	v, err := Messages.Writer(h)
	if err != nil {
		return nil, err
	}
	return &history{v: v}, nil
}

// push appends msg to the history.
func (h *history) push(ctx context.Context, msg Message) (collections.Version, error) {
	return h.v.PushBack(ctx, msg)
}

// all returns the messages of one state, in order.
func (h *history) all() []Message { return slices.Collect(h.v.Values()) }

func (h *history) version() collections.Version { return h.v.Version() }
func (h *history) when() collections.When       { return h.v.When() }
func (h *history) close() error                 { return h.v.Close() }
func (h *history) sync(ctx context.Context) (collections.Version, error) {
	return h.v.Sync(ctx)
}
