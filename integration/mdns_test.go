//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// netLab is network namespaces, each with one veth (eth0) into a bridge
// that lives in a namespace of its own, on a private /24 that exists
// nowhere else. Nothing is added to the root namespace, so no traffic
// (mDNS multicast included) leaves the lab. Cleanup deletes the
// namespaces, which removes the veths and the bridge, even when the test
// fails.
type netLab struct {
	ns  []string
	ips []string
	br  string // the bridge's namespace; port i is "p<i>"
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetLab creates n namespaces named after the test and the process,
// with addresses subnet.1 to subnet.n (subnet is like "10.77.0").
func newNetLab(t *testing.T, name, subnet string, n int) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("%s needs the ip command (iproute2) and root to create network namespaces: %v", t.Name(), err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s must run as root to create network namespaces (euid %d)", t.Name(), os.Geteuid())
	}
	tag := fmt.Sprintf("mosaik-%s-%d", name, os.Getpid())
	lab := &netLab{br: tag + "-br"}
	for i := range n {
		lab.ns = append(lab.ns, fmt.Sprintf("%s-%d", tag, i))
		lab.ips = append(lab.ips, fmt.Sprintf("%s.%d", subnet, i+1))
	}
	all := append(slices.Clone(lab.ns), lab.br)
	t.Cleanup(func() {
		for _, ns := range all {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range all {
		ipCmd(t, "netns", "add", ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", lab.br, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", lab.br, "link", "set", "br0", "up")
	for i, ns := range lab.ns {
		port := fmt.Sprintf("p%d", i)
		ipCmd(t, "-n", lab.br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", lab.br, "link", "set", port, "master", "br0")
		ipCmd(t, "-n", lab.br, "link", "set", port, "up")
		ipCmd(t, "-n", ns, "addr", "add", lab.ips[i]+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "multicast", "on")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return lab
}

// cut takes namespace i's bridge port down: its packets go nowhere, and
// no connection is reset (as in a real partition).
func (l *netLab) cut(t *testing.T, i int) {
	t.Helper()
	ipCmd(t, "-n", l.br, "link", "set", fmt.Sprintf("p%d", i), "down")
}

// heal brings namespace i's bridge port back up.
func (l *netLab) heal(t *testing.T, i int) {
	t.Helper()
	ipCmd(t, "-n", l.br, "link", "set", fmt.Sprintf("p%d", i), "up")
}

// startIn runs the binary inside namespace ns; --mdns on the command line
// overrides the MOSAIK_MDNS=false every test process gets.
func startIn(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, nil, "ip", append([]string{"netns", "exec", ns, nodeBinary(t)}, args...)...)
}

func TestCLI_MDNSFindsPeersOnTheLink(t *testing.T) {
	lab := newNetLab(t, "mdns", "10.77.0", 2)
	addrFile := filepath.Join(t.TempDir(), "a.addrs")
	a := startIn(t, lab.ns[0], "node-a", "run", "--network", "it-mdns", "--listen", "/ip4/"+lab.ips[0]+"/tcp/0",
		"--mdns", "--addr-file", addrFile, "--log-level", "debug")
	var aAddr string
	testutil.Eventually(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(addrFile)
		aAddr = strings.TrimSpace(string(b))
		return err == nil && aAddr != ""
	}, "node a wrote no address file")
	aID := aAddr[strings.LastIndex(aAddr, "/")+1:]

	// No bootstrap: the catalog node in the other namespace can only learn
	// node a through mDNS, within its 8 s wait.
	began := time.Now()
	c := startIn(t, lab.ns[1], "catalog", "catalog", "--network", "it-mdns", "--listen", "/ip4/"+lab.ips[1]+"/tcp/0",
		"--mdns", "--json", "--wait", "8s", "--log-level", "debug")
	if code := c.wait(30 * time.Second); code != 0 {
		t.Fatalf("catalog exit %d", code)
	}
	var doc catalogDoc
	if err := json.Unmarshal([]byte(c.stdout.String()), &doc); err != nil {
		t.Fatalf("catalog --json: %v\n%s", err, c.stdout.String())
	}
	found := false
	for _, p := range doc.Peers {
		found = found || p.PeerID == aID
	}
	if !found {
		t.Fatalf("the catalog in %s does not list node a (%s) after 8 s of mDNS: %s", lab.ns[1], aID, c.stdout.String())
	}
	t.Logf("found over mDNS; catalog run took %v", time.Since(began).Round(time.Millisecond))
	// The connection came from mDNS: the side that dialled logged it
	// (only one side dials a peer both find, node/rendezvous.go). The
	// catalog listing node a, above, is the check that discovery worked.
	if !strings.Contains(a.stderr.String(), "via=mdns") && !strings.Contains(c.stderr.String(), "via=mdns") {
		t.Error("neither node logged an mDNS-found connection")
	}
}
