package groups

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// tally is a state machine: a sum that commands add to.
type tally struct{ sum int64 }

func (*tally) Signature() catalog.ID { return catalog.IDFromString("example-tally-v1") }

func (t *tally) Apply(_ ApplyContext, cmds []int64) {
	for _, c := range cmds {
		t.sum += c
	}
}

func (t *tally) Query(struct{}) int64       { return t.sum }
func (t *tally) Snapshot(w io.Writer) error { return CBOREncoder(w).Encode(t.sum) }
func (t *tally) Restore(r io.Reader) error  { return CBORDecoder(r).Decode(&t.sum) }

// Join a group, wait to be online, execute commands and read the result
// linearizably. A real Service comes from the node (over libp2p bonds);
// this one runs on the tests' in-memory network.
func ExampleJoin() {
	svc := newMemNet().newService("a", false)
	defer svc.Close()

	g, err := Join[int64, struct{}, int64](svc, KeyFromSecret("example"), &tally{}, WithParams(TestParams()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.When().Online(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := g.ExecuteMany(ctx, []int64{1, 2, 3}); err != nil {
		fmt.Println(err)
		return
	}
	sum, _, err := g.Query(ctx, struct{}{}, Strong)
	fmt.Println(sum, err)
	// Output: 6 <nil>
}
