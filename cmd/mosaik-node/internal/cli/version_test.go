package cli

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/streams"
)

func TestMain_Version(t *testing.T) {
	var first string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, env(&out, &errOut, nil)); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut.String())
		}
		got := out.String()
		for _, want := range []string{"github.com/mosaik-go/mosaik", runtime.Version(), "commit", catalog.ProtocolVersion,
			string(streams.ProtocolID), groups.ProtocolPrefix + "/<network>", "/mosaik/catalog/sync/2.1.0/<network>", "/mosaik/catalog/sync/2.0.0/<network>", "/mosaik/catalog/sync/1.0.0/<network>", "/mosaik/kad/1.0.0"} {
			if !strings.Contains(got, want) {
				t.Errorf("%q does not print %q:\n%s", args, want, got)
			}
		}
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("--version differs from version:\n%s\n%s", got, first)
		}
	}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"version", "extra"}, env(&out, &errOut, nil)); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}
