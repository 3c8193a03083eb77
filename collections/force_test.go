package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/groups"
)

// ForceNewEpoch reaches the collection's group: it refuses on a writer
// that leads and on a reader (the forcing itself is tested in groups).
func TestForceNewEpoch_RefusesWithLeaderAndOnReaders(t *testing.T) {
	ns := startNodes(t, 2)
	w := cellW(t, ns[0], "force")
	waitOnline(t, w)
	r := cellR(t, ns[1], "force")
	waitOnline(t, r)
	ctx := tctx(t, 5*time.Second)
	if err := w.ForceNewEpoch(ctx); !errors.Is(err, groups.ErrNotForced) {
		t.Fatalf("ForceNewEpoch on the leading writer = %v, want ErrNotForced", err)
	}
	if err := r.ForceNewEpoch(ctx); !errors.Is(err, groups.ErrNotForced) {
		t.Fatalf("ForceNewEpoch on a reader = %v, want ErrNotForced", err)
	}
}
