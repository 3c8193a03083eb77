package sim

import (
	"math"
	"testing"
	"time"
)

// quiet is cfg with only heartbeats: no churn, anti-entropy, DHT or
// shuffles, so that the mesh traffic can be checked against its formula.
func quiet(cfg Config) Config {
	cfg.Session = 1e6 * time.Hour
	cfg.AntiEntropy = 1e6 * time.Hour
	cfg.DHTRepublish = 1e6 * time.Hour
	cfg.ShuffleInterval = 1e6 * time.Hour
	cfg.SimTime = 300 * time.Second
	return cfg
}

// TestFullMeshMatchesFormula floods every heartbeat of 300 peers hop by
// hop and checks the bytes a node receives against the closed form: each
// of the N/T messages per second reaches every node (reach 1) and costs it
// about (mean mesh degree − 1) copies plus the flood publish's extra ones.
func TestFullMeshMatchesFormula(t *testing.T) {
	cfg := quiet(DefaultConfig(300, Full))
	c := DefaultCosts()
	tp := buildFull(cfg, newRand(cfg))
	deg := 0
	for _, m := range tp.topics[0].mesh {
		deg += len(m)
	}
	meanDeg := float64(deg) / float64(cfg.N)
	res := Run(cfg, c)
	if res.SampleShare != 1 {
		t.Fatalf("sample share %v, want every message flooded", res.SampleShare)
	}
	if res.Reach < 0.999 {
		t.Fatalf("reach %v, want every node reached without churn", res.Reach)
	}
	N := float64(cfg.N)
	rate := N / cfg.Heartbeat.Seconds()
	copies := meanDeg - 1 + (float64(cfg.TopicPeers)-meanDeg+1)/N
	want := rate * copies * float64(c.EntryBytes+cfg.FrameBytes)
	// IHAVE and IWANT are on top of the mesh traffic, and small: bound
	// them by their own formula.
	ihave := float64(cfg.Dlazy) * rate * float64(cfg.HistoryGossip) * float64(cfg.IDBytes)
	got := res.InBps.Mean
	if got < 0.93*want || got > 1.07*(want+ihave)+0.05*want {
		t.Fatalf("in %.0f B/s per node, want %.0f mesh + up to %.0f IHAVE (mean degree %.2f)", got, want, ihave, meanDeg)
	}
	if v := res.VerifyPerSec.Mean; math.Abs(v-rate)/rate > 0.07 {
		t.Fatalf("verifies %.2f/s per node, want %.2f (one per heartbeat of every other node)", v, rate)
	}
	// The simulation and the closed form used past its reach must agree.
	est := Estimate(cfg, c)
	if r := got / est.InBps.Mean; r < 0.85 || r > 1.15 {
		t.Fatalf("sim %.0f B/s vs Estimate %.0f B/s", got, est.InBps.Mean)
	}
}

// TestScopedIsFlat checks the claim SCALING.md rests on: the scoped
// design's per-node bandwidth and catalog barely move when the network
// grows 8-fold, while the full design's grow with it.
func TestScopedIsFlat(t *testing.T) {
	c := DefaultCosts()
	small := Run(DefaultConfig(500, Scoped), c)
	big := Run(DefaultConfig(4000, Scoped), c)
	if r := big.InBps.Mean / small.InBps.Mean; r > 1.5 {
		t.Fatalf("scoped in-bandwidth grew %.2f× from 500 to 4000 peers", r)
	}
	if r := big.Entries.Mean / small.Entries.Mean; r > 1.5 {
		t.Fatalf("scoped catalog grew %.2f× from 500 to 4000 peers", r)
	}
	fullSmall := Run(DefaultConfig(500, Full), c)
	if fullSmall.InBps.Mean < 5*small.InBps.Mean {
		t.Fatalf("full %.0f B/s vs scoped %.0f B/s at 500 peers: expected full to cost far more", fullSmall.InBps.Mean, small.InBps.Mean)
	}
}

// TestBumpPushMatchesFormula floods every heartbeat of 300 peers over the
// push graph (Config.BumpPush) and checks the bytes a node receives
// against the closed form: each heartbeat reaches every node, each node
// gets it from every push peer but the one that brought it first (mean
// push degree − 1 bumps), in one frame per push peer per BumpInterval;
// one verification per heartbeat of every other node; no message on
// gossip; and sim.Estimate within 15 %.
func TestBumpPushMatchesFormula(t *testing.T) {
	cfg := quiet(DefaultConfig(300, Full))
	cfg.DeltaSync, cfg.BumpPush = true, true
	c := DefaultCosts()
	res := Run(cfg, c)
	if res.SampleShare != 1 {
		t.Fatalf("sample share %v, want every message flooded", res.SampleShare)
	}
	if res.Reach < 0.999 {
		t.Fatalf("reach %v, want every node reached without churn", res.Reach)
	}
	if res.InByCat[catMesh] != 0 || res.InByCat[catIHave] != 0 || res.InByCat[catIWant] != 0 {
		t.Fatalf("gossip traffic %v with every heartbeat pushed", res.InByCat)
	}
	N := float64(cfg.N)
	rate := (N - 1) / cfg.Heartbeat.Seconds()
	k := res.PushDegree
	if k < float64(cfg.BumpPeers) || k > 2*float64(cfg.BumpPeers) {
		t.Fatalf("mean push degree %.2f, want between BumpPeers and twice that", k)
	}
	if math.Abs(res.BumpCopies-(k-1))/(k-1) > 0.07 {
		t.Fatalf("%.2f bumps received per heartbeat, want push degree − 1 = %.2f", res.BumpCopies, k-1)
	}
	want := rate*(k-1)*float64(cfg.BumpBytes) + k/cfg.BumpInterval.Seconds()*float64(cfg.BumpFrameBytes)
	if got := res.InByCat[catBump]; math.Abs(got-want)/want > 0.07 {
		t.Fatalf("bump bytes in %.0f B/s per node, want %.0f", got, want)
	}
	if v := res.VerifyPerSec.Mean; math.Abs(v-rate)/rate > 0.07 {
		t.Fatalf("verifies %.2f/s per node, want %.2f (one per heartbeat of every other node)", v, rate)
	}
	// Every hop waits for the sender's next round: a heartbeat takes at
	// least half an interval more than on gossip to spread.
	if res.Spread50 < cfg.BumpInterval {
		t.Fatalf("spread p50 %v, want at least one BumpInterval", res.Spread50)
	}
	est := Estimate(cfg, c)
	if r := res.InBps.Mean / est.InBps.Mean; r < 0.85 || r > 1.15 {
		t.Fatalf("sim %.0f B/s vs Estimate %.0f B/s (push degree %.2f vs %.2f)", res.InBps.Mean, est.InBps.Mean, k, est.PushDegree)
	}
	if r := res.BumpFrameFill / est.BumpFrameFill; r < 0.93 || r > 1.07 || res.BumpFrameFill >= 1 {
		t.Fatalf("frame fill %.3f, closed form %.3f: want equal, and below 1 at %d peers", res.BumpFrameFill, est.BumpFrameFill, cfg.N)
	}
	if r := res.CPU.Mean / est.CPU.Mean; r < 0.85 || r > 1.15 {
		t.Fatalf("sim CPU %.4f vs Estimate %.4f", res.CPU.Mean, est.CPU.Mean)
	}
}
