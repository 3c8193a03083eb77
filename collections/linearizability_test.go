package collections_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// The porcupine model of one key of a Map[string, int64]: the state is
// the key's value, 0 while absent (the test never writes 0).

type linKind uint8

const (
	linInsert linKind = iota
	linRemove
	linCAS
	linGet
)

type linIn struct {
	kind     linKind
	key      string
	val      int64 // insert
	exp, new int64 // CAS; 0 is absent (expected) or delete (new)
}

// casOut is a CAS's output; known is false when only its commit is known
// (ErrOutcomeUnknown) or not even that (a "maybe" operation).
type casOut struct{ known, swapped bool }

// linNever is the return time of an operation whose outcome is unknown
// (it failed with MayApply): it may take effect at any point after its
// call, or never.
const linNever = int64(1) << 62

var mapModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(linIn).key
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
		s, i := state.(int64), in.(linIn)
		switch i.kind {
		case linInsert:
			return true, i.val
		case linRemove:
			return true, int64(0)
		case linCAS:
			match := s == i.exp
			next := s
			if match {
				next = i.new
			}
			// A CAS that expects absent and deletes matches but changes
			// nothing, and reports that it did not apply.
			swapped := match && (s != 0 || i.new != 0)
			o := out.(casOut)
			return !o.known || o.swapped == swapped, next
		default:
			return out.(int64) == s, s
		}
	},
	DescribeOperation: func(in, out any) string {
		i := in.(linIn)
		switch i.kind {
		case linInsert:
			return fmt.Sprintf("insert(%s, %d)", i.key, i.val)
		case linRemove:
			return fmt.Sprintf("remove(%s)", i.key)
		case linCAS:
			return fmt.Sprintf("cas(%s, %d -> %d) -> %+v", i.key, i.exp, i.new, out)
		}
		return fmt.Sprintf("get(%s) -> %v", i.key, out)
	},
}

type linHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// seen is a recent value of each key, the expected value of CASes
	seen map[string]int64
	// writes counts mutations known to have committed, dropped those
	// known not to have been applied
	writes, dropped int
}

func (h *linHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *linHistory) record(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	if op.Return != linNever && op.Input.(linIn).kind != linGet {
		h.writes++
	}
}

func (h *linHistory) see(key string, v int64) {
	h.mu.Lock()
	h.seen[key] = v
	h.mu.Unlock()
}

func (h *linHistory) recent(key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[key]
}

// mutation records a mutation by how it ended: done, maybe (MayApply, or
// an error that is not a *MutationError), or dropped (certainly not
// applied).
func mutation[A any](h *linHistory, id int, in linIn, out any, call int64, err error) {
	ret := h.now()
	if err != nil {
		var me *collections.MutationError[A]
		if errors.As(err, &me) && !me.MayApply {
			h.mu.Lock()
			h.dropped++
			h.mu.Unlock()
			return
		}
		ret = linNever
		if in.kind == linCAS {
			out = casOut{}
		}
	}
	h.record(porcupine.Operation{ClientId: id, Input: in, Output: out, Call: call, Return: ret})
}

// linClient issues random operations on m until stop closes or m's group
// ends. Reads are Sync, then Get: linearizable.
func linClient(h *linHistory, id int, m *collections.Map[string, int64], stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), 16))
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprint("k", rng.IntN(2))
		val := int64(id*1_000_000 + n)
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(1500*time.Millisecond))
		call := h.now()
		var err error
		switch r := rng.IntN(20); {
		case r < 6:
			_, err = m.Insert(ctx, key, val)
			mutation[collections.KV[string, int64]](h, id, linIn{kind: linInsert, key: key, val: val}, nil, call, err)
			if err == nil {
				h.see(key, val)
			}
		case r < 8:
			_, err = m.Remove(ctx, key)
			mutation[string](h, id, linIn{kind: linRemove, key: key}, nil, call, err)
		case r < 14:
			in := linIn{kind: linCAS, key: key, exp: h.recent(key), new: val}
			if rng.IntN(4) == 0 {
				in.exp = 0
			}
			if rng.IntN(6) == 0 {
				in.new = 0
			}
			var exp, nw *int64
			if in.exp != 0 {
				exp = &in.exp
			}
			if in.new != 0 {
				nw = &in.new
			}
			var ok bool
			ok, _, err = m.CompareAndSwap(ctx, key, exp, nw)
			if errors.Is(err, collections.ErrOutcomeUnknown) {
				// Committed; only whether it matched is unknown.
				h.record(porcupine.Operation{ClientId: id, Input: in, Output: casOut{}, Call: call, Return: h.now()})
			} else {
				mutation[collections.CAS[string, int64]](h, id, in, casOut{known: true, swapped: ok}, call, err)
			}
			if err == nil && ok {
				h.see(key, in.new)
			}
		default:
			_, err = m.Sync(ctx)
			if err == nil {
				v, _ := m.Get(key)
				h.record(porcupine.Operation{ClientId: id, Input: linIn{kind: linGet, key: key}, Output: v, Call: call, Return: h.now()})
				h.see(key, v)
			}
		}
		cancel()
		if errors.Is(err, collections.ErrTerminated) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // pacing while the group has no leader
		}
	}
}

