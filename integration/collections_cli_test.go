//go:build linux

package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// collectionsDoc is the part of /api/collections the tests read.
type collectionsDoc struct {
	Collections []struct {
		Type    string `json:"type"`
		Name    string `json:"name"`
		Size    int    `json:"size"`
		Version uint64 `json:"version"`
		Sync    string `json:"sync"`
		Raft    string `json:"raft"`
		Leader  string `json:"leader"`
	} `json:"collections"`
}

// groupsVoters reads the voter count of the first group in /api/groups.
type groupsVoters struct {
	Groups []struct {
		Voters int `json:"voters"`
	} `json:"groups"`
}

// mapCLI runs a map command against the node at bootstrap and returns its
// exit code, stdout (trimmed) and stderr.
func mapCLI(t *testing.T, network, bootstrap string, args ...string) (int, string, string) {
	t.Helper()
	argv := append([]string{"map"}, args...)
	argv = append(argv, "--network", network, "--profile", "fast", "--listen", "/ip4/127.0.0.1/tcp/0")
	if bootstrap != "" {
		argv = append(argv, "--bootstrap", bootstrap)
	}
	p := start(t, "map "+strings.Join(args, " "), nil, argv...)
	code := p.wait(60 * time.Second)
	return code, strings.TrimSpace(p.stdout.String()), p.stderr.String()
}

