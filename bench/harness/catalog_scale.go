package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
)

// scaleCase sizes the catalog/scale rows.
type scaleCase struct {
	entries int           // simulated peers at scale
	small   int           // the smaller catalog the cost per update is compared with
	window  time.Duration // CPU measuring window per repetition
}

// scalePartition is how long the node is cut off before its re-sync.
const (
	scalePartition = 10 * time.Second
	scaleGenHosts  = 4
)

// scaleScenarios: the catalog at the small size (cost per update only)
// and at scale (every row). Both run at the update rate of the large
// catalog at the default heartbeat, so the cost per update compares like
// with like: the small catalog's peers beat more often.
func (r *runner) scaleScenarios(p plan) []scenario {
	c := p.catScale
	dp := discovery.DefaultParams()
	var out []scenario
	for _, n := range []int{c.small, c.entries} {
		id := "catalog/scale/" + entriesLabel(n)
		interval := time.Duration(float64(dp.AnnounceInterval) * float64(n) / float64(c.entries))
		full := n == c.entries
		out = append(out, scenario{id, p.reps + 1, func(ctx context.Context) error {
			return r.scaleScenario(ctx, id, n, interval, dp.AnnounceJitter, c.window, full)
		}})
	}
	return out
}

// genProc is a running generator child process.
type genProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	addrs  []peer.AddrInfo
	stderr bytes.Buffer
}

func startGenerator(ctx context.Context, cfg genConfig) (*genProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	g := &genProc{cmd: exec.Command(exe)}
	g.cmd.Env = append(os.Environ(), childEnv+"="+childCatalog, genConfigEnv+"="+string(b))
	g.cmd.Stderr = &g.stderr
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	ready := make(chan error, 1)
	go func() { ready <- json.NewDecoder(bufio.NewReader(out)).Decode(&g.addrs) }()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(2 * time.Minute):
		err = errors.New("not ready after 2 minutes")
	}
	if err != nil {
		_ = g.close()
		return nil, fmt.Errorf("generator: %w (%s)", err, g.stderr.String())
	}
	return g, nil
}

func (g *genProc) beat() error {
	_, err := io.WriteString(g.stdin, "beat\n")
	return err
}

// close ends the child (EOF on its stdin) and waits for it.
func (g *genProc) close() error {
	_ = g.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		return <-done
	}
}

// cutGater refuses every connection to or from the peers in cut while on
// is set: a partition of one host from some peers, for real (dials fail,
// inbound connections are dropped after the handshake).
type cutGater struct {
	on  atomic.Bool
	cut map[peer.ID]bool
}

