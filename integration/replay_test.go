//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// written returns the number of lines written so far.
func (f *feeder) written() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// lastNumber is the number on a process's last stdout line ("<prefix><n>"),
// 0 before any.
func lastNumber(p *proc, prefix string) uint64 {
	l := lines(p.stdout.String())
	if len(l) == 0 {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimPrefix(l[len(l)-1], prefix), 10, 64)
	return v
}

// savedPosition reads consume's --position-file: the one producer's
// epoch and sequence number.
func savedPosition(t *testing.T, path string) (epoch, seq uint64) {
	t.Helper()
	var doc struct {
		Positions []struct {
			Producer   string
			Epoch, Seq uint64
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("position file: %v", err)
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Positions) != 1 {
		t.Fatalf("position file %s: %v, want one position:\n%s", path, err, b)
	}
	return doc.Positions[0].Epoch, doc.Positions[0].Seq
}

// TestReplay_NetnsCutResumesFromTheWindow runs two producers in one
// network namespace, one with a replay window far larger than a cut lasts
// (--replay 100000) and one with a window much smaller (--replay 100),
// each streaming 200 datums/s to one consumer in a namespace of its own,
// and cuts both consumers' bridge ports until each side has dropped the
// subscription. After healing, the consumer of the large window has every
// datum exactly once and in order, no gap logged or counted; the consumer
// of the small window has every datum up to the cut and the window's
// datums after it, in order, and exactly one gap, cause expired, whose
// count is exactly the datums it never received (in its log and in
// /api/streams).
func TestReplay_NetnsCutResumesFromTheWindow(t *testing.T) {
	lab := newNetLab(t, "replay", "10.77.5", 3)
	const network = "it-replay"
	dir := t.TempDir()
	common := []string{"--network", network, "--profile", "fast", "--log-level", "info"}
	type side struct {
		name string
		p    *proc
		st   *statusOf
		id   string
		addr string
	}
	startNS := func(ns int, name string, port int, stdin *os.File, args ...string) side {
		addrFile := filepath.Join(dir, name+".addrs")
		ip := lab.ips[ns]
		all := append(slices.Clone(args[:1]), common...)
		all = append(all, "--listen", fmt.Sprintf("/ip4/%s/tcp/%d", ip, 4000+port), "--http", fmt.Sprintf("%s:%d", ip, 7070+port), "--addr-file", addrFile)
		all = append(all, args[1:]...)
		p := startCmd(t, name, stdin, "ip", append([]string{"netns", "exec", lab.ns[ns], nodeBinary(t)}, all...)...)
		var addr string
		testutil.Eventually(t, 15*time.Second, func() bool {
			b, err := os.ReadFile(addrFile)
			addr = strings.TrimSpace(strings.Split(string(b), "\n")[0])
			return err == nil && addr != ""
		}, "%s wrote no address file", name)
		return side{name: name, p: p, id: peerIDOf(addr), addr: addr,
			st: &statusOf{t: t, name: name, c: nsClient(lab.ns[ns]), base: fmt.Sprintf("http://%s:%d", ip, 7070+port)}}
	}
	// Stream i: producer in namespace 0 (port i), consumer in namespace i.
	windows := []string{"100000", "100"}
	streamNames := []string{"large", "small"}
	var prods, cons []side
	var feeds []*feeder
	for i, w := range windows {
		fd, stdin, err := newFeeder("", 5*time.Millisecond) // 200 datums/s
		if err != nil {
			t.Fatal(err)
		}
		prods = append(prods, startNS(0, "producer-"+streamNames[i], i+1, stdin, "produce", "--replay", w, streamNames[i]))
		_ = stdin.Close() // the child holds its own copy
		go fd.run()
		t.Cleanup(func() { fd.close() })
		feeds = append(feeds, fd)
	}
	for i := range windows {
		cons = append(cons, startNS(i+1, "consumer-"+streamNames[i], 0, nil, "consume", "--bootstrap", prods[i].addr, streamNames[i]))
	}
	producerSees := func(i int) bool {
		doc, ok := prods[i].st.streams()
		return ok && len(doc.Producers) == 1 && doc.Producers[0].connected()[cons[i].id]
	}
	consumerSees := func(i int) bool {
		doc, ok := cons[i].st.streams()
		return ok && len(doc.Consumers) == 1 && doc.Consumers[0].connected()[prods[i].id]
	}
	received := func(i int) int { return len(lines(cons[i].p.stdout.String())) }
	describe := func() string {
		var b strings.Builder
		for i := range windows {
			fmt.Fprintf(&b, "\n  %s: received %d of %d, last %d, producer sees it %v, it sees the producer %v",
				cons[i].name, received(i), feeds[i].written(), lastNumber(cons[i].p, ""), producerSees(i), consumerSees(i))
		}
		return b.String()
	}
	testutil.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return producerSees(0) && producerSees(1) && received(0) > 100 && received(1) > 100
	}, "the consumers did not subscribe and receive: %s", testutil.Lazy(describe))

	// Cut both consumers until the subscriptions have ended on both sides
	// (a dead link gives no reset: each side notices through the catalog,
	// PurgeAfter = 3 s in the fast profile), so that the consumers must
	// resubscribe: a cut shorter than that leaves the subscription open and
	// the link's buffers resend what was in flight, with no replay at all.
	lab.cut(t, 1)
	lab.cut(t, 2)
	cutAt := time.Now()
	testutil.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return !producerSees(0) && !producerSees(1) && !consumerSees(0) && !consumerSees(1)
	}, "the cut subscriptions did not end on both sides: %s", testutil.Lazy(describe))
	atCut := []int{received(0), received(1)}
	sentAtCut := []int{feeds[0].written(), feeds[1].written()}
	lab.heal(t, 1)
	lab.heal(t, 2)
	t.Logf("cut for %v; the consumers had %v of %v datums", time.Since(cutAt).Round(time.Millisecond), atCut, sentAtCut)
	healedAt := time.Now()
	// Resumed: both resubscribed and caught up with the live stream.
	testutil.EventuallyEvery(t, 40*time.Second, 100*time.Millisecond, func() bool {
		for i := range windows {
			if !consumerSees(i) || lastNumber(cons[i].p, "") < uint64(sentAtCut[i]+200) {
				return false
			}
		}
		return true
	}, "after healing the consumers did not resubscribe and catch up: %s", testutil.Lazy(describe))
	t.Logf("healed: resubscribed and caught up %v after healing", time.Since(healedAt).Round(time.Millisecond))

	// The producers' status, read while they still run (caught up: nothing
	// more expires for their consumers).
	var pdocs []streamsDoc
	var pok []bool
	for i := range windows {
		d, ok := prods[i].st.streams()
		pdocs, pok = append(pdocs, d), append(pok, ok)
	}
	for i := range windows {
		last := feeds[i].close()
		if code := prods[i].p.wait(30 * time.Second); code != 0 {
			t.Fatalf("%s exit %d", prods[i].name, code)
		}
		final := strconv.Itoa(last)
		testutil.Eventually(t, 10*time.Second, func() bool {
			l := lines(cons[i].p.stdout.String())
			return len(l) > 0 && l[len(l)-1] == final
		}, "%s did not print the last datum %s", cons[i].name, final)
		got := numbersOut(t, cons[i].name, cons[i].p.stdout.String(), "")
		gaps := gapsLogged(cons[i].p.stderr.String())
		missed := checkAccounted(t, cons[i].name, got, gaps, "expired")
		doc, ok := cons[i].st.streams()
		if !ok || len(doc.Consumers) != 1 || doc.Consumers[0].Totals.Gaps != missed {
			t.Errorf("%s: status %+v, want %d gaps", cons[i].name, doc.Consumers, missed)
		}
		// The producer's window stats: what it resent, and what was asked
		// for too late (the consumer's gap, counted on this side).
		pdoc, ok := pdocs[i], pok[i]
		if !ok || len(pdoc.Producers) != 1 || pdoc.Producers[0].Replay == nil {
			t.Errorf("%s: status %+v, want a replay window", prods[i].name, pdoc.Producers)
		} else if r := pdoc.Producers[0].Replay; r.Expired != missed || r.Replayed == 0 {
			t.Errorf("%s: replay %+v, want %d expired and some replayed", prods[i].name, *r, missed)
		} else {
			t.Logf("%s: replayed %d, expired %d, holds %d", prods[i].name, r.Replayed, r.Expired, r.Datums)
		}
		if got[0] != 1 {
			t.Errorf("%s: first datum %d, want 1", cons[i].name, got[0])
		}
		t.Logf("%s (window %s): received %d datums of %d, missed %d in %d gaps %+v", cons[i].name, windows[i], len(got), last, missed, len(gaps), gaps)
		switch {
		case i == 0 && (missed != 0 || len(got) != last):
			t.Errorf("%s: the window held everything sent during the cut, yet %d of %d datums arrived, %d reported missed", cons[i].name, len(got), last, missed)
		// Usually one expired gap; a second one when the resend itself fell
		// behind the small window on the freshly healed link (the producer
		// cuts it as too slow and it resumes again). Either way the gaps,
		// all expired, account exactly for what did not arrive.
		case i == 1 && (len(gaps) == 0 || missed == 0 || uint64(len(got))+missed != uint64(last)):
			t.Errorf("%s: a cut longer than the window must show expired gaps covering exactly what is missing: %d received + %d missed, %d sent", cons[i].name, len(got), missed, last)
		}
		cons[i].p.signal(syscall.SIGTERM)
		if code := cons[i].p.wait(15 * time.Second); code != 0 {
			t.Errorf("%s exit %d", cons[i].name, code)
		}
	}
}

