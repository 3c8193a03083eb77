//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

func listen() []string { return []string{"--listen", "/ip4/127.0.0.1/tcp/0"} }

func TestCLI_ProduceConsumeInOrder(t *testing.T) {
	_, boot := runNode(t, "boot", "it-order")
	cons := start(t, "consume", nil, append([]string{"consume", "--network", "it-order", "--bootstrap", boot, "--count", "1000"}, append(listen(), "s")...)...)
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "line-%d\n", i)
	}
	prod := start(t, "produce", strings.NewReader(in.String()), append([]string{"produce", "--network", "it-order", "--bootstrap", boot}, append(listen(), "s")...)...)
	if code := cons.wait(60 * time.Second); code != 0 {
		t.Fatalf("consume exit %d", code)
	}
	if code := prod.wait(30 * time.Second); code != 0 {
		t.Fatalf("produce exit %d", code)
	}
	got := lines(cons.stdout.String())
	if len(got) != 1000 {
		t.Fatalf("consumer printed %d lines, want 1000", len(got))
	}
	for i, l := range got {
		if l != "line-"+strconv.Itoa(i) {
			t.Fatalf("line %d is %q: out of order or corrupt", i, l)
		}
	}
}

type catalogDoc struct {
	Network string `json:"network"`
	Peers   []struct {
		PeerID  string   `json:"peer_id"`
		Tags    []string `json:"tags"`
		Streams []string `json:"streams"`
	} `json:"peers"`
}

func TestCLI_CatalogJSON(t *testing.T) {
	_, boot := runNode(t, "boot", "it-catalog", "--tags", "seed")
	_, _ = runNode(t, "tagged", "it-catalog", "--bootstrap", boot, "--tags", "validator,eu")
	// A producer whose stdin stays open keeps advertising "prices".
	pr, pw := io.Pipe()
	defer pw.Close()
	_ = start(t, "producer", pr, append([]string{"produce", "--network", "it-catalog", "--bootstrap", boot}, append(listen(), "prices")...)...)
	var doc catalogDoc
	var last string
	testutil.Eventually(t, 30*time.Second, func() bool {
		c := start(t, "catalog", nil, append([]string{"catalog", "--network", "it-catalog", "--bootstrap", boot, "--json", "--wait", "3s"}, listen()...)...)
		if c.wait(30*time.Second) != 0 {
			return false
		}
		last = c.stdout.String()
		if err := json.Unmarshal([]byte(last), &doc); err != nil {
			t.Fatalf("catalog --json is not one JSON document: %v\n%s", err, last)
		}
		var tags, streams bool
		for _, p := range doc.Peers {
			tags = tags || (contains(p.Tags, "validator") && contains(p.Tags, "eu"))
			streams = streams || contains(p.Streams, "prices")
		}
		return len(doc.Peers) >= 3 && tags && streams
	}, "catalog does not list every peer with tags and streams; last:\n%s", &lastDoc{&last})
}

// lastDoc prints the last catalog document when a wait fails.
type lastDoc struct{ s *string }

func (l *lastDoc) String() string { return *l.s }

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func keygen(t *testing.T, dir, name string) (path, id string) {
	t.Helper()
	path = filepath.Join(dir, name+".key")
	p := start(t, "keygen "+name, nil, "keygen", "--out", path)
	if p.wait(10*time.Second) != 0 {
		t.Fatal("keygen failed")
	}
	return path, strings.TrimSpace(p.stdout.String())
}

func TestCLI_TicketGatedConsumer(t *testing.T) {
	dir := t.TempDir()
	issuerKey, issuerID := keygen(t, dir, "issuer")
	holderKey, holderID := keygen(t, dir, "holder")
	ticket := filepath.Join(dir, "holder.ticket")
	is := start(t, "ticket issue", nil, "ticket", "issue", "--issuer-key", issuerKey, "--subject", holderID, "--network", "it-ticket", "--ttl", "1h", "--out", ticket)
	if is.wait(10*time.Second) != 0 {
		t.Fatal("ticket issue failed")
	}
	_, boot := runNode(t, "boot", "it-ticket")
	pr, pw := io.Pipe()
	defer pw.Close()
	prod := start(t, "producer", pr, append([]string{"produce", "--network", "it-ticket", "--bootstrap", boot, "--require-ticket-issuer", issuerID, "--log-level", "debug"}, append(listen(), "gated")...)...)
	holder := start(t, "holder", nil, append([]string{"consume", "--network", "it-ticket", "--bootstrap", boot, "--key", holderKey, "--ticket", ticket, "--count", "3"}, append(listen(), "gated")...)...)
	stranger := start(t, "stranger", nil, append([]string{"consume", "--network", "it-ticket", "--bootstrap", boot}, append(listen(), "gated")...)...)
	// The producer waits until the ticket holder subscribes, then sends.
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := fmt.Fprintf(pw, "secret-%d\n", i); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // a steady trickle of lines
		}
	}()
	if code := holder.wait(60 * time.Second); code != 0 {
		t.Fatalf("ticket holder exit %d", code)
	}
	if got := lines(holder.stdout.String()); len(got) != 3 || !strings.HasPrefix(got[0], "secret-") {
		t.Fatalf("ticket holder got %q", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(prod.stderr.String(), "NotAllowed")
	}, "producer did not log the NotAllowed rejection")
	if out := stranger.stdout.String(); out != "" {
		t.Fatalf("consumer without a ticket received %q", out)
	}
}

