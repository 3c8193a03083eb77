package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// convTraceEnv turns on the mosaik convergence rows' time line: when each
// node started, and when and by which path (the discovery service's "via";
// for gossip, whether the peer's own publication or a forward brought it)
// each node first held each peer. At the end of each rep it prints to
// stderr what the last percent of pairs waited on. It costs a log record
// per Debug call of every node, so a traced run's numbers are not the
// row's.
//
// MOSAIK_BENCH_CONV_TRACE=2 adds, for every node, when after its start it
// was connected to and had identified the bootstrap peer, started its
// join sync and had the sync's stream open, when the bootstrap peer
// learned it (its hello), when its join sync's first entry arrived and
// when the others learned it. A traced rep also prints the process CPU
// spent from the clock's start to 99 % of pairs.
//
// Every level classifies the pairs known at 90-98 %, 98-99 % and after
// 99 % (see late in dump): how the learner learned the peer (join sync,
// the settle or join-repair sync, what it was served, gossip from the
// peer itself, relayed by the bootstrap peer, or forwarded by another),
// whether its join sync could have brought the peer, and for relays,
// whether its subscription had reached the bootstrap peer before the
// relay. MOSAIK_BENCH_CONV_TRACE=3 is level 2 plus counts of pubsub's
// records of messages it dropped or throttled, by node (bootstrap or
// not) and reason; it makes pubsub build every debug record.
const convTraceEnv = "MOSAIK_BENCH_CONV_TRACE"

// convProfEnv, when set to a path prefix, writes a CPU profile of the
// first second of each mosaik convergence rep (the starts and the joins,
// where 99 % of pairs falls on a quiet machine) to PREFIX.<N>.<ns>.prof.
const convProfEnv = "MOSAIK_BENCH_CONV_PROF"

// convXTraceEnv, when set to a path prefix, writes a Go execution trace
// of the same first second to PREFIX.<N>.<ns>.trace: `go tool trace
// -pprof=sched` on it tells how long goroutines (a joiner's dial, the
// bootstrap peer's handshakes) waited for a CPU, `-pprof=net` how long
// they waited on the network.
const convXTraceEnv = "MOSAIK_BENCH_CONV_XTRACE"

type convTrace struct {
	mu     sync.Mutex
	start  time.Time
	ids    map[string]int // peer ID string → node index
	starts []time.Duration
	newDur time.Duration        // node.New's time, summed over the nodes after the first
	cpu0   time.Duration        // process CPU time at the clock's start
	learn  map[[2]int]convLearn // (learner, peer) → first learned
	gfrom  map[[2]int]string    // (learner, peer) → gossip sender
	syncs  map[string]int       // debug message counts of interest
	conns  []int                // connections per node at the end
	steps  map[string]time.Duration
	// Seen by the bootstrap peer (node 0), per node index: when it first
	// relayed the node's entry on gossip and when the node's subscription
	// to the catalog topic reached it.
	relayAt map[int]time.Duration
	subAt   map[int]time.Duration
	// pubsub's debug records of dropped or throttled messages, by message
	// (MOSAIK_BENCH_CONV_TRACE=3 only: it makes pubsub build every debug
	// record).
	drops map[string]int
	// Level 2 and 3: per node, when node.New returned, and when the
	// swarm's Notifiee saw the connection between it and the bootstrap
	// peer, on its side (connOut) and on the bootstrap peer's (connIn).
	builtAt, connOut, connIn map[int]time.Duration
}

type convLearn struct {
	at  time.Duration
	via string
}

func newConvTrace() *convTrace {
	if os.Getenv(convTraceEnv) == "" {
		return nil
	}
	return &convTrace{ids: map[string]int{}, learn: map[[2]int]convLearn{}, gfrom: map[[2]int]string{}, steps: map[string]time.Duration{}, syncs: map[string]int{},
		relayAt: map[int]time.Duration{}, subAt: map[int]time.Duration{}, drops: map[string]int{},
		builtAt: map[int]time.Duration{}, connOut: map[int]time.Duration{}, connIn: map[int]time.Duration{}}
}

// started records node i (peer id) as started now; i = 0 is the clock's start.
func (t *convTrace) started(i int, id string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i <= 1 {
		t.start = time.Now() // the harness's clock starts with the second node
		t.cpu0 = processCPU()
	}
	t.ids[id] = i
	for len(t.starts) <= i {
		t.starts = append(t.starts, 0)
	}
	t.starts[i] = time.Since(t.start)
}

// connected records each host's connection count.
func (t *convTrace) connected(hs []host.Host) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns = t.conns[:0]
	for _, h := range hs {
		t.conns = append(t.conns, len(h.Network().Peers()))
	}
}

