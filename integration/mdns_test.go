package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// netLab is two network namespaces, each with one veth into a bridge that
// lives in a third namespace, on the private subnet 10.77.0.0/24 that
// exists nowhere else. Nothing is added to the root namespace, so mDNS
// multicast stays inside the lab. Cleanup deletes the namespaces, which
// removes the veths and the bridge.
type netLab struct {
	ns  [2]string
	ips [2]string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the mDNS test needs the ip command (iproute2) and root to create network namespaces: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the mDNS test must run as root to create network namespaces (euid %d)", os.Geteuid())
	}
	tag := fmt.Sprintf("mosaik-it-%d", os.Getpid())
	lab := &netLab{ns: [2]string{tag + "-a", tag + "-b"}, ips: [2]string{"10.77.0.1", "10.77.0.2"}}
	br := tag + "-br"
	t.Cleanup(func() {
		for _, ns := range []string{lab.ns[0], lab.ns[1], br} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{lab.ns[0], lab.ns[1], br} {
		ipCmd(t, "netns", "add", ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", br, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", br, "link", "set", "br0", "up")
	for i, ns := range lab.ns {
		port := fmt.Sprintf("p%d", i)
		ipCmd(t, "-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", br, "link", "set", port, "master", "br0")
		ipCmd(t, "-n", br, "link", "set", port, "up")
		ipCmd(t, "-n", ns, "addr", "add", lab.ips[i]+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "multicast", "on")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return lab
}

// startIn runs the binary inside namespace ns; --mdns on the command line
// overrides the MOSAIK_MDNS=false every test process gets.
func startIn(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, nil, "ip", append([]string{"netns", "exec", ns, binary}, args...)...)
}

func TestCLI_MDNSFindsPeersOnTheLink(t *testing.T) {
	lab := newNetLab(t)
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
	// Node a logged the connection too: discovery is mutual.
	if !strings.Contains(a.stderr.String(), "via=mdns") && !strings.Contains(c.stderr.String(), "via=mdns") {
		t.Error("neither node logged an mDNS-found connection")
	}
}
