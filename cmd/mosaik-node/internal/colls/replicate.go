// Package colls is the reference node's side of collections: the table of
// kinds `run --replicate KIND:NAME` hosts, and the map client commands
// (put, get, del, list, watch). Package cli turns flags into the calls.
package colls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mosaik-go/mosaik/collections"
)

// Errors of ParseSpec and Replicate.
var (
	ErrUnknownKind = errors.New("unknown collection kind")
	ErrUnavailable = errors.New("collection kind not available in this build")
)

// Spec names one collection to replicate: "map:orders".
type Spec struct{ Kind, Name string }

func (s Spec) String() string { return s.Kind + ":" + s.Name }

// opener opens a writer replica of one kind; element types are strings,
// as the command line reads and prints them.
type opener func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error)

// kinds is every kind --replicate knows, one entry each. A nil opener is a
// kind of mosaik's that this build does not host yet: naming it is a clear
// error rather than an unknown word.
var kinds = map[string]opener{
	"map": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewMap[string, string](h, name, opts...)
	},
	"set": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewSet[string](h, name, opts...)
	},
	"vec": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewVec[string](h, name, opts...)
	},
	"cell": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewCell[string](h, name, opts...)
	},
	"once": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewOnce[string](h, name, opts...)
	},
	// A priority queue of int64 priorities, string keys and values.
	"depq": func(h collections.Host, name string, opts ...collections.Option) (io.Closer, error) {
		return collections.NewPriorityQueue[int64, string, string](h, name, opts...)
	},
}

// Available lists the kinds this build can replicate, sorted.
func Available() []string {
	var out []string
	for k, o := range kinds {
		if o != nil {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// ParseSpec parses "KIND:NAME" and checks that the kind is hosted.
func ParseSpec(s string) (Spec, error) {
	k, name, ok := strings.Cut(s, ":")
	if !ok || k == "" || name == "" {
		return Spec{}, fmt.Errorf("%q: want KIND:NAME, e.g. map:orders (kinds: %s)", s, strings.Join(Available(), ", "))
	}
	o, known := kinds[k]
	switch {
	case !known:
		return Spec{}, fmt.Errorf("%w %q in %q (kinds: %s)", ErrUnknownKind, k, s, strings.Join(Available(), ", "))
	case o == nil:
		return Spec{}, fmt.Errorf("%w: %q (kinds: %s)", ErrUnavailable, k, strings.Join(Available(), ", "))
	}
	return Spec{Kind: k, Name: name}, nil
}

// Replicas are the writer replicas a node hosts.
type Replicas struct {
	cs    []io.Closer
	specs []Spec
	stop  context.CancelFunc // ends ForceWhenLeaderless's waits
	wg    sync.WaitGroup
}

// forcer is what every collection handle offers for ForceWhenLeaderless.
type forcer interface {
	When() collections.When
	ForceNewEpoch(ctx context.Context) error
}

// ForceWhenLeaderless forces a new epoch (collections' ForceNewEpoch) on
// every replica that has found no leader within after: the operator's
// word that the other writers are gone for good (etcd's
// --force-new-cluster). It returns at once; the waits end with Close.
// Each outcome is logged: a leader found (nothing forced), a new epoch
// forced, or the refusal.
func (r *Replicas) ForceWhenLeaderless(after time.Duration, log *slog.Logger) {
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	for i, c := range r.cs {
		f, ok := c.(forcer)
		if !ok {
			continue
		}
		spec := r.specs[i].String()
		r.wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, after)
			err := f.When().Online(wctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				log.Info("a leader is known: no new epoch forced", "collection", spec)
				return
			}
			if err := f.ForceNewEpoch(ctx); err != nil {
				if ctx.Err() == nil {
					log.Error("new epoch not forced", "collection", spec, "err", err)
				}
				return
			}
			log.Warn("forced a new epoch from this replica's state: the other writers must be gone for good", "collection", spec, "after", after)
		})
	}
}

// Replicate opens a writer replica of each spec on h (the node's data
// dir, if any, applies through the groups service's join defaults). On an
// error it closes what it opened.
func Replicate(h collections.Host, specs []Spec, opts ...collections.Option) (*Replicas, error) {
	r := &Replicas{}
	for _, s := range specs {
		o := kinds[s.Kind]
		if o == nil {
			_ = r.Close()
			return nil, fmt.Errorf("%w: %q", ErrUnavailable, s.Kind)
		}
		c, err := o(h, s.Name, opts...)
		if err != nil {
			_ = r.Close()
			return nil, err
		}
		r.cs = append(r.cs, c)
		r.specs = append(r.specs, s)
	}
	return r, nil
}

// Close closes every replica, in reverse order. Idempotent.
func (r *Replicas) Close() error {
	if r.stop != nil {
		r.stop()
	}
	r.wg.Wait()
	var errs []error
	for i := len(r.cs) - 1; i >= 0; i-- {
		errs = append(errs, r.cs[i].Close())
	}
	r.cs = nil
	return errors.Join(errs...)
}
