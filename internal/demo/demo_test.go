package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/internal/demo"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

func TestRun_NarratesEveryPhase(t *testing.T) {
	var out bytes.Buffer
	err := demo.Run(context.Background(), &out, demo.Config{Nodes: 5, Network: "demo-test", Timeout: testutil.Scale(15e9), Logger: testutil.Logger()})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"all 5 catalogs complete (4 peers each)", `added tag "leader"`, "removed it from every catalog", "done."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRun_RejectsTooFewNodes(t *testing.T) {
	if err := demo.Run(context.Background(), &bytes.Buffer{}, demo.Config{Nodes: 2}); err == nil {
		t.Fatal("demo with 2 nodes should fail")
	}
}
