package groups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// kv is the linearizability tests' machine: puts of int64 values by key.
type kv struct{ m map[string]int64 }

type kvPut struct {
	Key string
	Val int64
}

func (*kv) Signature() catalog.ID { return catalog.IDFromString("test-kv") }
func (s *kv) Apply(_ ApplyContext, cmds []kvPut) {
	for _, c := range cmds {
		s.m[c.Key] = c.Val
	}
}
func (s *kv) Query(key string) int64 { return s.m[key] }
func (s *kv) Snapshot(w io.Writer) error {
	return CBOREncoder(w).Encode(s.m)
}
func (s *kv) Restore(r io.Reader) error {
	m := map[string]int64{}
	if err := CBORDecoder(r).Decode(&m); err != nil {
		return err
	}
	s.m = m
	return nil
}

type kvIn struct {
	put bool
	key string
	val int64
}

// never is the return time of an operation whose outcome is unknown: it
// may take effect at any point after its call.
const never = int64(1) << 62

var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvIn).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, in, out any) (bool, any) {
		i := in.(kvIn)
		if i.put {
			return true, i.val
		}
		return out.(int64) == state.(int64), state
	},
	DescribeOperation: func(in, out any) string {
		i := in.(kvIn)
		if i.put {
			return fmt.Sprintf("put(%s, %d)", i.key, i.val)
		}
		return fmt.Sprintf("get(%s) -> %v", i.key, out)
	},
}

type kvGroup = Group[kvPut, string, int64]

type lincluster struct {
	net   *memNet
	svcs  []*Service
	gs    []*kvGroup
	start time.Time

	mu   sync.Mutex
	hist []porcupine.Operation
	// rejoined: groups joined during a run in place of crashed ones (no
	// clients; final reads only)
	rejoined []*kvGroup
	// nodes on the minority side of a partition from minorityFrom to
	// minorityTo (0 while it holds), and the successful puts on them
	minority     map[peer.ID]bool
	minorityFrom int64
	minorityTo   int64
	minorityPuts []timedPut
}

func newLincluster(t *testing.T, n int) *lincluster {
	net := newMemNet()
	var svcs []*Service
	for i := range n {
		svcs = append(svcs, net.service(t, fmt.Sprint(i), false))
	}
	c := newLinclusterOn(t, svcs)
	c.net = net
	return c
}

// newLinclusterOn joins the kv group on every service (the first one
// joins and leads alone before the others join) and waits for the voters.
// Services of any bond layer will do: the memnet's or real hosts'.
func newLinclusterOn(t *testing.T, svcs []*Service) *lincluster {
	return newLinclusterWith(t, svcs, TestParams())
}

