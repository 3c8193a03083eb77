//go:build linux

package integration

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// feeder writes numbered lines ("1", "2", …) into a producer's stdin at
// a steady pace until stopped: the pace is the scenario (a live data
// source), not a wait for a condition.
type feeder struct {
	w       *os.File
	sent    int
	mu      sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	prefix  string
	every   time.Duration
	stopped bool
}

func newFeeder(prefix string, every time.Duration) (*feeder, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &feeder{w: w, stop: make(chan struct{}), done: make(chan struct{}), prefix: prefix, every: every}, r, nil
}

func (f *feeder) run() {
	defer close(f.done)
	tk := time.NewTicker(f.every)
	defer tk.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tk.C:
		}
		f.mu.Lock()
		n := f.sent + 1
		f.mu.Unlock()
		// Counted once written: close may close the pipe under a write, and
		// a line that never reached the pipe was not sent. (A line this
		// short is written to a pipe whole or not at all.)
		if _, err := fmt.Fprintf(f.w, "%s%d\n", f.prefix, n); err != nil {
			return
		}
		f.mu.Lock()
		f.sent = n
		f.mu.Unlock()
	}
}

// close stops feeding and closes the pipe: the producer sees EOF, sends
// what it holds and exits. It returns the number of lines written.
func (f *feeder) close() int {
	f.mu.Lock()
	if !f.stopped {
		f.stopped = true
		close(f.stop)
	}
	f.mu.Unlock()
	_ = f.w.Close() // also unblocks a write stuck on a full pipe
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// gapRE matches the consume command's warning for a gap.
var gapRE = regexp.MustCompile(`msg="datums missed" producer=(\S+) cause=(\S+) missed=(\d+) after=(\d+) next=(\d+)`)

type gapLog struct {
	cause               string
	missed, after, next uint64
}

func gapsLogged(stderr string) []gapLog {
	var out []gapLog
	for _, m := range gapRE.FindAllStringSubmatch(stderr, -1) {
		g := gapLog{cause: m[2]}
		g.missed, _ = strconv.ParseUint(m[3], 10, 64)
		g.after, _ = strconv.ParseUint(m[4], 10, 64)
		g.next, _ = strconv.ParseUint(m[5], 10, 64)
		out = append(out, g)
	}
	return out
}

// numbersOut parses a consumer's stdout lines "<prefix><n>" into n, in
// the order printed.
func numbersOut(t *testing.T, name, stdout, prefix string) []uint64 {
	t.Helper()
	var out []uint64
	for _, l := range lines(stdout) {
		v, err := strconv.ParseUint(strings.TrimPrefix(l, prefix), 10, 64)
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("%s printed %q, want %s<number>", name, l, prefix)
		}
		out = append(out, v)
	}
	return out
}

// checkAccounted checks that a consumer's numbers are strictly increasing
// and that every jump is explained by exactly one logged gap of the given
// cause (numbers are the producer's sequence numbers: line n is datum n).
// It returns the datums missed in all.
func checkAccounted(t *testing.T, name string, got []uint64, gaps []gapLog, cause string) uint64 {
	t.Helper()
	var missed uint64
	byNext := map[uint64]gapLog{}
	for _, g := range gaps {
		if g.cause != cause || g.next != g.after+g.missed+1 {
			t.Errorf("%s logged gap %+v, want cause %s and next = after + missed + 1", name, g, cause)
		}
		byNext[g.next] = g
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if b <= a {
			t.Fatalf("%s printed %d after %d: out of order or repeated", name, b, a)
		}
		if b == a+1 {
			continue
		}
		g, ok := byNext[b]
		if !ok || g.after != a || g.missed != b-a-1 {
			t.Errorf("%s: datums %d..%d never arrived; gap logged: %+v (present %v)", name, a+1, b-1, g, ok)
		}
		delete(byNext, b)
		missed += b - a - 1
	}
	for _, g := range byNext {
		t.Errorf("%s logged a gap %+v that its output does not show", name, g)
	}
	return missed
}