// Linearizability of Map: two clients on each of three writer replicas
// insert, remove, compare-and-swap and read (Sync, then Get) two keys,
// while the leader is cut off by a partition for a while and then, once
// the three are together again, crashes. Porcupine checks the history.
// mosaik: tests/collections (no port: mosaik has no linearizability check)
func TestMap_Linearizable(t *testing.T) {
	c := newCuts()
	mc := startMapCluster[int64](t, 3, freshName(t), node.WithGroupsOptions(groups.WithFaultHook(c.hook)))
	h := &linHistory{start: time.Now(), seen: map[string]int64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 2 * len(mc.maps) {
		wg.Go(func() { linClient(h, id, mc.maps[id%len(mc.maps)], stop) })
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	phase := testutil.Scale(700 * time.Millisecond)
	time.Sleep(phase) // history before the faults

	l := mc.leader()
	if l < 0 {
		t.Fatal("no leader before the partition")
	}
	var rest []peer.ID
	for i, n := range mc.nodes {
		if i != l {
			rest = append(rest, n.ID())
		}
	}
	c.isolate(mc.nodes[l].ID(), rest)
	time.Sleep(phase) // history during the partition
	c.heal()
	// The crash must wait until the isolated replica is back, or the two
	// survivors could be the old leader (still catching up) and one other.
	testutil.Eventually(t, 30*time.Second, func() bool {
		for i, m := range mc.maps {
			if mc.voters(i) != 3 {
				return false
			}
			if _, err := m.Sync(tctx(t, 2*time.Second)); err != nil {
				return false
			}
		}
		return true
	}, "the three replicas together again after the partition")

	l = mc.leader()
	if l < 0 {
		t.Fatal("no leader before the crash")
	}
	// A crash: the leader's host dies first, so no graceful leave, bond
	// close or catalog departure reaches the others; its node is closed
	// afterwards only to release its goroutines.
	if err := mc.nodes[l].Host().Close(); err != nil {
		t.Fatal(err)
	}
	if err := mc.nodes[l].Close(); err != nil {
		t.Logf("closing the crashed node: %v", err)
	}
	time.Sleep(phase) // history after the crash
	close(stop)
	wg.Wait()

	for i, m := range mc.maps {
		if i == l {
			continue
		}
		for _, key := range []string{"k0", "k1"} {
			testutil.Eventually(t, 20*time.Second, func() bool {
				call := h.now()
				if _, err := m.Sync(tctx(t, 2*time.Second)); err != nil {
					return false
				}
				v, _ := m.Get(key)
				h.record(porcupine.Operation{ClientId: 1000 + i, Input: linIn{kind: linGet, key: key}, Output: v, Call: call, Return: h.now()})
				return true
			}, "final read of %s on replica %d", key, i)
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writes < 20 {
		t.Fatalf("only %d mutations committed: the history proves nothing", h.writes)
	}
	res, info := porcupine.CheckOperationsVerbose(mapModel, h.ops, testutil.Scale(20*time.Second))
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable: %v (%s)", len(h.ops), res, describe(info))
	}
	maybe := 0
	for _, op := range h.ops {
		if op.Return == linNever {
			maybe++
		}
	}
	t.Logf("%d operations (%d committed mutations, %d maybe, %d certainly not applied) linearizable", len(h.ops), h.writes, maybe, h.dropped)
}

// describe names the longest linearizable prefix of each failing key, for
// the failure message.
func describe(info porcupine.LinearizationInfo) string {
	var out []string
	for _, part := range info.PartialLinearizations() {
		longest := 0
		for _, lin := range part {
			longest = max(longest, len(lin))
		}
		out = append(out, fmt.Sprint(longest))
	}
	return fmt.Sprintf("longest partial linearizations: %v", out)
}