// newLinclusterWith is newLinclusterOn with the group parameters p.
func newLinclusterWith(t *testing.T, svcs []*Service, p Params) *lincluster {
	c := &lincluster{minority: map[peer.ID]bool{}}
	for i, s := range svcs {
		g, err := Join[kvPut, string, int64](s, KeyFromSecret("kv"), &kv{m: map[string]int64{}}, WithParams(p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		c.svcs = append(c.svcs, s)
		c.gs = append(c.gs, g)
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := min(5, len(svcs))
	if want%2 == 0 {
		want--
	}
	// Every member has left the joint configuration (settledVoters): the
	// runs cut members off next.
	testutil.Eventually(t, 15*time.Second, func() bool {
		for _, g := range c.gs {
			if settledVoters(g) != want {
				return false
			}
		}
		return true
	}, "%d voters on every member", want)
	c.start = time.Now()
	return c
}

func (c *lincluster) now() int64 { return time.Since(c.start).Nanoseconds() }

func (c *lincluster) leader() int {
	for i, g := range c.gs {
		if g.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *lincluster) record(op porcupine.Operation) {
	c.mu.Lock()
	c.hist = append(c.hist, op)
	c.mu.Unlock()
}

// client runs puts and strong gets on node i until stop closes or the
// node's group ends.
func (c *lincluster) client(t *testing.T, id, node int, stop <-chan struct{}) {
	g := c.gs[node]
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprint("k", rng.IntN(2))
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(1500*time.Millisecond))
		call := c.now()
		if rng.IntN(2) == 0 {
			val := int64(id*1_000_000 + k + 1)
			_, err := g.Execute(ctx, kvPut{key, val})
			ret := c.now()
			cancel()
			c.notePut(g, call, ret, err, key, val)
			switch {
			case err == nil:
				c.record(porcupine.Operation{ClientId: id, Input: kvIn{true, key, val}, Call: call, Return: ret})
			case definitelyNotApplied(err):
			default:
				c.record(porcupine.Operation{ClientId: id, Input: kvIn{true, key, val}, Call: call, Return: never})
			}
			if errors.Is(err, ErrTerminated) {
				return
			}
			continue
		}
		v, _, err := g.Query(ctx, key, Strong)
		ret := c.now()
		cancel()
		if err == nil {
			c.record(porcupine.Operation{ClientId: id, Input: kvIn{false, key, 0}, Output: v, Call: call, Return: ret})
		}
		if errors.Is(err, ErrTerminated) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // pacing while the group has no leader
		}
	}
}

type timedPut struct {
	call, ret int64
	desc      string
}

func definitelyNotApplied(err error) bool {
	if errors.Is(err, ErrNotApplied) {
		return true
	}
	var oe *OfflineError[kvPut]
	return errors.As(err, &oe) && !oe.MayApply
}

// notePut remembers the successful puts on minority nodes; check fails
// on those issued and completed while the partition held. (They are
// judged at the end: while the partition holds, minorityTo is not known.)
func (c *lincluster) notePut(g *kvGroup, call, ret int64, err error, key string, val int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.minority[g.c.self] {
		c.minorityPuts = append(c.minorityPuts, timedPut{call, ret, fmt.Sprintf("put(%s,%d) on %s", key, val, g.c.self)})
	}
}

func (c *lincluster) setMinority(ps []peer.ID, from int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		c.minority[p] = true
	}
	c.minorityFrom = from
}

func (c *lincluster) endMinority(to int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.minorityTo = to
}

// faultPhase is how long run's clients work before, during and after the
// fault.
var faultPhase = testutil.Scale(700 * time.Millisecond)

// run drives clients on every node through before, fault and after.
func (c *lincluster) run(t *testing.T, fault func(), heal func()) {
	c.runFault(t, fault, heal, faultPhase)
}

// runFault is run with a fault that holds for d.
func (c *lincluster) runFault(t *testing.T, fault func(), heal func(), d time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 2 * len(c.gs) {
		wg.Go(func() { c.client(t, id, id%len(c.gs), stop) })
	}
	phase := faultPhase
	time.Sleep(phase) // let the clients build history before the fault
	fault()
	time.Sleep(d) // the fault holds for d of wall time while the clients run: a duration, not a condition to wait for
	heal()
	time.Sleep(phase) // history after the heal
	close(stop)
	wg.Wait()
	c.finalReads(t)
	c.check(t)
}

func (c *lincluster) finalReads(t *testing.T) {
	c.mu.Lock()
	gs := append(slices.Clone(c.gs), c.rejoined...)
	c.mu.Unlock()
	for _, g := range gs {
		select {
		case <-g.When().Terminated():
			continue
		default:
		}
		for _, key := range []string{"k0", "k1"} {
			testutil.Eventually(t, 15*time.Second, func() bool {
				call := c.now()
				v, _, err := g.Query(tctx(t, 2*time.Second), key, Strong)
				if err != nil {
					return false
				}
				c.record(porcupine.Operation{ClientId: 1000, Input: kvIn{false, key, 0}, Output: v, Call: call, Return: c.now()})
				return true
			}, "final strong read of %s", key)
		}
	}
}