func (g *cutGater) blocked(p peer.ID) bool                           { return g.on.Load() && g.cut[p] }
func (g *cutGater) InterceptPeerDial(p peer.ID) bool                 { return !g.blocked(p) }
func (g *cutGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.blocked(p) }
func (g *cutGater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *cutGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.blocked(p)
}
func (g *cutGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// scaleNodeParams: default discovery parameters, with room in the
// catalog for the generators' own entries besides the simulated peers.
func scaleNodeParams(n int) discovery.Params {
	dp := discovery.DefaultParams()
	dp.Catalog.MaxPeers = max(dp.Catalog.MaxPeers, n+64)
	return dp
}

// scaleScenario: one node under test (node.New, default parameters but
// the catalog's room, no DHT) on its own host, fed by a generator process
// of n simulated peers that beat every interval ± jitter. The node first
// syncs with one generator (set-up) and connects to all of them; then,
// per repetition, a CPU window, its heap, and at scale a partition with
// re-sync and a newcomer's full sync from the node.
func (r *runner) scaleScenario(ctx context.Context, id string, n int, interval time.Duration, jitter float64, window time.Duration, full bool) error {
	net := freshNetwork()
	gen, err := startGenerator(ctx, genConfig{Network: net, Entries: n, Hosts: scaleGenHosts, Interval: interval, Jitter: jitter})
	if err != nil {
		return err
	}
	defer func() { _ = gen.close() }()
	gate := &cutGater{cut: map[peer.ID]bool{}}
	for _, a := range gen.addrs {
		gate.cut[a.ID] = true
	}
	h, err := newHost(libp2p.ConnectionGater(gate))
	if err != nil {
		return err
	}
	defer func() { _ = h.Close() }()
	nd, err := node.New(net, node.WithHost(h), node.WithoutDHT(), node.WithLogger(quiet), node.WithDiscoveryParams(scaleNodeParams(n)))
	if err != nil {
		return err
	}
	defer func() { _ = nd.Close() }()
	heap0 := heapAlloc()
	setup, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := nd.Discovery().SyncWith(setup, gen.addrs[0]); err != nil {
		return fmt.Errorf("set-up sync: %w", err)
	}
	for _, a := range gen.addrs[1:] {
		if err := nd.Connect(setup, a); err != nil {
			return err
		}
	}
	if err := waitLen(setup, nd, n); err != nil {
		return err
	}
	if err := gen.beat(); err != nil {
		return err
	}
	// Warm-up (not recorded): the gossip mesh forms and the beats reach
	// their steady rate.
	if err := sleepCtx(ctx, min(window, 5*time.Second)); err != nil {
		return err
	}
	r.prog.step("set-up")
	for rep := range r.plan.reps {
		d := nd.Discovery()
		end := func() {}
		if r.cfg.Measured != nil {
			end = r.cfg.Measured(id, rep)
		}
		st0, cpu0, t0 := d.Stats(), cpuTime(), time.Now()
		err := sleepCtx(ctx, window)
		st1, cpu1, el := d.Stats(), cpuTime(), time.Since(t0)
		end()
		if err != nil {
			return err
		}
		cpu := cpu1 - cpu0
		updates := (st1.Updated + st1.Added) - (st0.Updated + st0.Added)
		r.sample(id, "node CPU", "mosaik", "% of a core", Lower, 100*cpu.Seconds()/el.Seconds())
		row := r.sample(id, "updates applied", "mosaik", "/s", Neither, float64(updates)/el.Seconds())
		if rep == 0 {
			// What the heartbeats should bring (the jitter averages out):
			// the CPU target holds only under that load.
			row.addNote(fmt.Sprintf("expected %.0f/s", float64(n)/interval.Seconds()))
		}
		if updates > 0 {
			r.sample(id, "CPU per update", "mosaik", "µs", Lower, float64(cpu.Microseconds())/float64(updates))
		} else {
			row.addNote(fmt.Sprintf("rep %d applied no update (no CPU per update sample)", rep+1))
		}
		snap := nd.Catalog()
		var own uint64
		for e := range snap.All() {
			own += uint64(len(e.Bytes()))
		}
		heap1 := heapAlloc()
		if r.cfg.HeapMeasured != nil {
			r.cfg.HeapMeasured(id, rep)
		}
		per := (float64(heap1) - float64(heap0)) / float64(snap.Len())
		r.sample(id, "heap per entry", "mosaik", "B", Neither, per)
		r.sample(id, "heap per entry beyond its sealed size", "mosaik", "B", Lower, per-float64(own)/float64(snap.Len()))
		r.sample(id, "sealed entry", "mosaik", "B", Neither, float64(own)/float64(snap.Len()))
		r.prog.step(fmt.Sprintf("rep %d/%d: CPU %.1f %%, %.0f updates/s, %.0f µs/update", rep+1, r.plan.reps, 100*cpu.Seconds()/el.Seconds(), float64(updates)/el.Seconds(), float64(cpu.Microseconds())/float64(max(updates, 1))))
	}
	if !full {
		return nil
	}
	// The partitions and newcomers after every CPU and heap window: each
	// leaves work behind (a re-sync, a departing newcomer) that the next
	// window would count, and the small catalog's windows have none.
	for rep := range r.plan.reps {
		if err := r.scalePartition(ctx, id, nd, gen, gate, n); err != nil {
			return err
		}
		if err := r.scaleNewcomer(ctx, id, nd, n); err != nil {
			return err
		}
		r.prog.step(fmt.Sprintf("partition and newcomer %d/%d", rep+1, r.plan.reps))
	}
	return nil
}

// scalePartition cuts the node off from every generator for
// scalePartition, then reconnects and re-syncs with one of them (the sync
// a node runs on reconnecting to a peer it had purged, or its next
// anti-entropy round), and records what the re-sync moved.
func (r *runner) scalePartition(ctx context.Context, id string, nd *node.Node, gen *genProc, gate *cutGater, n int) error {
	gate.on.Store(true)
	for _, a := range gen.addrs {
		_ = nd.Host().Network().ClosePeer(a.ID)
	}
	err := sleepCtx(ctx, scalePartition)
	gate.on.Store(false)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, a := range gen.addrs {
		if err := nd.Connect(cctx, a); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
	}
	d := nd.Discovery()
	// A refused or failed attempt (the generator process competes for
	// the same cores) is retried with the next generator; its bytes count.
	st0, t0 := d.Stats(), time.Now()
	var failed []string
	for i := 0; ; i++ {
		err := d.SyncWith(cctx, gen.addrs[i%len(gen.addrs)])
		if err == nil {
			break
		}
		if failed = append(failed, err.Error()); i == 3 {
			return fmt.Errorf("re-sync: %s", strings.Join(failed, "; "))
		}
	}
	el, st1 := time.Since(t0), d.Stats()
	moved := (st1.SyncBytesSent + st1.SyncBytesReceived) - (st0.SyncBytesSent + st0.SyncBytesReceived)
	row := r.sample(id, "re-sync after a 10 s partition", "mosaik", "ms", Lower, float64(el.Microseconds())/1e3)
	if len(failed) > 0 {
		row.addNote(fmt.Sprintf("rep %d: %d attempt(s) failed and were retried (their bytes count), the last: %s", len(row.Samples), len(failed), failed[len(failed)-1]))
	}
	r.sample(id, "re-sync bytes", "mosaik", "KB", Neither, float64(moved)/1e3)
	// Heartbeats come as bumps (sync 2.1.0): version and signature only.
	whole, bumps := st1.SyncEntriesReceived-st0.SyncEntriesReceived, st1.SyncBumpsReceived-st0.SyncBumpsReceived
	r.sample(id, "entries newer after the partition", "mosaik", "% of entries", Neither, 100*float64(whole+bumps)/float64(n))
	if whole+bumps > 0 {
		r.sample(id, "newer entries sent as bumps", "mosaik", "% of newer", Neither, 100*float64(bumps)/float64(whole+bumps))
	}
	return nil
}

// scaleNewcomer: a fresh node (own host, syncs on connect turned off so
// that exactly one sync runs) syncs the node's catalog once. On a loaded
// machine the sync can outlast the responder's SyncTimeout (10 s), which
// then resets it: such an attempt is noted on the row and retried with
// another fresh node, up to 3 attempts; the time recorded is the
// successful attempt's.
func (r *runner) scaleNewcomer(ctx context.Context, id string, nd *node.Node, n int) error {
	var failed []string
	for {
		el, bytes, err := newcomerSync(ctx, nd, n)
		if err == nil {
			row := r.sample(id, "newcomer full sync", "mosaik", "ms", Lower, float64(el.Microseconds())/1e3)
			if len(failed) > 0 {
				row.addNote(fmt.Sprintf("rep %d: %d attempt(s) failed and were retried with a fresh node, the last: %s", len(row.Samples), len(failed), failed[len(failed)-1]))
			}
			r.sample(id, "newcomer full sync bytes", "mosaik", "KB", Neither, float64(bytes)/1e3)
			return nil
		}
		if failed = append(failed, err.Error()); len(failed) == 3 || ctx.Err() != nil {
			return fmt.Errorf("newcomer sync: %s", strings.Join(failed, "; "))
		}
	}
}

// newcomerSync runs one newcomer's full sync with nd and returns its time
// and the bytes it moved.
func newcomerSync(ctx context.Context, nd *node.Node, n int) (time.Duration, uint64, error) {
	h, err := newHost()
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = h.Close() }()
	dp := scaleNodeParams(n)
	dp.DisableSync = true
	nc, err := node.New(freshNetworkOf(nd), node.WithHost(h), node.WithoutDHT(), node.WithLogger(quiet), node.WithDiscoveryParams(dp))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = nc.Close() }()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := nc.Discovery().SyncWith(cctx, nd.AddrInfo()); err != nil {
		return 0, 0, fmt.Errorf("after %v: %w", time.Since(t0).Round(time.Millisecond), err)
	}
	el := time.Since(t0)
	if got := nc.Catalog().Len(); got < n {
		return 0, 0, fmt.Errorf("newcomer holds %d entries after its sync, want at least %d", got, n)
	}
	st := nc.Discovery().Stats()
	return el, st.SyncBytesSent + st.SyncBytesReceived, nil
}