// TestReplay_ConsumerSIGKILLResumesFromPositionFile kills a consumer
// process that saves its position (consume --position-file) with SIGKILL
// while a producer with a replay window streams to it, and restarts it
// with the same file. The file never names a datum the first run did not
// print; the second run starts exactly after the saved datum, so it
// repeats only the datums printed after the last save, and from there
// every datum arrives exactly once and in order, with no gap.
func TestReplay_ConsumerSIGKILLResumesFromPositionFile(t *testing.T) {
	const network, stream = "it-replay-kill", "ticks"
	dir := t.TempDir()
	posFile := filepath.Join(dir, "ticks.pos")
	common := []string{"--network", network, "--profile", "fast", "--log-level", "info", "--listen", "/ip4/127.0.0.1/tcp/0"}
	fd, stdin, err := newFeeder("", 5*time.Millisecond) // 200 datums/s
	if err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "producer.addrs")
	prod := start(t, "producer", stdin, append(append([]string{"produce"}, common...), "--replay", "100000", "--addr-file", addrFile, stream)...)
	_ = stdin.Close()
	var paddr string
	testutil.Eventually(t, 15*time.Second, func() bool {
		b, err := os.ReadFile(addrFile)
		paddr = strings.TrimSpace(strings.Split(string(b), "\n")[0])
		return err == nil && paddr != ""
	}, "the producer wrote no address file")
	go fd.run()
	t.Cleanup(func() { fd.close() })
	consArgs := append(append([]string{"consume"}, common...), "--http", "127.0.0.1:0", "--bootstrap", paddr, "--position-file", posFile, stream)

	run1 := start(t, "consumer-run1", nil, consArgs...)
	testutil.Eventually(t, 30*time.Second, func() bool { return lastNumber(run1, "") >= 300 }, "run 1 did not receive 300 datums")
	// Kill it in the live flow, not in the burst of what the producer held
	// until its first consumer came (it waits for --online-min 1): the
	// file lags by the datums of about 100 ms, and a burst packs hundreds
	// into that.
	steady := lastNumber(run1, "") + 200
	testutil.Eventually(t, 30*time.Second, func() bool { return lastNumber(run1, "") >= steady }, "run 1 did not receive %d datums", steady)
	if err := run1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-run1.done
	out1 := numbersOut(t, "run 1", run1.stdout.String(), "")
	checkAccounted(t, "run 1", out1, gapsLogged(run1.stderr.String()), "none")
	printed := out1[len(out1)-1]
	epoch, saved := savedPosition(t, posFile)
	if saved == 0 || saved > printed {
		t.Fatalf("the position file names datum %d; run 1 printed up to %d", saved, printed)
	}
	// The saver writes at most every 100 ms: at 200 datums/s about 20
	// datums, more when the machine is loaded.
	if lag := printed - saved; float64(lag) > 200*testutil.Factor() {
		t.Errorf("the position file was %d datums behind what run 1 printed; it is saved every 100 ms", lag)
	}
	t.Logf("run 1 printed 1..%d and was killed; the file saved epoch %d seq %d (%d to repeat)", printed, epoch, saved, printed-saved)

	// The producer keeps streaming while the consumer is down.
	downAt := fd.written()
	run2 := start(t, "consumer-run2", nil, consArgs...)
	url := httpURL(t, run2)
	testutil.Eventually(t, 30*time.Second, func() bool { return lastNumber(run2, "") > uint64(downAt)+200 },
		"run 2 did not resume and catch up (printed up to %v; %d sent when it started)", testutil.Lazy(func() string { return strconv.FormatUint(lastNumber(run2, ""), 10) }), downAt)
	last := fd.close()
	if code := prod.wait(30 * time.Second); code != 0 {
		t.Fatalf("producer exit %d", code)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return lastNumber(run2, "") == uint64(last) }, "run 2 did not print the last datum %d", last)
	var doc streamsDoc
	if err := getJSON(localHTTP, url+"api/streams", &doc); err != nil || len(doc.Consumers) != 1 || doc.Consumers[0].Totals.Gaps != 0 {
		t.Errorf("run 2's status: %+v, %v; want no gap", doc.Consumers, err)
	}
	run2.signal(syscall.SIGTERM)
	if code := run2.wait(15 * time.Second); code != 0 {
		t.Fatalf("run 2 exit %d", code)
	}
	out2 := numbersOut(t, "run 2", run2.stdout.String(), "")
	checkAccounted(t, "run 2", out2, gapsLogged(run2.stderr.String()), "none")
	if out2[0] != saved+1 || len(out2) != last-int(saved) {
		t.Errorf("run 2 printed %d..%d (%d datums), want exactly %d..%d", out2[0], out2[len(out2)-1], len(out2), saved+1, last)
	}
	// A clean exit saves the last datum printed.
	if e, s := savedPosition(t, posFile); e != epoch || s != uint64(last) {
		t.Errorf("after a clean exit the file names epoch %d seq %d, want %d %d", e, s, epoch, last)
	}
	t.Logf("run 2 printed %d..%d: %d repeated from run 1, none missed", out2[0], last, printed-saved)
}
