package collections_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
)

type user struct{ Nickname string }

// users is defined once and opened by every program that shares it.
var users = collections.MapDef[string, user]("example.users",
	collections.WithGroupOptions(groups.WithParams(groups.TestParams())))

// Open a replicated map as a writer on a node, write, compare-and-swap
// and read it back locally.
func ExampleMapDef() {
	n, err := node.New("example", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	m, err := users.Writer(n)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.When().Online(ctx); err != nil { // alone, it bootstraps a cluster of one
		fmt.Println(err)
		return
	}
	if _, err := m.Insert(ctx, "bob", user{"bob"}); err != nil {
		fmt.Println(err)
		return
	}
	old, renamed := user{"bob"}, user{"bobby"}
	swapped, _, err := m.CompareAndSwap(ctx, "bob", &old, &renamed)
	if err != nil {
		fmt.Println(err)
		return
	}
	again, _, _ := m.CompareAndSwap(ctx, "bob", &old, &renamed)
	u, _ := m.Get("bob")
	fmt.Println(swapped, again, u.Nickname, m.Len())
	// Output: true false bobby 1
}
