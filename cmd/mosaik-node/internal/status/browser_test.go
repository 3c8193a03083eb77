package status_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// chromium finds a Chromium or Chrome binary. Without one the test fails
// in CI (CI=true: .ci/run installs the Debian package chromium) and skips,
// saying why, elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MOSAIK_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no Chromium found on PATH (nor MOSAIK_CHROMIUM): install it with `apt-get install -y chromium` to run the status page's browser test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium for the test and closes it, waiting
// for the process, at the end of the test (so goleak sees none of
// chromedp's goroutines).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chromium(t)), chromedp.Flag("no-proxy-server", true)}
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root (CI containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:], opts...)...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, testutil.Scale(10*time.Second))
		defer ccancel()
		_ = chromedp.Cancel(cctx)
		cancel()
		acancel() // waits for the browser process
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// waitFor polls a JavaScript predicate in the page until it is true.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	start := time.Now()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(testutil.Scale(15*time.Second))))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: not seen after %v: %v\npage text:\n%s", what, time.Since(start).Round(time.Millisecond), err, text)
	}
}

// TestPage_Browser loads the status page in headless Chromium and checks
// what an operator sees: the live catalog, the streams and their counters
// updating in place, a new peer appearing and a departed one leaving
// without a reload, and a banner, not a stale "online", once the node's
// server has gone.
func TestPage_Browser(t *testing.T) {
	t0 := time.Now()
	ctx := browser(t)
	t.Logf("Chromium started in %v", time.Since(t0).Round(time.Millisecond))
	p := newPair(t, 5)
	// A fast refresh keeps the test short; the default is 2 s.
	srv := status.New(p.a, p.m, status.WithRefresh(100*time.Millisecond))
	addr, err := srv.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	start := time.Now()

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+addr.String()+"/")); err != nil {
		t.Fatal(err)
	}
	// A marker in the window's state: a reload would drop it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.loadedOnce = true`)); err != nil {
		t.Fatal(err)
	}
	peerRow := func(id string) string {
		return fmt.Sprintf(`document.querySelector('tr.peer[data-peer=%s]')`, strconv.Quote(id))
	}
	text := func(s string) string {
		b, _ := json.Marshal(s)
		return `document.getElementById("live").innerText.includes(` + string(b) + `)`
	}
	// The catalog: b, with its tag, connected.
	waitFor(t, ctx, "catalog row of b", peerRow(p.b.ID().String())+` !== null && `+
		peerRow(p.b.ID().String())+`.innerText.includes("beta") && `+peerRow(p.b.ID().String())+`.innerText.includes("connected")`)
	// The stream with its counters: five datums to one consumer.
	waitFor(t, ctx, "the producer of orders", `document.querySelector('h3.handle[data-stream="orders"]') !== null && `+
		`document.querySelector('h3.handle[data-stream="orders"]').innerText.includes("1 consumer connected") && `+
		`document.querySelector('h3.handle[data-stream="orders"]').innerText.includes("5 datums")`)
	waitFor(t, ctx, "b's channel, Connected", `document.querySelector('tr.channel[data-peer=`+strconv.Quote(p.b.ID().String())+`]') !== null && `+
		`document.querySelector('tr.channel[data-peer=`+strconv.Quote(p.b.ID().String())+`]').innerText.includes("Connected") && `+text("alpha"))

	// Counters move without a reload.
	sctx, scancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer scancel()
	for i := range 3 {
		if err := p.prod.Send(sctx, []byte("more-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, ctx, "the counter at 8 datums", `document.querySelector('h3.handle[data-stream="orders"]').innerText.includes("8 datums")`)

	// A new peer appears, then leaves, without a reload.
	c := startNode(t, node.WithTags("gamma"), node.WithBootstrapPeers(p.a.AddrInfo()))
	waitFor(t, ctx, "catalog row of the new peer", peerRow(c.ID().String())+` !== null && `+peerRow(c.ID().String())+`.innerText.includes("gamma")`)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the departed peer's row gone", peerRow(c.ID().String())+` === null`)

	// The node's server stops: the page says so and greys its data out.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the not-answering banner", `!document.getElementById("banner").hidden && `+
		`document.getElementById("banner").innerText.includes("not answering") && document.getElementById("live").classList.contains("stale")`)

	reloaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.loadedOnce !== true`))
	if err != nil {
		t.Fatal(err)
	}
	if reloaded {
		t.Error("the page reloaded: live updates must not reload it")
	}
	t.Logf("browser checks took %v", time.Since(start).Round(time.Millisecond))
}
