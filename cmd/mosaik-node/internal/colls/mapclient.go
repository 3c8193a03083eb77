package colls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mosaik-go/mosaik/collections"
)

// Errors of the map client. Each wraps the cause, so errors.Is also finds
// collections.ErrOffline or a context error.
var (
	// ErrNoWriter: no leader of the map was reached before ctx ended, so
	// nothing was written or read.
	ErrNoWriter = errors.New("no writer reachable")
	// ErrUnconfirmed: a leader was reached but the write was not confirmed
	// before ctx ended; it may still commit.
	ErrUnconfirmed = errors.New("write not confirmed")
	// ErrNotFound: get of a key the map does not hold.
	ErrNotFound = errors.New("key not found")
)

// retryPause spaces retries of a write or a sync while a leader change is
// under way (the group reports offline until a new leader is known).
const retryPause = 100 * time.Millisecond

// MapClient is a short-lived replica of a Map[string, string], opened to
// run one command. It is a collections.WithoutVote writer: a raft learner
// that forwards writes to the leader, so a client neither bootstraps a
// cluster of its own (a put with no writer fails instead of succeeding
// alone) nor joins the voter set (its coming and going never moves the
// quorum; the leader drops the dead learner after the group's
// RemoveAfter). The price is that a write returns once applied on the
// client, which catches up with the map first: fine for the maps a command
// line handles. Not safe for concurrent use by several commands.
type MapClient struct {
	name string
	m    *collections.Map[string, string]
}

// OpenMap opens the map called name on h as a client.
func OpenMap(h collections.Host, name string, opts ...collections.Option) (*MapClient, error) {
	m, err := collections.NewMap[string, string](h, name, append(slices.Clone(opts), collections.WithoutVote())...)
	if err != nil {
		return nil, err
	}
	return &MapClient{name: name, m: m}, nil
}

// Close leaves the map. Idempotent.
func (c *MapClient) Close() error { return c.m.Close() }

// Leader returns the map's leader as this client knows it ("" if none).
func (c *MapClient) Leader() string {
	if p, ok := c.m.Leader(); ok {
		return p.String()
	}
	return ""
}

// online waits for a leader until ctx ends.
func (c *MapClient) online(ctx context.Context) error {
	if err := c.m.When().Online(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: no leader of map %q known (are replicas running, e.g. 'mosaik-node run --replicate map:%s', and reachable through --bootstrap?): %w",
				ErrNoWriter, c.name, c.name, err)
		}
		return err
	}
	return nil
}

// retryable reports whether err is a write or read that may succeed once
// a leader is (again) known.
func retryable(err error) bool {
	return errors.Is(err, collections.ErrOffline) || errors.Is(err, collections.ErrNotApplied)
}

