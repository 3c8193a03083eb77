package collections_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

// Job is what a job queue holds.
type Job struct {
	Cmd string
}

// Jobs is shared by every program that schedules or runs jobs: at most
// 1000 pending, the lowest priority evicted first.
var Jobs = collections.BoundedPriorityQueueDef[int64, string, Job]("example.jobs", 1000)

// A scheduler inserts jobs; a worker takes the most urgent one with a
// compare-and-swap, so two workers never run the same job.
func ExamplePriorityQueue() {
	n, err := node.New("example")
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	jobs, err := Jobs.Writer(n)
	if err != nil {
		log.Fatal(err)
	}
	defer jobs.Close()
	ctx := context.Background()
	if err := jobs.When().Online(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := jobs.Insert(ctx, 5, "backup", Job{Cmd: "tar"}); err != nil {
		log.Fatal(err)
	}
	if _, err := jobs.Insert(ctx, 9, "deploy", Job{Cmd: "make deploy"}); err != nil {
		log.Fatal(err)
	}
	top, ok := jobs.Max()
	if !ok {
		return
	}
	taken, _, err := jobs.CompareAndSwapValue(ctx, top.Key, top.Value, nil) // delete it if unchanged
	if err != nil {
		log.Fatal(err)
	}
	if taken {
		fmt.Println("run", top.Value.Cmd)
	}
	// Drop everything below priority 3.
	if _, err := jobs.RemoveRange(ctx, collections.Unbounded[int64](), collections.Excluded[int64](3)); err != nil {
		log.Fatal(err)
	}
}
