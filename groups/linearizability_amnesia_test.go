package groups

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A voter whose log is in memory crashes and comes back empty while the
// leader is cut off from the others: clients on every node, and the
// history must stay linearizable. The restarted voter's vote would let the
// lagging one lead without the writes the leader and the crashed voter
// had committed (the vote fence withholds it); on heal the leader leads
// again. The cut stays shorter than RemoveAfter: past it the survivor
// forces a new epoch, which drops what only the leader held, by design.
func TestLinearizable_AmnesiacVoterRestart(t *testing.T) {
	net := newMemNet()
	p := TestParams()
	p.LeaveTimeout = 0              // a close is a crash
	p.RemoveAfter = 4 * time.Second // room for the laggard to win an election meanwhile
	var svcs []*Service
	for i := range 3 {
		svcs = append(svcs, net.service(t, fmt.Sprint(i), false))
	}
	c := newLinclusterWith(t, svcs, p)
	c.net = net
	c.runFault(t, func() {
		l := c.leader()
		if l < 0 {
			t.Fatal("no leader before the fault")
		}
		lag, amn := (l+1)%3, (l+2)%3
		leader, lagging := c.svcs[l].self, c.svcs[lag].self
		// The laggard misses writes that the leader and amn commit: wait
		// until amn holds 200 entries the laggard lacks.
		net.partition([]peer.ID{leader, c.svcs[amn].self}, []peer.ID{lagging})
		from := c.gs[lag].Committed()
		testutil.Eventually(t, 10*time.Second, func() bool { return c.gs[amn].Committed() >= from+200 },
			"the leader's side did not commit 200 entries while the laggard was cut off")
		// amn crashes and comes back empty; the leader is cut off.
		net.partition([]peer.ID{leader}, []peer.ID{lagging})
		_ = c.svcs[amn].Close()
		g, err := Join[kvPut, string, int64](net.service(t, fmt.Sprint(amn), false), KeyFromSecret("kv"), &kv{m: map[string]int64{}}, WithParams(p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		c.mu.Lock()
		c.rejoined = append(c.rejoined, g)
		c.mu.Unlock()
		net.partition([]peer.ID{leader}, []peer.ID{lagging, g.c.self})
		c.setMinority([]peer.ID{leader}, c.now())
	}, func() {
		c.endMinority(c.now())
		net.heal()
	}, p.RemoveAfter*2/3) // not scaled: it must stay below RemoveAfter
}
