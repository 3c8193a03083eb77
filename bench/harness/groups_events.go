package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The groups rows that only mosaik has: failover and catch-up. Each runs
// on groupCluster (groups.go) with the mode's groups.Params.

func (r *runner) groupsEventScenarios(p plan) []scenario {
	if r.cfg.Systems != nil && !r.cfg.Systems.MatchString("mosaik") {
		return nil
	}
	return []scenario{
		{"groups/failover", 2 * p.reps, r.failoverScenario},
		{"groups/catch-up", p.reps + 1, r.catchupScenario},
	}
}

// failoverScenario: a fresh 3-member group per repetition; the time from
// the start of closing the leader to the first Execute through a survivor
// that commits under another leader. Two ways to lose the leader: its
// node closes (graceful: the group is left and departures are sent), or
// only its libp2p host closes (no departure; the survivors' connections
// end, as they do when the kernel closes the sockets of a killed
// process).
func (r *runner) failoverScenario(ctx context.Context) error {
	for rep := range r.plan.reps {
		for _, abrupt := range []bool{false, true} {
			d, err := r.failoverRep(ctx, abrupt)
			if err != nil {
				return fmt.Errorf("rep %d: %w", rep+1, err)
			}
			metric := "leader node closed"
			if abrupt {
				metric = "leader host closed, no departure"
			}
			r.sample("groups/failover", metric, "mosaik", "ms", Lower, float64(d.Microseconds())/1e3)
			r.prog.step(fmt.Sprintf("rep %d/%d %s: %s ms", rep+1, r.plan.reps, metric, fmtNum(float64(d.Microseconds())/1e3)))
		}
	}
	return nil
}

func (r *runner) failoverRep(ctx context.Context, abrupt bool) (time.Duration, error) {
	c, err := openGroupCluster(ctx, 3, r.groupsParams())
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.close() }()
	li := c.leader()
	if li < 0 {
		return 0, errors.New("no leader after set-up")
	}
	sv := c.groups[(li+1)%3]
	old, _ := sv.Leader()
	val := make([]byte, 64)
	if _, err := sv.Execute(ctx, kvPut{K: "before", V: val}); err != nil {
		return 0, fmt.Errorf("put before failover: %w", err)
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		if abrupt {
			closed <- c.hosts[li].Close()
			return
		}
		closed <- c.closeMember(li)
	}()
	d, err := firstCommit(ctx, sv, old, val, start)
	if cerr := <-closed; err == nil && cerr != nil {
		err = fmt.Errorf("closing the leader: %w", cerr)
	}
	return d, err
}

// firstCommit retries Execute on g until one commits under a leader other
// than old, and returns the time since start.
func firstCommit(ctx context.Context, g *kvGroup, old peer.ID, val []byte, start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := g.Execute(actx, kvPut{K: fmt.Sprintf("after-%d", i), V: val})
		acancel()
		if err == nil {
			if l, ok := g.Leader(); ok && l != old {
				return time.Since(start), nil
			}
			continue
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no commit through a survivor after %v: %w", time.Since(start), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond): // no leader yet: do not spin
		}
	}
}

// catchUpCommands is the log a new member catches up with (the issue's
// 100 000; smoke mode keeps it small). Keys repeat every catchUpKeys
// commands, so the state is catchUpKeys values of 64 B.
func (r *runner) catchUpCommands() (n, keys int) {
	if r.cfg.Mode == Smoke {
		return 2000, 1000
	}
	return 100_000, 10_000
}

// catchupScenario fills one 3-member group with the commands, then per
// repetition starts a fresh node (its own host, bootstrapped from the
// first member) that joins the group as a writer: the time from node.New
// until it has applied the leader's last index, the bytes its host
// received (libp2p bandwidth counter: every protocol, after decryption,
// catalog sync included) and the bytes its bonds received (framing
// included). The new member leaves (node closed) after each repetition.
func (r *runner) catchupScenario(ctx context.Context) error {
	c, err := openGroupCluster(ctx, 3, r.groupsParams())
	if err != nil {
		return err
	}
	defer func() { _ = c.close() }()
	li := c.leader()
	if li < 0 {
		return errors.New("no leader after set-up")
	}
	n, keys := r.catchUpCommands()
	val := make([]byte, 64)
	const batch = 256
	for i := 0; i < n; i += batch {
		cmds := make([]kvPut, 0, batch)
		for k := i; k < min(n, i+batch); k++ {
			cmds = append(cmds, kvPut{K: fmt.Sprintf("k-%d", k%keys), V: val})
		}
		if _, err := c.groups[li].ExecuteMany(ctx, cmds); err != nil {
			return fmt.Errorf("fill at %d: %w", i, err)
		}
	}
	target := c.groups[li].Committed()
	r.prog.step(fmt.Sprintf("filled %s commands, leader at index %d", fmtNum(float64(n)), target))
	for rep := range r.plan.reps {
		d, in, bond, err := r.catchUpRep(ctx, c, target)
		if err != nil {
			return fmt.Errorf("rep %d: %w", rep+1, err)
		}
		r.sample("groups/catch-up", "time", "mosaik", "ms", Lower, float64(d.Microseconds())/1e3).
			addNote(fmt.Sprintf("%s commands over %s keys, log index %d", fmtNum(float64(n)), fmtNum(float64(keys)), target))
		r.sample("groups/catch-up", "bytes received (host)", "mosaik", "MB", Lower, float64(in)/1e6)
		r.sample("groups/catch-up", "bytes received (bonds)", "mosaik", "MB", Lower, float64(bond)/1e6)
		r.prog.step(fmt.Sprintf("rep %d/%d: %s ms, %s MB", rep+1, r.plan.reps, fmtNum(float64(d.Microseconds())/1e3), fmtNum(float64(in)/1e6)))
	}
	return nil
}

func (r *runner) catchUpRep(ctx context.Context, c *groupCluster, target uint64) (time.Duration, int64, uint64, error) {
	bw := metrics.NewBandwidthCounter()
	h, err := newHost(libp2p.BandwidthReporter(bw))
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if err := c.add(h); err != nil {
		return 0, 0, 0, err
	}
	j := len(c.groups) - 1
	defer func() { _ = c.closeMember(j) }()
	g := c.groups[j]
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for g.Committed() < target {
		select {
		case <-wctx.Done():
			return 0, 0, 0, fmt.Errorf("new member applied %d of %d after %v: %w", g.Committed(), target, time.Since(start), wctx.Err())
		case <-time.After(2 * time.Millisecond): // polling the published view
		}
	}
	d := time.Since(start)
	// The bandwidth counter's totals move once per second (go-flow-metrics
	// sweeps); wait for the sweep, outside the measured time.
	time.Sleep(1100 * time.Millisecond)
	var bond uint64
	for _, gb := range c.nodes[j].Groups().BondStatus().Groups {
		if gb.Group != g.ID() {
			continue
		}
		for _, b := range gb.Bonds {
			bond += b.BytesReceived
		}
	}
	return d, bw.GetBandwidthTotals().TotalIn, bond, nil
}
