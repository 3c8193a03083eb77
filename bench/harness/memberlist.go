package harness

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlist: hashicorp/memberlist with DefaultLocalConfig (100 ms
// gossip, 1 s probes, 15 s push/pull) bound to 127.0.0.1 on a random
// port, no encryption (the profile's default), logs discarded. Every node
// but the first joins the first; a join is a TCP push/pull of the full
// state with the seed, then gossip spreads the newcomer.
type memberlistDiscovery struct{}

func (memberlistDiscovery) name() string { return "memberlist" }

func (memberlistDiscovery) converge(ctx context.Context, n int, limit time.Duration) (convergence, error) {
	run := networkSeq.Add(1)
	conf := func(i int) *memberlist.Config {
		c := memberlist.DefaultLocalConfig()
		c.Name = fmt.Sprintf("bench-%d-%d", run, i)
		c.BindAddr, c.BindPort = "127.0.0.1", 0
		c.LogOutput = io.Discard
		return c
	}
	seed, err := memberlist.Create(conf(0))
	if err != nil {
		return convergence{}, err
	}
	ms := []*memberlist.Memberlist{seed}
	defer func() { closeAll(len(ms), func(i int) { _ = ms[i].Shutdown() }) }()
	addr := fmt.Sprintf("127.0.0.1:%d", seed.LocalNode().Port)
	joined := make(chan error, n)
	start, u0 := time.Now(), processUsage()
	for i := 1; i < n; i++ {
		m, err := memberlist.Create(conf(i))
		if err != nil {
			return convergence{}, err
		}
		ms = append(ms, m)
		// Joins run in the background, as node.New dials its bootstrap
		// peers in the background.
		go func() {
			_, err := m.Join([]string{addr})
			joined <- err
		}()
	}
	started := time.Since(start)
	c, err := pollDiscovery(ctx, start, u0, n, limit, func(i int) int { return ms[i].NumMembers() })
	c.started = started
	for i := 1; i < n; i++ {
		if jerr := <-joined; jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		return c, fmt.Errorf("memberlist N=%d: %w", n, err)
	}
	return c, nil
}
