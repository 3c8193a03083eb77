//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// logLines returns the lines of a process's stderr that contain every one
// of parts.
func logLines(p *proc, parts ...string) []string {
	var out []string
	for _, l := range lines(p.stderr.String()) {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// waitLine waits until p logged a line with every one of parts.
func waitLine(t *testing.T, p *proc, d time.Duration, parts ...string) {
	t.Helper()
	testutil.Eventually(t, d, func() bool { return len(logLines(p, parts...)) > 0 }, "%s never logged %q", p.name, parts)
}

// exactlyOne checks, after a further window of retries, that p logged the
// line of parts once.
func exactlyOne(t *testing.T, p *proc, parts ...string) {
	t.Helper()
	testutil.Never(t, 3*time.Second, 200*time.Millisecond, func() string {
		if n := len(logLines(p, parts...)); n > 1 {
			return fmt.Sprintf("%s logged %q %d times, want once:\n%s", p.name, parts, n, strings.Join(logLines(p, parts...), "\n"))
		}
		return ""
	})
}

// refusedTwice runs a producer and a consumer that it refuses, each with
// a key of its own, and checks that each side logs the refusal at Warn
// once however often it happens: the consumer is restarted (the producer
// refuses the same consumer again; the new consumer process logging its
// own line proves the refusal) and then the producer (the consumer,
// refused again by the same producer, logs no second line; the new
// producer logging its own proves that refusal).
func refusedTwice(t *testing.T, network, stream string, prodArgs, prodLine, consLine []string) {
	t.Helper()
	dir := t.TempDir()
	prodKey, _ := keygen(t, dir, "producer")
	consKey, _ := keygen(t, dir, "consumer")
	_, boot := runNode(t, "boot", network)
	startProd := func(name string) *proc {
		pr, _ := stdinPipe(t) // open and never written: produce blocks reading it
		return start(t, name, pr, append(append([]string{"produce", "--network", network, "--bootstrap", boot, "--key", prodKey}, prodArgs...), append(listen(), stream)...)...)
	}
	startCons := func(name string) *proc {
		return start(t, name, nil, append([]string{"consume", "--network", network, "--bootstrap", boot, "--key", consKey}, append(listen(), stream)...)...)
	}
	stop := func(p *proc) {
		p.signal(syscall.SIGTERM)
		if code := p.wait(20 * time.Second); code != 0 {
			t.Fatalf("%s exited %d", p.name, code)
		}
	}
	prod, cons := startProd("producer"), startCons("consumer")
	waitLine(t, prod, 60*time.Second, prodLine...)
	waitLine(t, cons, 30*time.Second, consLine...)
	stop(cons)
	cons = startCons("consumer again")
	waitLine(t, cons, 60*time.Second, consLine...)
	exactlyOne(t, prod, prodLine...)
	stop(prod)
	prod = startProd("producer again")
	waitLine(t, prod, 60*time.Second, prodLine...)
	exactlyOne(t, cons, consLine...)
}

// A consumer refused by a producer's tag policy: one Warn line on each
// side, with the reason and what to do.
func TestCLI_RefusalLoggedOnBothSides_TagPolicy(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	refusedTwice(t, "it-refuse-tags", "guarded", []string{"--require-tags", "reader"},
		[]string{"level=WARN", `msg="consumer refused"`, `reason="require tags reader: not met"`, "hint="},
		[]string{"level=WARN", `msg="refused by producer"`, `reason="require tags reader: not met"`, "hint="})
}

// A consumer without the ticket a producer requires: one Warn line on each
// side naming the missing ticket.
func TestCLI_RefusalLoggedOnBothSides_Ticket(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	_, issuerID := keygen(t, t.TempDir(), "issuer")
	refusedTwice(t, "it-refuse-ticket", "gated", []string{"--require-ticket-issuer", issuerID},
		[]string{"level=WARN", `msg="consumer refused"`, "code=NotAllowed", "no valid ticket"},
		[]string{"level=WARN", `msg="refused by producer"`, "code=NotAllowed", "no valid ticket", "--ticket"})
}

// A network name nobody else uses warns, saying what to check.
func TestCLI_NoPeersWarning(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	p := start(t, "lonely", nil, append([]string{"run", "--network", "it-nobody-else-uses-this", "--profile", "fast"}, listen()...)...)
	waitLine(t, p, 30*time.Second, "level=WARN", `msg="no other node of this network found"`, "--network")
}

// An unreachable bootstrap address warns once (run, produce and consume
// share the node flags), naming the address.
func TestCLI_UnreachableBootstrapWarns(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	_, id := keygen(t, t.TempDir(), "nobody")
	boot := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), id) // closed: nobody listens
	line := []string{"level=WARN", `msg="bootstrap peer unreachable; retrying with backoff"`, id, "connection refused", "hint="}
	run := start(t, "run", nil, append([]string{"run", "--network", "it-unreachable-boot", "--bootstrap", boot}, listen()...)...)
	cons := start(t, "consume", nil, append([]string{"consume", "--network", "it-unreachable-boot", "--bootstrap", boot}, append(listen(), "s")...)...)
	waitLine(t, run, 30*time.Second, line...)
	waitLine(t, cons, 30*time.Second, line...)
	exactlyOne(t, run, line...)
}

// Two processes with one key (as on two machines: each has its own copy of
// the key file, so the identity lock of one machine does not stop the
// second): the one started first finds the second's newer entries, logs
// an error and exits 1; with --allow-duplicate-identity it logs and keeps
// running.
func TestCLI_DuplicateIdentity(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			dir := t.TempDir()
			key, id := keygen(t, dir, "twin")
			network := fmt.Sprintf("it-dup-%v", allow)
			boot, bootAddr := runNode(t, "boot", network, "--profile", "fast")
			extra := []string{"--key", key, "--bootstrap", bootAddr, "--profile", "fast"}
			if allow {
				extra = append(extra, "--allow-duplicate-identity")
			}
			first, _ := runNode(t, "first", network, extra...)
			waitLine(t, boot, 30*time.Second, `msg="peer discovered"`, id)
			b, err := os.ReadFile(key)
			if err != nil {
				t.Fatal(err)
			}
			copied := filepath.Join(t.TempDir(), "twin.key")
			if err := os.WriteFile(copied, b, 0o600); err != nil {
				t.Fatal(err)
			}
			second, _ := runNode(t, "second", network, "--key", copied, "--bootstrap", bootAddr, "--profile", "fast")
			errLine := []string{"level=ERROR", "another process uses this node's identity", "hint="}
			if !allow {
				if code := first.wait(60 * time.Second); code != 1 {
					t.Fatalf("first process exit %d, want 1", code)
				}
				if len(logLines(first, errLine...)) != 1 {
					t.Fatalf("first process did not log the error line once")
				}
				if !strings.Contains(first.stderr.String(), "mosaik-node: catalog: another process uses the local peer's identity") {
					t.Fatalf("first process's exit message does not name the problem")
				}
			} else {
				waitLine(t, first, 60*time.Second, errLine...)
				waitLine(t, first, 10*time.Second, "level=WARN", "--allow-duplicate-identity")
				testutil.Never(t, 2*time.Second, 200*time.Millisecond, func() string {
					select {
					case <-first.done:
						return "the first process exited despite --allow-duplicate-identity"
					default:
						return ""
					}
				})
			}
			select {
			case <-second.done:
				t.Fatalf("the second process exited")
			default:
			}
		})
	}
}