// freshNetworkOf is the network name of nd (a newcomer joins the same).
func freshNetworkOf(nd *node.Node) string { return nd.NetworkName() }

func waitLen(ctx context.Context, nd *node.Node, n int) error {
	for nd.Catalog().Len() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("catalog holds %d of %d entries: %w", nd.Catalog().Len(), n, ctx.Err())
		case <-time.After(10 * time.Millisecond): // polling the catalog's size
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// scaleTargets judges the catalog/scale rows (issue 17).
func (res *Results) scaleTargets() []Target {
	var ts []Target
	var large, small string
	for _, r := range res.Rows {
		if strings.HasPrefix(r.Scenario, "catalog/scale/") && r.Metric == "re-sync bytes" {
			large = r.Scenario
		}
	}
	for _, r := range res.Rows {
		if strings.HasPrefix(r.Scenario, "catalog/scale/") && r.Scenario != large && r.Metric == "CPU per update" {
			small = r.Scenario
		}
	}
	at := "at scale"
	if large != "" {
		at = "at " + strings.TrimPrefix(large, "catalog/scale/") + " peers"
	}
	t := Target{Goal: "catalog: node CPU " + at + ", default heartbeat ≤ 5 % of one core", Measured: "not measured"}
	if r := res.find(large, "node CPU", "mosaik"); r != nil {
		t.Measured = fmt.Sprintf("median %.1f %% (min %.1f, max %.1f)", r.Median, r.Min, r.Max)
		loaded := false // the CPU says nothing of a node that was not under the heartbeats' load
		if u := res.find(large, "updates applied", "mosaik"); u != nil {
			t.Measured += fmt.Sprintf(" at %s updates/s", fmtNum(u.Median))
			if want, ok := expectedRate(u); ok {
				t.Measured += fmt.Sprintf(" (expected %s/s)", fmtNum(want))
				loaded = u.Median >= 0.9*want
			}
		}
		if !loaded {
			t.Measured += "; the node was not under the expected load"
		}
		t.Met = boolp(loaded && r.Median <= 5)
	}
	ts = append(ts, t)
	t = Target{Goal: "catalog: heap " + at + " ≤ 2 KiB per entry beyond the entry's sealed size", Measured: "not measured"}
	if r := res.find(large, "heap per entry beyond its sealed size", "mosaik"); r != nil {
		t.Measured = fmt.Sprintf("%s B per entry beyond its size (max %s B)", fmtNum(r.Median), fmtNum(r.Max))
		if e := res.find(large, "sealed entry", "mosaik"); e != nil {
			t.Measured += fmt.Sprintf("; sealed entry %s B", fmtNum(e.Median))
		}
		t.Met = boolp(r.Median <= 2048)
	}
	ts = append(ts, t)
	t = Target{Goal: "catalog: a newcomer's full sync " + at + " ≤ 2 s", Measured: "not measured"}
	if r := res.find(large, "newcomer full sync", "mosaik"); r != nil {
		t.Measured = fmt.Sprintf("median %s ms, max %s ms", fmtNum(r.Median), fmtNum(r.Max))
		if b := res.find(large, "newcomer full sync bytes", "mosaik"); b != nil {
			t.Measured += fmt.Sprintf(", %s KB", fmtNum(b.Median))
		}
		// A failed attempt (reset after the responder's SyncTimeout) took
		// longer than any recorded one: the retries' times do not stand
		// for it.
		failed := slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "attempt(s) failed") })
		if failed {
			t.Measured += "; some attempts failed and were retried (see the row's notes)"
		}
		t.Met = boolp(!failed && r.Median <= 2000)
	}
	ts = append(ts, t)
	t = Target{Goal: "catalog: a re-sync after a 10 s partition moves ≤ 10 % of the full-sync bytes", Measured: "not measured"}
	rb, fb := res.find(large, "re-sync bytes", "mosaik"), res.find(large, "newcomer full sync bytes", "mosaik")
	if rb != nil && fb != nil && fb.Median > 0 {
		share := 100 * rb.Median / fb.Median
		t.Measured = fmt.Sprintf("%.0f %% (%s KB of %s KB)", share, fmtNum(rb.Median), fmtNum(fb.Median))
		if ch := res.find(large, "entries newer after the partition", "mosaik"); ch != nil {
			t.Measured += fmt.Sprintf("; %.0f %% of the entries were newer (a cut of 10 s of a 30 s heartbeat leaves about a third behind)", ch.Median)
			if b := res.find(large, "newer entries sent as bumps", "mosaik"); b != nil {
				t.Measured += fmt.Sprintf(", %.0f %% of those came as bumps (sync 2.1.0: a heartbeat moves as its version and signature, 88 B instead of the whole entry); the rest is the digest, 32 B a peer", b.Median)
			}
		}
		t.Met = boolp(share <= 10)
	}
	ts = append(ts, t)
	t = Target{Goal: "catalog: CPU per update " + at + " ≤ 2× at the small catalog", Measured: "not measured"}
	if l, s := res.find(large, "CPU per update", "mosaik"), res.find(small, "CPU per update", "mosaik"); l != nil && s != nil && s.Median > 0 {
		t.Measured = fmt.Sprintf("%s µs at %s, %s µs at %s: %.2f×", fmtNum(l.Median), strings.TrimPrefix(large, "catalog/scale/"), fmtNum(s.Median), strings.TrimPrefix(small, "catalog/scale/"), l.Median/s.Median)
		t.Met = boolp(l.Median/s.Median <= 2)
	}
	return append(ts, t)
}

// expectedRate reads the update rate the heartbeats bring from the note
// the "updates applied" row carries ("expected N/s").
func expectedRate(r *Row) (float64, bool) {
	for _, n := range r.Notes {
		var v float64
		if _, err := fmt.Sscanf(n, "expected %g/s", &v); err == nil {
			return v, true
		}
	}
	return 0, false
}
