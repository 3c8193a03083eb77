package groups_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

func newIdentity(t testing.TB) crypto.PrivKey {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// Three nodes with data dirs commit, all close, and restart with the same
// identities and dirs: the first one back, alone, already has the state
// and committed index it had; together they elect a leader and take new
// writes.
func TestRealNet_DataDirRestartAll(t *testing.T) {
	keys := []crypto.PrivKey{newIdentity(t), newIdentity(t), newIdentity(t)}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	opts := func(i int) []node.Option { return []node.Option{node.WithIdentity(keys[i]), node.WithDataDir(dirs[i])} }

	nodes, gs := startCluster(t, 3, opts)
	// 300 ones pass TestParams' SnapshotEntries: the restart restores a
	// snapshot and replays the entries after it.
	cmds := make([]int64, 300)
	for i := range cmds {
		cmds[i] = 1
	}
	r, err := gs[1].ExecuteMany(tctx(t, 10*time.Second), cmds)
	if err != nil {
		t.Fatal(err)
	}
	committed := make([]uint64, len(gs))
	for i, g := range gs {
		if err := g.When().Committed(tctx(t, 10*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
		committed[i] = g.Committed()
	}
	id := gs[0].ID()
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, dir := range dirs {
		if _, err := os.Stat(groups.StorePath(dir, id)); err != nil {
			t.Fatalf("n%d: no store file: %v", i, err)
		}
	}

	var gs2 []*groups.CounterGroup
	var first *node.Node
	for i := range keys {
		o := opts(i)
		if i > 0 {
			o = append(o, bootstrapOf(first))
		}
		nd := startNode(t, o...)
		if i == 0 {
			first = nd
		}
		g := groups.JoinCounter(t, nd.Groups())
		gs2 = append(gs2, g)
		if i == 0 {
			// Alone and without a quorum: everything it has is its own.
			testutil.Eventually(t, 5*time.Second, func() bool {
				return g.Committed() >= committed[0] && groups.WeakSum(t, g) == 300
			}, "n0 restarted alone: committed %d (was %d), sum %d", testutil.Lazy(func() any { return g.Committed() }), committed[0], groups.WeakSum(t, g))
			if g.IsLeader() {
				t.Fatal("n0 alone leads a three-voter group")
			}
		}
	}
	for i, g := range gs2 {
		testutil.Eventually(t, 15*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, groups.Strong)
			return err == nil && v == 300 && g.Committed() >= committed[i]
		}, "n%d did not resume", i)
	}
	if groups.Voters(gs2[0]) != 3 {
		t.Fatalf("%d voters after the restart, want 3", groups.Voters(gs2[0]))
	}
	if _, err := gs2[2].Execute(tctx(t, 10*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	for i, g := range gs2 {
		if v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, groups.Strong); err != nil || v != 305 {
			t.Fatalf("n%d after the restart: %d (%v), want 305", i, v, err)
		}
	}
}

// killChildEnv carries the data dir, the identity (hex of the marshalled
// key) and the bootstrap address of a node run in a child process (this
// test binary again) until it is killed.
const killChildEnv = "MOSAIK_GROUPS_KILL_CHILD"

// A member with a data dir, in a child process, is killed with SIGKILL
// while writes flow through it and the others; restarted with its
// identity and dir, it resumes from its store and converges to the
// others' state: at once, or after the leader removed it from the
// configuration (its store still says it is a voter).
func TestRealNet_DataDirSIGKILL(t *testing.T) {
	if v := os.Getenv(killChildEnv); v != "" {
		killChild(t, v)
		return
	}
	t.Run("restart", func(t *testing.T) { sigkillRestart(t, false) })
	t.Run("restart-after-removal", func(t *testing.T) { sigkillRestart(t, true) })
}

func sigkillRestart(t *testing.T, afterRemoval bool) {
	nodes, gs := startCluster(t, 2, nil)
	key := newIdentity(t)
	raw, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := nodes[0].AddrInfo()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRealNet_DataDirSIGKILL$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%s/p2p/%s", killChildEnv, dir, hex.EncodeToString(raw), addr.Addrs[0], addr.ID))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)

	// Writes flow from n0 while the child writes too.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Second))
			if _, err := gs[0].Execute(ctx, 1); err == nil {
				sent++
			}
			cancel()
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	child := peer.ID("")
	var acked uint64
	sc := bufio.NewScanner(out)
	// Kill once the child has applied writes as a voter.
	for (acked < 30 || groups.Voters(gs[0]) != 3) && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "child":
			child, _ = peer.Decode(f[1])
		case len(f) == 2 && f[0] == "acked":
			acked, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	if acked < 30 || groups.Voters(gs[0]) != 3 {
		t.Fatalf("child stopped at index %d (%d voters): %v", acked, groups.Voters(gs[0]), sc.Err())
	}
	kill()
	if child != peer.ID("") {
		if want, _ := peer.IDFromPrivateKey(key); child != want {
			t.Fatalf("child ran as %s, want %s", child, want)
		}
	}
	if afterRemoval {
		// Two writers left: the leader removes the dead voter and keeps one.
		testutil.Eventually(t, 15*time.Second, func() bool { return groups.Voters(gs[0]) == 1 }, "the killed member was not removed")
	}
	last, commit, err := groups.StoredLog(dir, gs[0].ID())
	if err != nil {
		t.Fatalf("store after SIGKILL: %v", err)
	}
	// Every entry the child applied is in its log on disk. The stored
	// commit index may lag the applied one: a hard state that moves only
	// the commit index waits for the next write (etcd's raft.MustSync; the
	// leader tells the commit index again), so a kill right after an apply
	// finds the commit of the write before.
	if last < acked || last < commit {
		t.Fatalf("store after SIGKILL: last %d, commit %d, but the child applied %d", last, commit, acked)
	}

	// Restarted without a bootstrap peer, on a new port no one knows: what
	// it has comes from its store.
	n2 := startNode(t, node.WithIdentity(key), node.WithDataDir(dir))
	g2 := groups.JoinCounter(t, n2.Groups())
	testutil.Eventually(t, 5*time.Second, func() bool {
		return g2.Committed() >= commit && groups.WeakSum(t, g2) > 0
	}, "restarted node did not resume its committed index %d", commit)
	if err := n2.Discovery().SyncWith(tctx(t, 5*time.Second), nodes[0].AddrInfo()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(testutil.Scale(300 * time.Millisecond)) // let n0's writes flow to the restarted node too
	close(stop)
	wg.Wait()
	v0, at, err := gs[0].Query(tctx(t, 5*time.Second), struct{}{}, groups.Strong)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		return g2.Committed() >= at && groups.WeakSum(t, g2) >= v0
	}, "restarted node at %d, sum %d; the others at %d, sum %d", testutil.Lazy(func() any { return g2.Committed() }), groups.WeakSum(t, g2), at, v0)
	if _, err := g2.Execute(tctx(t, 10*time.Second), 1000); err != nil {
		t.Fatal(err)
	}
	for i, g := range []*groups.CounterGroup{gs[0], gs[1], g2} {
		if v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, groups.Strong); err != nil || v != v0+1000 {
			t.Fatalf("n%d: %d (%v), want %d", i, v, err, v0+1000)
		}
	}
	t.Logf("child applied up to index %d before SIGKILL; n0 executed %d writes", acked, sent)
}

// killChild runs a node with a data dir that joins the counter group and
// executes ones, printing each index applied, until it is killed.
func killChild(t *testing.T, env string) {
	parts := strings.SplitN(env, ",", 3)
	raw, err := hex.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(realNetwork, loopback, node.WithFastProfile(), node.WithLogger(testutil.Logger()),
		node.WithIdentity(key), node.WithDataDir(parts[0]), node.WithBootstrap(parts[2]))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("child", n.ID())
	g := groups.JoinCounter(t, n.Groups())
	w := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(testutil.Scale(time.Minute))
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Second))
		idx, err := g.Execute(ctx, 1)
		cancel()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // pacing while the child has no leader yet
			continue
		}
		fmt.Fprintln(w, "acked", idx)
		_ = w.Flush()
	}
	// Not killed within a minute: the parent is gone; never Close cleanly.
	os.Exit(3)
}
