package collections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A value larger than a bond frame is refused with ErrTooLarge before
// anything is sent, and the group is undisturbed. Sent, such an entry
// broke every follower's bond to the leader (an oversize frame is a
// protocol violation) and deposed it; the caller got ErrOffline, which it
// retries. A large value that fits (3 MiB) replicates everywhere.
func TestMap_TooLargeValueIsRefusedAndTheLeaderStays(t *testing.T) {
	c := startMapCluster[string](t, 3, "too-large")
	termOf := func(i int) uint64 {
		for _, s := range c.nodes[i].Groups().Status() {
			if s.ID == c.maps[i].GroupID() {
				return s.Term
			}
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := strings.Repeat("x", 3<<20)
	// Under load the test timers (elections in a few hundred ms) may see a
	// 3 MiB append outlast an election timeout: offline is then retried
	// (the same insert twice is harmless). The leader and term the refused
	// values must not disturb are taken after it.
	var v collections.Version
	for {
		l := -1
		testutil.Eventually(t, 20*time.Second, func() bool { l = c.leader(); return l >= 0 }, "no leader")
		var err error
		if v, err = c.maps[l].Insert(ctx, "big", big); err == nil {
			break
		}
		if !errors.Is(err, collections.ErrOffline) || ctx.Err() != nil {
			t.Fatalf("a 3 MiB value: %v", err)
		}
		t.Logf("a 3 MiB value, retried: %v", err)
	}
	for i, m := range c.maps {
		if err := m.When().Reaches(ctx, v); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if got, _ := m.Get("big"); len(got) != len(big) {
			t.Fatalf("replica %d holds %d bytes, want %d", i, len(got), len(big))
		}
	}
	l := c.leader()
	if l < 0 {
		t.Fatal("no leader after the 3 MiB value")
	}
	term := termOf(l)
	for _, at := range []int{l, (l + 1) % 3} { // at the leader, and forwarded by a follower
		_, err := c.maps[at].Insert(ctx, "huge", strings.Repeat("y", 5<<20))
		var me *collections.MutationError[collections.KV[string, string]]
		if !errors.Is(err, collections.ErrTooLarge) || !errors.As(err, &me) || me.MayApply {
			t.Fatalf("a 5 MiB value through replica %d: %v, want ErrTooLarge that cannot apply", at, err)
		}
	}
	if _, err := c.maps[(l+1)%3].Insert(ctx, "small", "1"); err != nil {
		t.Fatal(err)
	}
	if now := c.leader(); now != l || termOf(l) != term {
		t.Fatalf("leader %d at term %d, was %d at term %d: the refused values disturbed the group", now, termOf(l), l, term)
	}
}
