// Command mosaik-sim runs the catalog scaling simulation of package sim
// and prints the tables of SCALING.md.
//
//	cd bench && go run ./cmd/mosaik-sim              # 1 000, 10 000, 100 000 peers
//	cd bench && go run ./cmd/mosaik-sim --calibrate  # measure the cost constants first
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mosaik-go/mosaik/bench/sim"
)

func main() {
	sizes := flag.String("n", "1000,10000,100000", "comma-separated network sizes to simulate")
	estimate := flag.Int("estimate", 1_000_000, "network size for the closed-form estimate (0: none)")
	calibrate := flag.Bool("calibrate", false, "measure ed25519 verify, OpenEntry and Store.Merge on this machine instead of using sim.DefaultCosts")
	budget := flag.Float64("budget", 0, "hop-by-hop deliveries per run (0: sim.DefaultConfig's)")
	seed := flag.Uint64("seed", 1, "random seed")
	session := flag.Duration("session", 0, "mean session length, the churn rate (0: sim.DefaultConfig's, 1h)")
	flag.Parse()
	start := time.Now()

	costs := sim.DefaultCosts()
	if *calibrate {
		c, err := sim.Calibrate()
		if err != nil {
			fmt.Fprintln(os.Stderr, "calibrate:", err)
			os.Exit(1)
		}
		costs = c
		fmt.Println("measured costs:", costs)
	} else {
		fmt.Println("costs (sim.DefaultCosts):", costs)
	}
	var ns []int
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 20 {
			fmt.Fprintf(os.Stderr, "bad size %q\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}

	type row struct {
		label string
		res   sim.Result
		sim   bool
		how   string // for rows not simulated
	}
	var rows []row
	for _, variant := range []struct {
		label     string
		design    sim.Design
		delta     bool
		idontwant bool
		bump      bool
	}{
		{"full, whole-catalog sync (today)", sim.Full, false, false, false},
		{"full, delta sync (issue 17)", sim.Full, true, false, false},
		{"full, delta sync + IDONTWANT", sim.Full, true, true, false},
		{"full, delta sync + bump push", sim.Full, true, false, true},
		{"scoped (proposed)", sim.Scoped, true, false, false},
	} {
		for _, n := range ns {
			cfg := sim.DefaultConfig(n, variant.design)
			cfg.DeltaSync, cfg.IDontWant, cfg.BumpPush, cfg.Seed = variant.delta, variant.idontwant, variant.bump, *seed
			if *budget > 0 {
				cfg.DeliveryBudget = *budget
			}
			if *session > 0 {
				cfg.Session = *session
			}
			res := sim.Run(cfg, costs)
			rows = append(rows, row{variant.label, res, true, ""})
			fmt.Fprintf(os.Stderr, "%s N=%d: %v (%d floods sampled)\n", variant.label, n, res.Elapsed.Round(time.Millisecond), res.Sampled)
		}
		if *estimate > 0 && variant.design == sim.Full && !variant.idontwant {
			cfg := sim.DefaultConfig(*estimate, variant.design)
			cfg.DeltaSync, cfg.BumpPush = variant.delta, variant.bump
			if *session > 0 {
				cfg.Session = *session
			}
			rows = append(rows, row{variant.label, sim.Estimate(cfg, costs), false, "closed form"})
		}
	}
	if *estimate > 0 {
		// The scoped design's per-node cost does not depend on N except
		// through the DHT's log N; its 1M row is the largest simulated
		// size's, with the DHT term scaled.
		last := rows[len(rows)-1].res
		cfg := sim.DefaultConfig(*estimate, sim.Scoped)
		dht := scopedDHTDelta(last.Config.N, *estimate, cfg, costs)
		how := fmt.Sprintf("%d run + DHT log N", last.Config.N)
		last.Config = cfg
		last.InBps.Mean += dht
		last.OutBps.Mean += dht
		rows = append(rows, row{"scoped (proposed)", last, false, how})
	}

	fmt.Println()
	fmt.Println("| design | peers | how | in KB/s mean (p99) | out KB/s mean (p99) | entries held mean (max) | memory MB mean (max) | verifies/s | CPU % of a core, today's store mean (p99) | CPU %, O(log n) store | join MB | reach | spread p50/p99 |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		s := r.res
		how := fmt.Sprintf("sim (%d floods)", s.Sampled)
		if !r.sim {
			how = r.how
		}
		spread := "–"
		if s.Sampled > 0 && r.sim {
			spread = fmt.Sprintf("%v / %v", s.Spread50.Round(10*time.Millisecond), s.Spread99.Round(10*time.Millisecond))
		}
		fmt.Printf("| %s | %d | %s | %.1f (%.1f) | %.1f (%.1f) | %.0f (%.0f) | %.1f (%.1f) | %.1f | %.2f (%.2f) | %.2f | %.2f | %.3f | %s |\n",
			r.label, s.Config.N, how, s.InBps.Mean/1e3, s.InBps.P99/1e3, s.OutBps.Mean/1e3, s.OutBps.P99/1e3,
			s.Entries.Mean, s.Entries.Max, s.MemBytes.Mean/1e6, s.MemBytes.Max/1e6, s.VerifyPerSec.Mean,
			100*s.CPU.Mean, 100*s.CPU.P99, 100*s.CPULogN.Mean, s.JoinBytes/1e6, s.Reach, spread)
	}
	fmt.Println()
	fmt.Printf("Mean bytes received per node per second, by cause (KB/s; a node sends about as much)\n\n| design | peers |")
	for _, name := range sim.CatNames {
		fmt.Printf(" %s |", name)
	}
	fmt.Printf("\n|---|---|%s\n", strings.Repeat("---|", len(sim.CatNames)))
	for _, r := range rows {
		if !r.sim {
			continue
		}
		fmt.Printf("| %s | %d |", r.label, r.res.Config.N)
		for _, b := range r.res.InByCat {
			fmt.Printf(" %.2f |", b/1e3)
		}
		fmt.Println()
	}
	fmt.Println()
	fmt.Println("Full design, simulation against the closed form (sim.Estimate), mean in = out KB/s")
	fmt.Println()
	fmt.Println("| design | peers | sim | closed form | sim ÷ closed form |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		if !r.sim || r.res.Config.Design != sim.Full || r.res.Config.IDontWant {
			continue
		}
		est := sim.Estimate(r.res.Config, costs)
		fmt.Printf("| %s | %d | %.1f | %.1f | %.3f |\n", r.label, r.res.Config.N, r.res.InBps.Mean/1e3, est.InBps.Mean/1e3, r.res.InBps.Mean/est.InBps.Mean)
	}
	fmt.Println()
	fmt.Println("Bump push: push peers per node, bumps received per heartbeat accepted (duplicates + 1), CPU sim vs closed form")
	fmt.Println()
	fmt.Println("| peers | how | push peers | bumps per heartbeat | frame fill (> 1: over MaxBumpFrame) | CPU %, today's store | closed form CPU % | CPU %, O(log n) store | closed form |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		if !r.res.Config.BumpPush {
			continue
		}
		est := sim.Estimate(r.res.Config, costs)
		how := "sim"
		if !r.sim {
			how = r.how
		}
		fmt.Printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", r.res.Config.N, how, r.res.PushDegree, r.res.BumpCopies, r.res.BumpFrameFill,
			100*r.res.CPU.Mean, 100*est.CPU.Mean, 100*r.res.CPULogN.Mean, 100*est.CPULogN.Mean)
	}
	fmt.Fprintf(os.Stderr, "total %v\n", time.Since(start).Round(time.Millisecond))
}

// scopedDHTDelta is the extra DHT bandwidth per node of the scoped design
// at size to over size from: lookups grow with log2 N.
func scopedDHTDelta(from, to int, cfg sim.Config, c sim.Costs) float64 {
	lookups := float64(2 + cfg.StreamsProduced + 1) // entry put, network, streams, group
	rpcs := ceilLog2(to) - ceilLog2(from)
	return lookups * rpcs * float64(cfg.DHTRPCBytes) / 2 / cfg.DHTRepublish.Seconds()
}

func ceilLog2(n int) float64 {
	l := 0
	for (1 << l) < n {
		l++
	}
	return float64(l)
}
