//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestCrash_ProducerSIGKILLAndRestart kills a producer process with
// SIGKILL while it streams to two consumer processes, and restarts it
// with the same key on the same address. The consumers resubscribe by
// themselves within their backoff, and each reports the restart as a gap
// exactly where it fell: after the last datum of the first run it
// received, counting the datums of the new run it missed.
func TestCrash_ProducerSIGKILLAndRestart(t *testing.T) {
	const network, stream = "it-crash", "ticks"
	dir := t.TempDir()
	key := filepath.Join(dir, "producer.key")
	common := []string{"--network", network, "--profile", "fast", "--log-level", "info"}
	startProducer := func(name, listen, prefix string) (*proc, *feeder, string) {
		fd, stdin, err := newFeeder(prefix, 5*time.Millisecond) // 200 datums/s
		if err != nil {
			t.Fatal(err)
		}
		addrFile := filepath.Join(dir, name+".addrs")
		args := append([]string{"produce"}, common...)
		args = append(args, "--key", key, "--listen", listen, "--addr-file", addrFile, stream)
		p := start(t, name, stdin, args...)
		_ = stdin.Close() // the child holds its own copy
		var addr string
		testutil.Eventually(t, 15*time.Second, func() bool {
			b, err := os.ReadFile(addrFile)
			addr = strings.TrimSpace(strings.Split(string(b), "\n")[0])
			return err == nil && addr != ""
		}, "%s wrote no address file", name)
		go fd.run()
		t.Cleanup(func() { fd.close() })
		return p, fd, addr
	}
	prod1, fd1, paddr := startProducer("producer-run1", "/ip4/127.0.0.1/tcp/0", "1:")
	// The restart listens where the first run did, as a service manager
	// would restart it.
	listen := paddr[:strings.Index(paddr, "/p2p/")]

	var cons []*proc
	var urls []string
	for _, name := range []string{"c1", "c2"} {
		args := append([]string{"consume"}, common...)
		args = append(args, "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--bootstrap", paddr, stream)
		c := start(t, name, nil, args...)
		cons, urls = append(cons, c), append(urls, httpURL(t, c))
	}
	count := func(c *proc, prefix string) int {
		n := 0
		for _, l := range lines(c.stdout.String()) {
			if strings.HasPrefix(l, prefix) {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return count(cons[0], "1:") >= 50 && count(cons[1], "1:") >= 50
	}, "consumers did not receive the first run")

	// SIGKILL: no departure, no Close frame, nothing flushed.
	if err := prod1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-prod1.done
	fd1.close()
	killedAt := time.Now()

	_, fd2, addr2 := startProducer("producer-run2", listen, "2:")
	if peerIDOf(addr2) != peerIDOf(paddr) {
		t.Fatalf("restarted producer is %s, want %s (same key)", peerIDOf(addr2), peerIDOf(paddr))
	}
	restartedAt := time.Now()
	for i, c := range cons {
		testutil.Eventually(t, 30*time.Second, func() bool { return count(c, "2:") > 0 },
			"c%d did not resubscribe to the restarted producer", i+1)
		t.Logf("c%d: first datum of the new run by %v after the restart (%v after the kill)", i+1, time.Since(restartedAt), time.Since(killedAt))
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return count(cons[0], "2:") >= 50 && count(cons[1], "2:") >= 50
	}, "consumers did not receive the second run")
	last := fd2.close()
	final := "2:" + strconv.Itoa(last)
	for i, c := range cons {
		testutil.Eventually(t, 15*time.Second, func() bool {
			l := lines(c.stdout.String())
			return len(l) > 0 && l[len(l)-1] == final
		}, "c%d did not print the last datum %s", i+1, final)
	}

	for i, c := range cons {
		name := "c" + strconv.Itoa(i+1)
		var run1, run2 []uint64
		for _, l := range lines(c.stdout.String()) {
			switch {
			case strings.HasPrefix(l, "1:") && len(run2) == 0:
				v, _ := strconv.ParseUint(l[2:], 10, 64)
				run1 = append(run1, v)
			case strings.HasPrefix(l, "2:"):
				v, _ := strconv.ParseUint(l[2:], 10, 64)
				run2 = append(run2, v)
			default:
				t.Fatalf("%s printed %q out of place", name, l)
			}
		}
		contiguous := func(run []uint64) bool {
			for j := 1; j < len(run); j++ {
				if run[j] != run[j-1]+1 {
					return false
				}
			}
			return len(run) > 0
		}
		if !contiguous(run1) || !contiguous(run2) {
			t.Fatalf("%s: runs not contiguous (a gap inside a run): %v … / %v …", name, run1[:min(5, len(run1))], run2[:min(5, len(run2))])
		}
		gaps := gapsLogged(c.stderr.String())
		b, f := run1[len(run1)-1], run2[0]
		want := gapLog{cause: "restart", missed: f - 1, after: b, next: f}
		if len(gaps) != 1 || gaps[0] != want {
			t.Errorf("%s logged gaps %+v, want exactly %+v", name, gaps, want)
		}
		var doc streamsDoc
		if err := getJSON(localHTTP, urls[i]+"api/streams", &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Consumers) != 1 || doc.Consumers[0].Totals.Gaps != f-1 {
			t.Errorf("%s: status %+v, want %d gaps", name, doc.Consumers, f-1)
		}
		t.Logf("%s: run 1 datums %d..%d, run 2 datums %d..%d; gap %+v", name, run1[0], b, f, run2[len(run2)-1], gaps)
	}
	for i, c := range cons {
		c.signal(syscall.SIGTERM)
		if code := c.wait(15 * time.Second); code != 0 {
			t.Errorf("c%d exit %d", i+1, code)
		}
	}
}