func pause(ctx context.Context) {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// write runs a mutation until it commits, retrying while the map is
// offline, until ctx ends. Puts and deletes are idempotent, so a retry
// after a write that may have applied is harmless.
func (c *MapClient) write(ctx context.Context, op string, f func(context.Context) (collections.Version, error)) (collections.Version, error) {
	reached := false
	var last error
	for {
		if err := c.online(ctx); err != nil {
			if reached && ctx.Err() != nil {
				return 0, fmt.Errorf("%w: %s on map %q (it may still commit): %w", ErrUnconfirmed, op, c.name, errors.Join(last, ctx.Err()))
			}
			return 0, err
		}
		reached = true
		v, err := f(ctx)
		switch {
		case err == nil:
			return v, nil
		case ctx.Err() != nil:
			return 0, fmt.Errorf("%w: %s on map %q (it may still commit): %w", ErrUnconfirmed, op, c.name, err)
		case !retryable(err):
			return 0, err
		}
		last = err
		pause(ctx)
	}
}

// Put sets key to value and returns the version it committed at.
func (c *MapClient) Put(ctx context.Context, key, value string) (collections.Version, error) {
	return c.write(ctx, "put", func(ctx context.Context) (collections.Version, error) { return c.m.Insert(ctx, key, value) })
}

// Del removes key (a missing key is no error) and returns the version the
// removal committed at.
func (c *MapClient) Del(ctx context.Context, key string) (collections.Version, error) {
	return c.write(ctx, "del", func(ctx context.Context) (collections.Version, error) { return c.m.Remove(ctx, key) })
}

// Sync waits until the client holds everything committed before the call
// (collections' Sync), retrying while the map is offline, until ctx ends.
// Reads after it are linearizable.
func (c *MapClient) Sync(ctx context.Context) (collections.Version, error) {
	for {
		if err := c.online(ctx); err != nil {
			return 0, err
		}
		v, err := c.m.Sync(ctx)
		switch {
		case err == nil:
			return v, nil
		case ctx.Err() != nil:
			return 0, fmt.Errorf("%w: map %q did not answer a read: %w", ErrNoWriter, c.name, err)
		case !retryable(err):
			return 0, err
		}
		pause(ctx)
	}
}

// Get syncs, then reads key.
func (c *MapClient) Get(ctx context.Context, key string) (string, error) {
	if _, err := c.Sync(ctx); err != nil {
		return "", err
	}
	v, ok := c.m.Get(key)
	if !ok {
		return "", fmt.Errorf("%w: %q in map %q", ErrNotFound, key, c.name)
	}
	return v, nil
}

// Entry is one key and value.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Listing is a map's content at a version, in the map's order (keys by
// their canonical encoding, the same on every replica).
type Listing struct {
	Name    string  `json:"name"`
	Version uint64  `json:"version"`
	Entries []Entry `json:"entries"`
}

// List syncs, then returns the whole map.
func (c *MapClient) List(ctx context.Context) (Listing, error) {
	v, err := c.Sync(ctx)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Name: c.name, Version: uint64(v), Entries: []Entry{}}
	for k, val := range c.m.All() {
		l.Entries = append(l.Entries, Entry{k, val})
	}
	if cur := c.m.Version(); uint64(cur) > l.Version {
		l.Version = uint64(cur) // entries read after a later apply
	}
	return l, nil
}

// Write prints l: one "KEY\tVALUE" line per entry, or one JSON document.
func (l Listing) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	for _, e := range l.Entries {
		if _, err := fmt.Fprintf(w, "%s\t%s\n", textField(e.Key), textField(e.Value)); err != nil {
			return err
		}
	}
	return nil
}

// textField is a key or value as the text output prints it: as is, or
// quoted in Go syntax (strconv.Quote) when it holds a tab, a newline or
// another control character (or starts with a quote), so that each entry
// stays one line of tab-separated fields. --json prints values exactly.
func textField(s string) string {
	if strings.HasPrefix(s, `"`) || strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

// Change is one key's change seen by Watch.
type Change struct {
	Version uint64 `json:"version"`
	Op      string `json:"op"` // "put" or "del"
	Key     string `json:"key"`
	Value   string `json:"value,omitempty"`
}

func (ch Change) String() string {
	if ch.Op == "del" {
		return fmt.Sprintf("%d\tdel\t%s", ch.Version, textField(ch.Key))
	}
	return fmt.Sprintf("%d\tput\t%s\t%s", ch.Version, textField(ch.Key), textField(ch.Value))
}

// Watch calls emit for every change of the map after the client's current
// state (call Sync first to start from the present), key by key in key
// order, until ctx ends (then it returns nil) or emit fails. Changes that
// land together (a batch, a snapshot installed) are reported as the net
// change of each key, at the version read after them.
func (c *MapClient) Watch(ctx context.Context, emit func(Change) error) error {
	prev, pv := c.content()
	for {
		if c.m.Version() == pv {
			if _, err := c.m.When().Updated(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		cur, v := c.content()
		for _, ch := range diff(prev, cur, uint64(v)) {
			if err := emit(ch); err != nil {
				return err
			}
		}
		prev, pv = cur, v
	}
}

// content copies the local state and the version read before it: a
// change that lands between the two reads makes the version differ from
// the next read, so Watch looks again and misses nothing.
func (c *MapClient) content() (map[string]string, collections.Version) {
	v := c.m.Version()
	return maps.Collect(c.m.All()), v
}

// diff lists the changes from a to b in key order.
func diff(a, b map[string]string, v uint64) []Change {
	var out []Change
	for k, bv := range b {
		if av, ok := a[k]; !ok || av != bv {
			out = append(out, Change{Version: v, Op: "put", Key: k, Value: bv})
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, Change{Version: v, Op: "del", Key: k})
		}
	}
	slices.SortFunc(out, func(x, y Change) int {
		switch {
		case x.Key < y.Key:
			return -1
		case x.Key > y.Key:
			return 1
		}
		return 0
	})
	return out
}