// TestCLI_TagPolicy: a consumer that requires a tag takes the tagged
// producer's datums and none of the untagged one's, both sending all
// along: it is checked only once the consumer's catalog holds both (so
// that it could subscribe to both), and its channels must not include the
// untagged producer. (With --count 1 and one line each, a consumer that
// ignored --require-tags passed whenever the tagged line came first.)
func TestCLI_TagPolicy(t *testing.T) {
	dir := t.TempDir()
	untaggedKey, untaggedID := keygen(t, dir, "untagged")
	taggedKey, taggedID := keygen(t, dir, "tagged")
	_, boot := runNode(t, "boot", "it-tags")
	feed := func(prefix string) *os.File {
		pr, pw := stdinPipe(t)
		done := make(chan struct{})
		t.Cleanup(func() { close(done) })
		go func() {
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(pw, "%s-%d\n", prefix, i); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond): // a steady trickle of lines
				}
			}
		}()
		return pr
	}
	_ = start(t, "untagged producer", feed("from-untagged"), append([]string{"produce", "--network", "it-tags", "--bootstrap", boot, "--key", untaggedKey}, append(listen(), "s")...)...)
	_ = start(t, "tagged producer", feed("from-tagged"), append([]string{"produce", "--network", "it-tags", "--bootstrap", boot, "--key", taggedKey, "--tags", "x"}, append(listen(), "s")...)...)
	cons := start(t, "consumer", nil, append([]string{"consume", "--network", "it-tags", "--bootstrap", boot, "--require-tags", "x", "--http", "127.0.0.1:0"}, append(listen(), "s")...)...)
	st := &statusOf{t: t, name: "consumer", c: localHTTP, base: strings.TrimSuffix(httpURL(t, cons), "/")}
	testutil.Eventually(t, 60*time.Second, func() bool {
		peers := st.catalogPeers()
		return peers[untaggedID] && peers[taggedID]
	}, "the consumer's catalog never held both producers")
	// Both known: wait for lines that arrived after that.
	mark := len(lines(cons.stdout.String()))
	testutil.Eventually(t, 30*time.Second, func() bool { return len(lines(cons.stdout.String())) >= mark+20 }, "the consumer received no 20 further lines")
	for _, l := range lines(cons.stdout.String()) {
		if !strings.HasPrefix(l, "from-tagged-") {
			t.Fatalf("consumer got %q, want only the tagged producer's lines", l)
		}
	}
	doc, ok := st.streams()
	if !ok || len(doc.Consumers) != 1 {
		t.Fatalf("/api/streams: %+v (%v)", doc, ok)
	}
	for _, ch := range doc.Consumers[0].Channels {
		if ch.PeerID == untaggedID {
			t.Fatalf("the consumer holds a channel to the untagged producer (%s)", ch.State)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCLI_HTTP(t *testing.T) {
	boot, bootAddr := runNode(t, "boot", "it-http", "--http", "127.0.0.1:0")
	url := httpURL(t, boot)
	pr, pw := io.Pipe()
	defer pw.Close()
	// The boot node consumes; a producer feeds it.
	_ = start(t, "producer", pr, append([]string{"produce", "--network", "it-http", "--bootstrap", bootAddr}, append(listen(), "metered")...)...)
	cons := start(t, "consumer", nil, append([]string{"consume", "--network", "it-http", "--bootstrap", bootAddr, "--http", "127.0.0.1:0"}, append(listen(), "metered")...)...)
	consURL := httpURL(t, cons)
	go func() {
		for i := 0; i < 200; i++ {
			if _, err := fmt.Fprintf(pw, "m-%d\n", i); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // a steady trickle of lines
		}
	}()
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := get(t, consURL+"metrics")
		return code == 200 && hasNonZero(body, "mosaik_streams_consumer_items_received")
	}, "consumer /metrics has no non-zero stream counter")
	if code, body := get(t, url+"api/catalog"); code != 200 || !json.Valid([]byte(body)) {
		t.Fatalf("/api/catalog: %d %q", code, body)
	}
	if code, _ := get(t, url); code != 200 {
		t.Fatalf("/: %d", code)
	}
	if code, body := get(t, url+"healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

// hasNonZero reports whether some sample line of metric name has a
// non-zero value.
func hasNonZero(body, name string) bool {
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name) {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && v > 0 {
			return true
		}
	}
	return false
}

func TestCLI_ShutdownDeparts(t *testing.T) {
	boot, bootAddr := runNode(t, "boot", "it-shutdown", "--http", "127.0.0.1:0")
	url := httpURL(t, boot)
	leaver, _ := runNode(t, "leaver", "it-shutdown", "--bootstrap", bootAddr, "--tags", "leaver")
	peers := func() int {
		_, body := get(t, url+"api/catalog")
		var doc catalogDoc
		if json.Unmarshal([]byte(body), &doc) != nil {
			return -1
		}
		return len(doc.Peers)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return peers() == 1 }, "boot never saw the leaver")
	leaver.signal(syscall.SIGTERM)
	sent := time.Now()
	if code := leaver.wait(5 * time.Second); code != 0 {
		t.Fatalf("SIGTERM exit %d", code)
	}
	if el := time.Since(sent); el > testutil.Scale(2*time.Second) {
		t.Errorf("exit took %v after SIGTERM, want within 2 s", el)
	}
	testutil.Eventually(t, 2*time.Second, func() bool { return peers() == 0 }, "boot still lists the departed node")
}

