package status_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/node"
)

// A node whose mosaik and libp2p metrics share one registry, with its
// status page on http://127.0.0.1:8080/ until interrupted. (No Output
// line: it serves until Ctrl-C.)
func Example() {
	m, err := status.NewMetrics()
	if err != nil {
		fmt.Println("metrics:", err)
		return
	}
	defer m.Shutdown(context.Background())

	n, err := node.New("my-app",
		node.WithTags("worker"),
		node.WithMeterProvider(m.MeterProvider()),
		node.WithPrometheusRegisterer(m.Registerer()),
	)
	if err != nil {
		fmt.Println("node:", err)
		return
	}
	defer n.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := status.New(n, m).Serve(ctx, "127.0.0.1:8080"); err != nil {
		fmt.Println("status:", err)
	}
}