func (c *lincluster) check(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var minorityOK []string
	for _, p := range c.minorityPuts {
		if p.call >= c.minorityFrom && c.minorityTo != 0 && p.ret <= c.minorityTo {
			minorityOK = append(minorityOK, p.desc)
		}
	}
	if len(minorityOK) > 0 {
		t.Fatalf("%d writes succeeded on the minority side, the first: %v", len(minorityOK), minorityOK[:min(5, len(minorityOK))])
	}
	puts := 0
	for _, op := range c.hist {
		if op.Input.(kvIn).put && op.Return != never {
			puts++
		}
	}
	if puts < 10 {
		t.Fatalf("only %d successful puts: the history proves nothing", puts)
	}
	res := porcupine.CheckOperationsTimeout(kvModel, c.hist, testutil.Scale(20*time.Second))
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable: %v", len(c.hist), res)
	}
	t.Logf("%d operations (%d successful puts) linearizable", len(c.hist), puts)
}

func TestLinearizable_LeaderCrash(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := newLincluster(t, n)
			c.run(t, func() {
				if l := c.leader(); l >= 0 {
					_ = c.svcs[l].Close()
				}
			}, func() {})
		})
	}
}

func TestLinearizable_IsolatedLeader(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := newLincluster(t, n)
			c.runIsolatedLeader(t, func(leader, rest []peer.ID) { c.net.partition(leader, rest) }, c.net.heal, faultPhase)
		})
	}
}

// A leader cut off for three times RemoveAfter: the others elect a leader
// and remove it from the configuration; it must never commit alone (until
// session 17 it forced an epoch of its own after RemoveAfter and took
// writes that were discarded on heal), and on heal it catches up (the
// final strong reads on every member).
func TestLinearizable_IsolatedLeaderPastRemoveAfter(t *testing.T) {
	c := newLincluster(t, 3)
	c.runIsolatedLeader(t, func(leader, rest []peer.ID) { c.net.partition(leader, rest) }, c.net.heal,
		3*TestParams().RemoveAfter)
}

// runIsolatedLeader runs the clients while partition cuts the leader off
// from the rest for d, until heal: writes on the leader's side must fail.
func (c *lincluster) runIsolatedLeader(t *testing.T, partition func(leader, rest []peer.ID), heal func(), d time.Duration) {
	c.runFault(t, func() {
		l := c.leader()
		if l < 0 {
			return
		}
		var rest []peer.ID
		for i, s := range c.svcs {
			if i != l {
				rest = append(rest, s.self)
			}
		}
		// The minority's window opens once the partition holds: a put
		// called a moment before may still commit with the majority's
		// acks sent before the cut.
		partition([]peer.ID{c.svcs[l].self}, rest)
		c.setMinority([]peer.ID{c.svcs[l].self}, c.now())
	}, func() {
		c.endMinority(c.now())
		heal()
	}, d)
}

func TestLinearizable_Split23(t *testing.T) {
	c := newLincluster(t, 5)
	c.run(t, func() {
		two := []peer.ID{c.svcs[0].self, c.svcs[1].self}
		three := []peer.ID{c.svcs[2].self, c.svcs[3].self, c.svcs[4].self}
		c.net.partition(two, three)
		c.setMinority(two, c.now())
	}, func() {
		c.endMinority(c.now())
		c.net.heal()
	})
}

func TestLinearizable_DropDelay(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := newLincluster(t, n)
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(1, 2))
			c.run(t, func() {
				c.net.setFault(func(_, _ peer.ID, kind byte) (bool, time.Duration) {
					mu.Lock()
					defer mu.Unlock()
					if kind == kindRaft && rng.IntN(10) == 0 {
						return true, 0
					}
					if rng.IntN(3) == 0 {
						return false, time.Duration(rng.IntN(5)) * time.Millisecond
					}
					return false, 0
				})
			}, func() { c.net.setFault(nil) })
		})
	}
}
