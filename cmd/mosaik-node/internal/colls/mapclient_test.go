package colls

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

var fast = collections.WithGroupOptions(groups.WithParams(groups.TestParams()))

func startNode(t *testing.T, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New("colls-test", append([]node.Option{node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(),
		node.WithoutDHT(), node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func tctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

// One replica, one client: put, get, del, list and watch through the
// client; a client of a map no replica hosts fails with ErrNoWriter.
func TestMapClient_AgainstAReplica(t *testing.T) {
	srv := startNode(t)
	reps, err := Replicate(srv, []Spec{{"map", "orders"}}, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer reps.Close()
	cli := startNode(t, node.WithBootstrapPeers(srv.AddrInfo()))
	c, err := OpenMap(cli, "orders", fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1, err := c.Put(tctx(t, 20*time.Second), "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(tctx(t, 10*time.Second), "a"); err != nil || got != "1" {
		t.Fatalf("get a: %q %v", got, err)
	}

	var mu sync.Mutex
	var seen []Change
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, func(ch Change) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ch)
			return nil
		})
	}()
	if _, err := c.Put(tctx(t, 10*time.Second), "b", "2"); err != nil {
		t.Fatal(err)
	}
	v3, err := c.Del(tctx(t, 10*time.Second), "a")
	if err != nil || v3 <= v1 {
		t.Fatalf("del a: %d %v (put at %d)", v3, err, v1)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		var put, del bool
		for _, ch := range seen {
			put = put || ch.Op == "put" && ch.Key == "b" && ch.Value == "2"
			del = del || ch.Op == "del" && ch.Key == "a" && ch.Version >= uint64(v3)
		}
		return put && del
	}, "watch did not report put b and del a")
	stop()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	mu.Lock()
	for _, ch := range seen {
		if ch.Key == "a" && ch.Op == "put" {
			t.Errorf("watch reported the put before it started: %v", ch)
		}
	}
	mu.Unlock()

	if _, err := c.Get(tctx(t, 10*time.Second), "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a deleted key: %v", err)
	}
	l, err := c.List(tctx(t, 10*time.Second))
	if err != nil || len(l.Entries) != 1 || l.Entries[0] != (Entry{"b", "2"}) || l.Version < uint64(v3) {
		t.Fatalf("list: %+v %v", l, err)
	}

	lone := startNode(t)
	nc, err := OpenMap(lone, "orders", fast)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := nc.Put(ctx, "x", "y"); !errors.Is(err, ErrNoWriter) || time.Since(start) > testutil.Scale(5*time.Second) {
		t.Fatalf("put with no writer: %v after %v", err, time.Since(start))
	}
}