// built records that node i's node.New returned.
func (t *convTrace) built(i int) {
	if t == nil || i == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.newDur += time.Since(t.start) - t.starts[i]
	t.builtAt[i] = time.Since(t.start)
}

// watch records, at levels 2 and 3, when host h of node i (0: the
// bootstrap peer) sees a connection with the bootstrap peer or from
// another node: the swarm calls a Notifiee's Connected synchronously
// once a connection is upgraded, before any event-bus subscriber sees it.
func (t *convTrace) watch(i int, h host.Host, boot peer.ID) {
	if v := os.Getenv(convTraceEnv); t == nil || (v != "2" && v != "3") {
		return
	}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		at := time.Since(t.start)
		t.mu.Lock()
		defer t.mu.Unlock()
		if i != 0 {
			if _, seen := t.connOut[i]; !seen && c.RemotePeer() == boot {
				t.connOut[i] = at
			}
			return
		}
		if j, ok := t.ids[c.RemotePeer().String()]; ok && j > 0 {
			if _, seen := t.connIn[j]; !seen {
				t.connIn[j] = at
			}
		}
	}})
}

// dump prints the time line's summary for n nodes.
func (t *convTrace) dump(w io.Writer, n int, c convergence) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	type ev struct {
		l, p int
		at   time.Duration
		via  string
	}
	var evs []ev
	for k, v := range t.learn {
		if k[1] < 0 {
			continue // a peer the trace never saw start
		}
		via := v.via
		if via == "gossip" {
			if f, ok := t.gfrom[k]; ok {
				switch t.ids[f] {
				case k[1]:
					via = "gossip/own"
				case 0:
					via = "gossip/boot"
				default:
					via = "gossip/fwd"
				}
			}
		}
		evs = append(evs, ev{k[0], k[1], v.at, via})
	}
	sort.Slice(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	last := slices.Max(t.starts)
	fmt.Fprintf(w, "conv trace N=%d: process CPU since the clock's start %v\n", n, (processCPU() - t.cpu0).Round(time.Millisecond))
	fmt.Fprintf(w, "conv trace N=%d: last start %v (node.New %v of it), 99%% %v, all %v, %d learn events\n", n, last.Round(time.Millisecond), t.newDur.Round(time.Millisecond), c.p99.Round(time.Millisecond), c.all.Round(time.Millisecond), len(evs))
	// Pairs known (n self pairs included) over time.
	var line []string
	for step := 100 * time.Millisecond; step <= c.all+100*time.Millisecond && step <= 10*time.Second; step += 100 * time.Millisecond {
		k := sort.Search(len(evs), func(i int) bool { return evs[i].at > step })
		line = append(line, fmt.Sprintf("%d:%.1f%%", step.Milliseconds(), 100*float64(n+k)/float64(n*n)))
	}
	fmt.Fprintf(w, "  known: %s\n", strings.Join(line, " "))
	hist := func(name string, es []ev) {
		vias := map[string]int{}
		var lag []time.Duration
		for _, e := range es {
			vias[e.via]++
			lag = append(lag, e.at-max(t.starts[e.l], t.starts[e.p]))
		}
		slices.Sort(lag)
		q := func(f float64) time.Duration {
			if len(lag) == 0 {
				return 0
			}
			return lag[int(f*float64(len(lag)-1))].Round(time.Millisecond)
		}
		fmt.Fprintf(w, "  %s (%d): via %v; lag after the later start p10 %v p50 %v p90 %v max %v\n", name, len(es), vias, q(0.1), q(0.5), q(0.9), q(1))
	}
	hist("all pairs", evs)
	// late classifies the pairs es (learner a, peer b) by what a had to
	// learn b from. "pull": the bootstrap peer held b before a's join
	// sync's first entry came, so a's join sync could bring b. "relay": b
	// reached the bootstrap peer later, so a needed a gossip relay (or a
	// later sync);
	// "sub<relay" says whether a's subscription had reached the bootstrap
	// peer before it first relayed b's entry (otherwise the relay could
	// not reach a). Lags: at - a's start for pulls; at - the relay for
	// relays, and when the bootstrap peer learned b after b's start (its
	// hello, or b's own publication).
	late := func(name string, es []ev) {
		if len(es) == 0 {
			return
		}
		js := map[int]time.Duration{}
		bootAt := map[int]time.Duration{}
		for k, v := range t.learn {
			if k[1] < 0 {
				continue
			}
			if k[0] == 0 {
				bootAt[k[1]] = v.at
			}
		}
		for k, v := range t.learn {
			if v.via == "join sync" {
				if o, ok := js[k[0]]; !ok || v.at < o {
					js[k[0]] = v.at
				}
			}
		}
		cls := map[string]int{}
		var pullLag, pullJS, relayLag, relayHello []time.Duration
		var bins [100]int
		lmin, lmax, pmin, pmax := n, 0, n, 0
		for _, e := range es {
			lmin, lmax, pmin, pmax = min(lmin, e.l), max(lmax, e.l), min(pmin, e.p), max(pmax, e.p)
			if b := int(e.at / (100 * time.Millisecond)); b < len(bins) {
				bins[b]++
			}
			tb, bok := bootAt[e.p]
			var c string
			switch {
			case e.l == 0:
				c = "boot learns"
			case e.p == 0:
				c = "learns boot"
			case bok && js[e.l] > 0 && js[e.l] >= tb:
				c = "pull"
				pullLag = append(pullLag, e.at-t.starts[e.l])
				if j, ok := js[e.l]; ok {
					pullJS = append(pullJS, j-t.starts[e.l])
				}
			default:
				c = "relay"
				if bok {
					relayHello = append(relayHello, tb-t.starts[e.p])
				}
				ra, rok := t.relayAt[e.p]
				sa, sok := t.subAt[e.l]
				switch {
				case !rok:
					c += " (no relay)"
				case sok && sa < ra:
					c += " (sub<relay)"
					relayLag = append(relayLag, e.at-ra)
				default:
					c += " (sub>relay)"
					relayLag = append(relayLag, e.at-ra)
				}
			}
			cls[c+" "+e.via]++
		}
		q := func(d []time.Duration) string {
			if len(d) == 0 {
				return "-"
			}
			slices.Sort(d)
			return fmt.Sprintf("p10 %v p50 %v p90 %v", d[len(d)/10].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)*9/10].Round(time.Millisecond))
		}
		var bl []string
		for i, c := range bins {
			if c > 0 {
				bl = append(bl, fmt.Sprintf("%d:%d", 100*i, c))
			}
		}
		fmt.Fprintf(w, "  late %s (%d, %v..%v): learners #%d..#%d peers #%d..#%d\n    classes %v\n    pull: at-start %s; join sync first entry-start %s\n    relay: at-relay %s; the bootstrap peer learned the peer after the peer's start %s\n    per 100 ms: %s\n",
			name, len(es), es[0].at.Round(time.Millisecond), es[len(es)-1].at.Round(time.Millisecond), lmin, lmax, pmin, pmax, cls, q(pullLag), q(pullJS), q(relayLag), q(relayHello), strings.Join(bl, " "))
	}
	// The last percent before 99 %: ranks 98 %..99 % of the n² pairs.
	lo, hi := int(0.98*float64(n*n))-n, int(0.99*float64(n*n))-n
	if hi <= len(evs) && lo >= 0 {
		hist("pairs 98-99%", evs[lo:hi])
		learners, peers := map[int]int{}, map[int]int{}
		for _, e := range evs[lo:hi] {
			learners[e.l]++
			peers[e.p]++
		}
		fmt.Fprintf(w, "  98-99%%: %d learners, %d peers; time %v..%v\n", len(learners), len(peers), evs[lo].at.Round(time.Millisecond), evs[hi-1].at.Round(time.Millisecond))
	}
	clamp := func(i int) int { return max(0, min(i, len(evs))) }
	late("pairs 90-98%", evs[clamp(int(0.90*float64(n*n))-n):clamp(lo)])
	late("pairs 98-99%", evs[clamp(lo):clamp(hi)])
	late("pairs 99-100%", evs[clamp(hi):])
	if len(t.drops) > 0 {
		fmt.Fprintf(w, "  pubsub drops: %v\n", t.drops)
	}
	var after []ev
	for _, e := range evs {
		if e.at > last {
			after = append(after, e)
		}
	}
	hist("pairs after the last start", after)
	if len(t.conns) > 0 {
		c := slices.Clone(t.conns)
		slices.Sort(c)
		fmt.Fprintf(w, "  connections per node: boot %d, others p50 %d max %d\n", t.conns[0], c[len(c)/2], c[len(c)-2])
	}
	fmt.Fprintf(w, "  pairs known at the last start: %.1f%%; counts %v\n", 100*float64(n+len(evs)-len(after))/float64(n*n), t.syncs)
	// Per node, after its start: when the bootstrap peer learned it (its
	// hello), when its join sync's first entry arrived, and when the
	// others learned it (median, p90, max).
	if v := os.Getenv(convTraceEnv); v == "2" || v == "3" {
		boot := map[int]time.Duration{}
		js := map[int]time.Duration{}
		others := map[int][]time.Duration{}
		for _, e := range evs {
			if e.l == 0 {
				if _, ok := boot[e.p]; !ok {
					boot[e.p] = e.at
				}
			}
			if e.via == "join sync" {
				if _, ok := js[e.l]; !ok {
					js[e.l] = e.at
				}
			}
			if e.l != 0 {
				others[e.p] = append(others[e.p], e.at)
			}
		}
		ms := func(d time.Duration) string { return fmt.Sprintf("%4d", d.Milliseconds()) }
		for i := 1; i < n; i++ {
			o := others[i]
			slices.Sort(o)
			if len(o) == 0 {
				continue
			}
			s := t.starts[i]
			st := func(m string) string { return ms(t.steps[fmt.Sprintf("%d %s", i, m)] - s) }
			fmt.Fprintf(w, "  node %3d built+%s conn-out+%s conn-in+%s connected+%s identified+%s sync+%s stream+%s\n", i, ms(t.builtAt[i]-s), ms(t.connOut[i]-s), ms(t.connIn[i]-s),
				st("peer connectedness"), st("peer identified"), st("sync started"), st("sync stream opened"))
			fmt.Fprintf(w, "  node %3d start %s boot+%s js+%s others p50+%s p90+%s max+%s (%d)\n", i, ms(s), ms(boot[i]-s), ms(js[i]-s),
				ms(o[len(o)/2]-s), ms(o[len(o)*9/10]-s), ms(o[len(o)-1]-s), len(o))
		}
	}
	// Per learner: when it reached n-1 (or how many it lacks).
	var done []time.Duration
	for l := range n {
		var mx time.Duration
		cnt := 0
		for _, e := range evs {
			if e.l == l {
				cnt++
				mx = max(mx, e.at)
			}
		}
		if cnt == n-1 {
			done = append(done, mx-t.starts[l])
		}
	}
	slices.Sort(done)
	if len(done) > 0 {
		fmt.Fprintf(w, "  learner complete after its start: %d of %d, p50 %v p90 %v max %v\n", len(done), n, done[len(done)/2].Round(time.Millisecond), done[len(done)*9/10].Round(time.Millisecond), done[len(done)-1].Round(time.Millisecond))
	}
}

