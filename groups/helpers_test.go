package groups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// counter is mosaik's test machine: an int64 that commands add to.
type counter struct{ v int64 }

func (*counter) Signature() catalog.ID { return catalog.IDFromString("test-counter") }
func (c *counter) Apply(_ ApplyContext, cmds []int64) {
	for _, d := range cmds {
		c.v += d
	}
}
func (c *counter) Query(struct{}) int64 { return c.v }
func (c *counter) Snapshot(w io.Writer) error {
	return CBOREncoder(w).Encode(c.v)
}
func (c *counter) Restore(r io.Reader) error {
	return CBORDecoder(r).Decode(&c.v)
}

// tctx is a context bounded by a scaled timeout.
func tctx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

func joinCounter(t testing.TB, s *Service, opts ...Option) *Group[int64, struct{}, int64] {
	t.Helper()
	g, err := Join[int64, struct{}, int64](s, KeyFromSecret("counter"), &counter{}, append([]Option{WithParams(TestParams())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func weak(t testing.TB, g *Group[int64, struct{}, int64]) int64 {
	t.Helper()
	v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, Weak)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// voters is the leader's current voter count as this node's core sees it.
func voters[C, Q, R any](g *Group[C, Q, R]) int {
	n := make(chan int, 1)
	if g.c.do(context.Background(), func() { n <- len(g.c.conf.GetVoters()) }) != nil {
		return -1
	}
	return <-n
}

// settledVoters is g's number of voters once its configuration is not
// joint, else -1. A change from one voter to three is one joint step: the
// leader counts three voters at once, but until the joint configuration
// is left, a decision still needs the old voter; cut off then, the two
// others elect no leader (raft's joint consensus). Tests that cut a
// member off right after the cluster formed wait for this.
func settledVoters[C, Q, R any](g *Group[C, Q, R]) int {
	n := make(chan int, 1)
	if g.c.do(context.Background(), func() {
		if len(g.c.conf.GetVotersOutgoing()) > 0 {
			n <- -1
			return
		}
		n <- len(g.c.conf.GetVoters())
	}) != nil {
		return -1
	}
	return <-n
}

func fmtAll(k Key) string {
	return fmt.Sprintf("%v %s %x %#v %+v", k, k, k, k, k)
}

func asOffline(err error, o **offline) bool { return errors.As(err, o) }
