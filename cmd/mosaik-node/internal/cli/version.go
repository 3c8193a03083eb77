package cli

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	dht "github.com/libp2p/go-libp2p-kad-dht"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/streams"
)

// networkSuffix is what the per-network protocol IDs end with: the
// version lists them up to their network part, which every network fills
// in with its own ID.
const networkSuffix = "/<network>"

// protocolVersions are the wire protocols of this build with their
// versions, read from the packages' constants and name functions so that
// they cannot drift from what the node speaks.
func protocolVersions() [][2]string {
	var zero catalog.NetworkID
	perNetwork := func(s string) string { return strings.TrimSuffix(s, "/"+zero.String()) + networkSuffix }
	kad := discovery.DHTProtocolPrefix + strings.TrimPrefix(string(dht.ProtocolDHT), "/ipfs")
	return [][2]string{
		{"entry", catalog.ProtocolVersion},
		{"catalog gossip", perNetwork(discovery.TopicName(zero))},
		{"catalog sync", perNetwork(string(discovery.SyncProtocol(zero)))},
		{"catalog sync (without bumps, still served)", perNetwork(string(discovery.SyncProtocolV2(zero)))},
		{"catalog sync (legacy, still served)", perNetwork(string(discovery.SyncProtocolV1(zero)))},
		{"catalog bump push", perNetwork(string(discovery.BumpProtocol(zero)))},
		{"dht", kad},
		{"streams", string(streams.ProtocolID)},
		{"groups", string(groups.ProtocolPrefix) + networkSuffix},
		{"groups (without pieces, still served)", string(groups.ProtocolPrefix10) + networkSuffix},
		{"groups snapshot (pipelined)", string(groups.SnapshotPipelineProtocolPrefix) + networkSuffix},
		{"groups snapshot (one chunk a stream, still served)", string(groups.SnapshotProtocolPrefix) + networkSuffix},
	}
}

// printVersion writes the module version, the VCS commit the binary was
// built from (when the build recorded one), the Go version and the
// protocol versions.
func printVersion(w io.Writer) {
	mod, commit := "(unknown)", "(not recorded)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		mod = bi.Main.Path + " " + bi.Main.Version
		var rev, at, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
		if rev != "" {
			commit = rev + dirty
			if at != "" {
				commit += " " + at
			}
		}
	}
	fmt.Fprintf(w, "mosaik-node\n  module   %s\n  commit   %s\n  go       %s %s/%s\nprotocols\n", mod, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, p := range protocolVersions() {
		fmt.Fprintf(w, "  %-16s %s\n", p[0], p[1])
	}
}

// versionText is printVersion's output as a string, for --version.
func versionText() string {
	var b bytes.Buffer
	printVersion(&b)
	return b.String()
}