func TestCLI_Demo(t *testing.T) {
	// A fixed-duration run of its own in-process nodes on 127.0.0.1:0:
	// nothing shared with other tests, so it waits beside them.
	t.Parallel()
	d := start(t, "demo", nil, "demo", "--duration", "6s")
	if code := d.wait(60 * time.Second); code != 0 {
		t.Fatalf("demo exit %d", code)
	}
	out := d.stdout.String()
	if !strings.Contains(strings.ToLower(out), "summary") || !strings.Contains(strings.ToLower(out), "failover") {
		t.Fatalf("demo output lacks its summary or failover:\n%s", out)
	}
}

func TestCLI_BadInput(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--network", "x", "--no-such-flag"},
		{"run", "--network", "x", "--key", corrupt},
	} {
		p := start(t, strings.Join(args, " "), nil, args...)
		if code := p.wait(10 * time.Second); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		errLines := lines(p.stderr.String())
		last := errLines[len(errLines)-1]
		if !strings.HasPrefix(last, "mosaik-node: ") {
			t.Errorf("%q: last stderr line %q is not a one-line error", args, last)
		}
	}
}

// A consumer whose stdout reader goes away (consume | head) ends cleanly:
// exit 0, no death by SIGPIPE, a position file written and no temporary
// file left. (That Close saves the last positions printed is
// TestPositions_SaveAndResume's: here the periodic save has written the
// file already.)
func TestCLI_ConsumeStdoutClosed(t *testing.T) {
	_, boot := runNode(t, "boot", "it-pipe")
	pos := filepath.Join(t.TempDir(), "s.pos")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodeBinary(t), append([]string{"consume", "--network", "it-pipe", "--bootstrap", boot, "--position-file", pos}, append(listen(), "s")...)...)
	cmd.Env = append(raceEnv(os.Environ()), "MOSAIK_MDNS=false", "XDG_DATA_HOME="+t.TempDir())
	var errOut lockedBuffer
	cmd.Stdout, cmd.Stderr = w, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close() // the child holds the write end
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("--- consume stderr:\n%s", failureLog(errOut.String()))
		}
	})
	// The producer keeps sending (a line every 5 ms) until the test ends,
	// so the consumer writes again after its reader has gone.
	in, feed := io.Pipe()
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		defer feed.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond): // the producer's pace
			}
			if _, err := fmt.Fprintf(feed, "line-%d\n", i); err != nil {
				return
			}
		}
	}()
	start(t, "produce", in, append([]string{"produce", "--network", "it-pipe", "--bootstrap", boot}, append(listen(), "s")...)...)
	t.Cleanup(func() { close(stop); _ = in.Close(); <-fed })
	// Read one line, then go away as head does.
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "line-") {
		t.Fatalf("first line %q, %v", line, err)
	}
	_ = r.Close()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("consume with its stdout closed: %v, want exit 0", err)
		}
	case <-time.After(testutil.Scale(60 * time.Second)):
		t.Fatal("consume did not end after its stdout closed")
	}
	if b, err := os.ReadFile(pos); err != nil || len(b) == 0 {
		t.Fatalf("position file after the end: %q, %v", b, err)
	}
	if left, _ := filepath.Glob(pos + ".tmp*"); len(left) != 0 {
		t.Fatalf("temporary position files left: %v", left)
	}
}