// The CLI scenario: three `run --replicate map:orders` processes;
// put through one, get through another; stop one with SIGTERM and restart
// it (it keeps its membership); SIGKILL the leader, put again, get
// from the survivors; restart all three with their data dirs, and the data
// is intact.
func TestCLI_MapReplicateKillRestart(t *testing.T) {
	const network = "it-colls"
	dir := t.TempDir()
	type replica struct {
		p    *proc
		addr string
		url  string
		id   string
	}
	run := func(i int, bootstrap string) *replica {
		name := fmt.Sprintf("r%d", i)
		args := []string{"--profile", "fast", "--key", filepath.Join(dir, name+".key"), "--data-dir", filepath.Join(dir, name),
			"--replicate", "map:orders", "--http", "127.0.0.1:0"}
		if bootstrap != "" {
			args = append(args, "--bootstrap", bootstrap)
		}
		p, addr := runNode(t, name, network, args...)
		return &replica{p: p, addr: addr, url: httpURL(t, p), id: peerIDOf(addr)}
	}
	startAll := func() []*replica {
		r0 := run(0, "")
		return []*replica{r0, run(1, r0.addr), run(2, r0.addr)}
	}
	// leaderOf waits until every live replica names the same leader among
	// them, with three voters, and returns its index.
	leaderOf := func(rs []*replica) int {
		lead := -1
		var last string
		testutil.Eventually(t, 30*time.Second, func() bool {
			lead = -1
			var leader string
			for _, r := range rs {
				if r == nil {
					continue
				}
				var doc collectionsDoc
				var gv groupsVoters
				if getJSON(localHTTP, r.url+"api/collections", &doc) != nil || getJSON(localHTTP, r.url+"api/groups", &gv) != nil ||
					len(doc.Collections) != 1 || len(gv.Groups) != 1 {
					last = r.p.name + ": no collection yet"
					return false
				}
				c := doc.Collections[0]
				last = fmt.Sprintf("%s: %+v, %d voters", r.p.name, c, gv.Groups[0].Voters)
				if c.Type != "map" || c.Name != "orders" || c.Leader == "" || c.Sync != "in sync" || gv.Groups[0].Voters != 3 ||
					(leader != "" && c.Leader != leader) {
					return false
				}
				leader = c.Leader
			}
			for i, r := range rs {
				if r != nil && r.id == leader {
					lead = i
				}
			}
			return lead >= 0
		}, "the replicas do not agree on a leader among them with 3 voters; last: %s", &lastDoc{&last})
		return lead
	}
	put := func(via *replica, k, v string) {
		t.Helper()
		code, out, errOut := mapCLI(t, network, via.addr, "put", "orders", k, v, "--timeout", "30s")
		if code != 0 || out == "" || strings.Trim(out, "0123456789") != "" {
			t.Fatalf("put %s=%s through %s: exit %d, stdout %q (want the version), stderr:\n%s", k, v, via.p.name, code, out, tail(errOut, 2000))
		}
	}
	get := func(via *replica, k, want string) {
		t.Helper()
		code, out, errOut := mapCLI(t, network, via.addr, "get", "orders", k, "--timeout", "30s")
		if code != 0 || out != want {
			t.Fatalf("get %s through %s: exit %d, %q, want %q; stderr:\n%s", k, via.p.name, code, out, want, tail(errOut, 2000))
		}
	}

	rs := startAll()
	lead := leaderOf(rs)
	put(rs[0], "k1", "v1")
	get(rs[1], "k1", "v1")

	// A value too long for a command-line argument comes from stdin.
	long := strings.Repeat("0123456789", 20000) // 200 KB
	p := start(t, "map put --value-file -", strings.NewReader(long), "map", "put", "orders", "long", "--value-file", "-",
		"--timeout", "30s", "--network", network, "--profile", "fast", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", rs[2].addr)
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("put --value-file -: exit %d, stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	get(rs[0], "long", long)
	if code, _, errOut := mapCLI(t, network, rs[1].addr, "del", "orders", "long", "--timeout", "30s"); code != 0 {
		t.Fatalf("del long: exit %d, stderr:\n%s", code, tail(errOut, 2000))
	}

	// A durable replica stopped with SIGTERM keeps its membership (it does
	// not leave the group gracefully): the two others still count three
	// voters, and it resumes when it restarts.
	f := (lead + 1) % len(rs)
	rs[f].p.signal(syscall.SIGTERM)
	if code := rs[f].p.wait(20 * time.Second); code != 0 {
		t.Fatalf("%s: SIGTERM exit %d", rs[f].p.name, code)
	}
	rs[f] = nil
	leaderOf(rs)
	rs[f] = run(f, rs[lead].addr)
	lead = leaderOf(rs)
	get(rs[f], "k1", "v1")

	rs[lead].p.signal(syscall.SIGKILL)
	rs[lead].p.wait(10 * time.Second)
	var survivors []*replica
	for i, r := range rs {
		if i != lead {
			survivors = append(survivors, r)
		}
	}
	put(survivors[0], "k2", "v2")
	for _, s := range survivors {
		get(s, "k2", "v2")
	}

	for _, s := range survivors {
		s.p.signal(syscall.SIGTERM)
		if code := s.p.wait(20 * time.Second); code != 0 {
			t.Fatalf("%s: SIGTERM exit %d", s.p.name, code)
		}
	}
	rs = startAll()
	leaderOf(rs)
	for _, r := range rs {
		code, out, errOut := mapCLI(t, network, r.addr, "list", "orders", "--timeout", "30s")
		if code != 0 || out != "k1\tv1\nk2\tv2" {
			t.Fatalf("list through %s after the restart: exit %d, %q; stderr:\n%s", r.p.name, code, out, tail(errOut, 2000))
		}
	}
}

// With no writer of the map reachable, put exits non-zero within
// --timeout and says why.
func TestCLI_MapPutNoWriter(t *testing.T) {
	_, boot := runNode(t, "boot", "it-colls-none", "--profile", "fast")
	begin := time.Now()
	code, out, errOut := mapCLI(t, "it-colls-none", boot, "put", "orders", "k", "v", "--timeout", "2s")
	took := time.Since(begin)
	if code != 1 || out != "" || !strings.Contains(errOut, "no writer reachable") || !strings.Contains(errOut, "--timeout 2s") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, tail(errOut, 2000))
	}
	// 2 s of waiting, plus starting and closing a node built with -race.
	if took > testutil.Scale(20*time.Second) {
		t.Fatalf("put took %v with --timeout 2s", took)
	}
}