// TestPartition_NetnsCutAndHeal runs one producer and three consumers,
// each a mosaik-node process in its own network namespace on a shared
// bridge, and cuts the bridge ports of two consumers while data flows.
// While cut, the catalogs diverge, the producer drops the cut consumers
// and they drop the producer, within bounded times; the uncut consumer
// keeps receiving. After healing, the catalogs reconverge, the
// subscriptions resume, and every datum a cut consumer missed is reported
// as a gap exactly where it fell (in its log and its gap counters).
func TestPartition_NetnsCutAndHeal(t *testing.T) {
	lab := newNetLab(t, "part", "10.77.1", 4)
	const network, stream = "it-partition", "ticks"
	dir := t.TempDir()
	fd, stdin, err := newFeeder("", 5*time.Millisecond) // 200 datums/s
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	common := []string{"--network", network, "--profile", "fast", "--log-level", "info"}
	startNS := func(i int, name string, stdin *os.File, args ...string) (*proc, *statusOf, string) {
		addrFile := filepath.Join(dir, name+".addrs")
		all := append(slices.Clone(args[:1]), common...)
		all = append(all, "--listen", "/ip4/"+lab.ips[i]+"/tcp/4001", "--http", lab.ips[i]+":7070", "--addr-file", addrFile)
		all = append(all, args[1:]...)
		var p *proc
		if stdin != nil {
			p = startCmd(t, name, stdin, "ip", append([]string{"netns", "exec", lab.ns[i], nodeBinary(t)}, all...)...)
		} else {
			p = startIn(t, lab.ns[i], name, all...)
		}
		var addr string
		testutil.Eventually(t, 15*time.Second, func() bool {
			b, err := os.ReadFile(addrFile)
			addr = strings.TrimSpace(strings.Split(string(b), "\n")[0])
			return err == nil && addr != ""
		}, "%s wrote no address file", name)
		return p, &statusOf{t: t, name: name, c: nsClient(lab.ns[i]), base: "http://" + lab.ips[i] + ":7070"}, addr
	}

	prod, pst, paddr := startNS(0, "producer", stdin, "produce", stream)
	go fd.run()
	defer fd.close()
	names := []string{"producer", "c1", "c2", "c3"}
	procs := []*proc{prod}
	sts := []*statusOf{pst}
	ids := []string{peerIDOf(paddr)}
	for i := 1; i <= 3; i++ {
		p, st, addr := startNS(i, names[i], nil, "consume", "--bootstrap", paddr, stream)
		procs, sts, ids = append(procs, p), append(sts, st), append(ids, peerIDOf(addr))
	}
	set := func(idx ...int) map[string]bool {
		out := map[string]bool{}
		for _, i := range idx {
			out[ids[i]] = true
		}
		return out
	}
	received := func(i int) int { return len(lines(procs[i].stdout.String())) }
	producerSees := func() map[string]bool {
		doc, ok := sts[0].streams()
		if !ok || len(doc.Producers) != 1 {
			return nil
		}
		return doc.Producers[0].connected()
	}
	consumerConnected := func(i int) bool {
		doc, ok := sts[i].streams()
		return ok && len(doc.Consumers) == 1 && doc.Consumers[0].connected()[ids[0]]
	}
	// catalogIs compares node i's catalog with want; the API lists the
	// remote peers only.
	catalogIs := func(i int, want map[string]bool) bool {
		want = maps.Clone(want)
		delete(want, ids[i])
		return maps.Equal(sts[i].catalogPeers(), want)
	}

	// describe says what each process sees, for failure messages.
	describe := func() string {
		var b strings.Builder
		for i := range 4 {
			fmt.Fprintf(&b, "\n  %s: catalog of %d, received %d", names[i], len(sts[i].catalogPeers()), received(i))
		}
		fmt.Fprintf(&b, "\n  producer's connected consumers: %d", len(producerSees()))
		return b.String()
	}
	// Everyone meets, subscribes and receives.
	testutil.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, func() bool {
		for i := range 4 {
			if !catalogIs(i, set(0, 1, 2, 3)) {
				return false
			}
		}
		return maps.Equal(producerSees(), set(1, 2, 3)) && received(1) > 20 && received(2) > 20 && received(3) > 20
	}, "the four nodes did not converge and subscribe: %s", testutil.Lazy(describe))
	t.Logf("converged; consumers received %d, %d, %d", received(1), received(2), received(3))

	// Cut c2 and c3 off the bridge.
	lab.cut(t, 2)
	lab.cut(t, 3)
	cutAt := time.Now()
	atCut := received(1)
	// Bounds: PurgeAfter of the fast profile is 3 s; the producer then
	// closes a cut consumer's subscription (UnknownPeer, reset after the
	// 2 s close timeout when the Close frame cannot be written).
	testutil.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return maps.Equal(producerSees(), set(1)) && !consumerConnected(2) && !consumerConnected(3)
	}, "cut consumers were not marked offline on both sides: %s", testutil.Lazy(describe))
	offlineAfter := time.Since(cutAt)
	testutil.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return catalogIs(0, set(0, 1)) && catalogIs(1, set(0, 1)) && catalogIs(2, set(2)) && catalogIs(3, set(3))
	}, "catalogs did not diverge: %s", testutil.Lazy(describe))
	t.Logf("cut: subscriptions ended on both sides after %v, catalogs diverged after %v", offlineAfter, time.Since(cutAt))
	// The consumer that was not cut keeps receiving.
	testutil.Eventually(t, 10*time.Second, func() bool { return received(1) > atCut+200 }, "c1 stopped receiving during the cut")
	cutRecv := []int{0, 0, received(2), received(3)}

	// Heal.
	lab.heal(t, 2)
	lab.heal(t, 3)
	healedAt := time.Now()
	testutil.EventuallyEvery(t, 40*time.Second, 100*time.Millisecond, func() bool {
		for i := range 4 {
			if !catalogIs(i, set(0, 1, 2, 3)) {
				return false
			}
		}
		return maps.Equal(producerSees(), set(1, 2, 3)) && consumerConnected(2) && consumerConnected(3) &&
			received(2) > cutRecv[2] && received(3) > cutRecv[3]
	}, "after healing: catalogs did not reconverge or subscriptions did not resume: %s", testutil.Lazy(describe))
	t.Logf("healed: reconverged and resubscribed after %v", time.Since(healedAt))

	// End of input: the producer delivers what it holds and exits; every
	// consumer then has the last datum.
	last := fd.close()
	if code := prod.wait(30 * time.Second); code != 0 {
		t.Fatalf("producer exit %d", code)
	}
	final := strconv.Itoa(last)
	for i := 1; i <= 3; i++ {
		testutil.Eventually(t, 10*time.Second, func() bool {
			l := lines(procs[i].stdout.String())
			return len(l) > 0 && l[len(l)-1] == final
		}, "%s did not print the last datum %s", names[i], final)
	}
	for i := 1; i <= 3; i++ {
		got := numbersOut(t, names[i], procs[i].stdout.String(), "")
		gaps := gapsLogged(procs[i].stderr.String())
		missed := checkAccounted(t, names[i], got, gaps, "reconnect")
		doc, ok := sts[i].streams()
		if !ok || len(doc.Consumers) != 1 || doc.Consumers[0].Totals.Gaps != missed {
			t.Errorf("%s: status gaps %+v, want %d", names[i], doc.Consumers, missed)
		}
		t.Logf("%s: received %d datums (%d..%d), missed %d in %d gaps", names[i], len(got), got[0], got[len(got)-1], missed, len(gaps))
		switch {
		case i == 1 && missed != 0:
			t.Errorf("c1 was never cut but missed %d datums", missed)
		case i > 1 && missed == 0:
			t.Errorf("%s was cut while data flowed but reports no gap", names[i])
		}
		procs[i].signal(syscall.SIGTERM)
		if code := procs[i].wait(15 * time.Second); code != 0 {
			t.Errorf("%s exit %d", names[i], code)
		}
	}
}