func processCPU() time.Duration { return processUsage().cpu }

// usage is what the process has used so far: CPU time (user and system,
// every thread) and minor page faults (first touches of memory).
type usage struct {
	cpu    time.Duration
	faults int64
}

func processUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), faults: int64(ru.Minflt)}
}

// profileWindow profiles the process's CPU for the first second of a rep
// of n nodes when convProfEnv names a file prefix (with or without the
// trace). A profile already running (--cpuprofile) makes it a no-op.
func (t *convTrace) profileWindow(n int) {
	if prefix := os.Getenv(convXTraceEnv); prefix != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d.%d.trace", prefix, n, time.Now().UnixNano())); err == nil {
			if trace.Start(f) != nil {
				_ = f.Close()
				_ = os.Remove(f.Name())
			} else {
				time.AfterFunc(time.Second, func() { trace.Stop(); _ = f.Close() })
			}
		}
	}
	prefix := os.Getenv(convProfEnv)
	if prefix == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d.%d.prof", prefix, n, time.Now().UnixNano()))
	if err != nil {
		return
	}
	if pprof.StartCPUProfile(f) != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return
	}
	time.AfterFunc(time.Second, func() { pprof.StopCPUProfile(); _ = f.Close() })
}

// profLabel runs f, the start of node i, under the pprof label node=boot
// (i = 0) or node=join when convProfEnv is set: the goroutines f starts
// (the host's listeners and the connections they accept, the node's
// loops and its dials) inherit the label, so a profile tells the
// bootstrap peer's CPU from the joiners'.
func profLabel(i int, f func()) {
	if os.Getenv(convProfEnv) == "" {
		f()
		return
	}
	role := "join"
	if i == 0 {
		role = "boot"
	}
	pprof.Do(context.Background(), pprof.Labels("node", role), func(context.Context) { f() })
}

// cpuTo99 prints, when tracing, the process CPU spent from now until 99 %
// of the n² pairs are known (known(i) as pollDiscovery reads it), polled
// every 2 ms. The returned stop ends the poll.
func (t *convTrace) cpuTo99(n int, start time.Time, known func(int) int) (stop func()) {
	if t == nil {
		return func() {}
	}
	done := make(chan struct{})
	cpu0 := processCPU()
	go func() {
		want := int(0.99 * float64(n*n))
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			sum := 0
			for i := range n {
				sum += min(known(i), n)
			}
			if sum >= want {
				fmt.Fprintf(os.Stderr, "conv trace N=%d: CPU to 99%% %v at %v\n", n, (processCPU() - cpu0).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
				return
			}
		}
	}()
	return func() { close(done) }
}
