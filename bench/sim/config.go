// Package sim is a discrete-event simulation of what one mosaik node pays
// in bandwidth, memory and CPU to keep its catalog, for the current design
// (every node holds every entry, heartbeats flood one gossipsub topic) and
// for a scoped design (a node holds the entries of the streams and groups
// it uses plus a small random sample, and finds the rest through DHT
// provider records). SCALING.md at the repository root explains the model
// and its numbers; cmd/mosaik-sim runs it.
//
// Heartbeats, churn, anti-entropy syncs, DHT republishes and sample
// shuffles are events on one clock. A sampled share of the published
// messages is propagated hop by hop through the gossipsub mesh with hop
// latencies, duplicates and IHAVE/IWANT gossip; the others count through
// the sampled ones' weight, so a 100 000-peer run takes seconds. With
// Config.BumpPush the Full design's heartbeats travel instead as batched
// bumps over a push graph (PROTOCOL.md section 10.9).
package sim

import "time"

// Design selects the catalog design simulated.
type Design int

const (
	// Full is today's design: one catalog topic, every node holds and
	// refreshes every entry.
	Full Design = iota
	// Scoped is the proposed design: one topic per stream (its producers
	// heartbeat on it) and per group, a bounded random sample of the
	// network, and DHT provider records for the rest.
	Scoped
)

func (d Design) String() string {
	if d == Scoped {
		return "scoped"
	}
	return "full"
}

// Config is one simulation run. Start from [DefaultConfig].
type Config struct {
	N      int
	Design Design
	// DeltaSync models issue 17's digest + paged delta sync instead of
	// today's whole-catalog exchange.
	DeltaSync bool
	// IDontWant models gossipsub v1.2's IDONTWANT for catalog messages
	// (go-libp2p-pubsub sends it only for messages of at least
	// IDontWantMessageThreshold, 1 KiB by default, larger than a typical
	// entry): on its first copy a node tells its mesh peers, and a peer
	// that hears it before forwarding skips that copy.
	IDontWant bool
	// BumpPush models batched bump push (PROTOCOL.md section 10.9,
	// discovery's BumpInterval and BumpPeers) for the Full design: a
	// heartbeat leaves gossip and travels hop by hop over the push graph
	// (each node pushes to BumpPeers chosen topic peers and to those that
	// chose it, up to twice as many), in one frame per push peer per
	// BumpInterval; departures stay on gossip.
	BumpPush bool
	Seed     uint64
	// SimTime is the simulated time over which rates are measured.
	SimTime time.Duration
	// DeliveryBudget bounds the hop-by-hop deliveries simulated: messages
	// are sampled so that about this many are, and weighted back.
	DeliveryBudget float64
	// MinFloods raises the budget so that at least this many messages of
	// the largest topic's size are flooded.
	MinFloods int

	// Gossipsub (go-libp2p-pubsub defaults, PROTOCOL.md §14.1).
	D, Dlazy       int
	TopicPeers     int           // connected peers on a topic: mesh plus gossip targets
	GossipInterval time.Duration // gossipsub heartbeat
	HistoryGossip  int           // heartbeats a message ID is advertised in IHAVE
	MaxIHaveLength int
	MCacheLen      int           // heartbeats a message is kept for IWANT
	SeenTTL        time.Duration // duplicate-suppression cache
	HopMin, HopMax time.Duration // one-hop latency, uniform

	// Bump push (discovery.DefaultParams, PROTOCOL.md section 10.9).
	BumpInterval time.Duration // a node's frames leave at its own phase, one per interval
	BumpPeers    int           // push peers chosen; up to 2× with those that push to us

	// Catalog (catalog.DefaultParams, discovery.DefaultParams).
	Heartbeat    time.Duration
	Jitter       float64
	PurgeAfter   time.Duration
	AntiEntropy  time.Duration
	DHTRepublish time.Duration

	// Wire sizes in bytes.
	FrameBytes     int // gossipsub RPC + Announcement framing around an entry
	IDBytes        int // one message ID in IHAVE/IWANT (32 B BLAKE3 + tag)
	DepartureBytes int
	DigestBytes    int // one (peer ID, version) pair in a sync digest
	SeenBytes      int // heap per seen-cache entry
	DHTRPCBytes    int // one kad-dht lookup RPC, request plus response
	DHTProviderRec int // one ADD_PROVIDER record
	DHTBucket      int // k: records are stored on the k closest peers
	BumpBytes      int // one bump record of an ed25519 peer
	BumpFrameBytes int // framing of one bump frame: length prefix, yamux and noise
	BumpLogBytes   int // heap per bump held for the push peers
	BumpFrameCap   int // discovery.MaxBumpFrame: the rest waits for the next frame

	// Churn: every node is replaced after an exponential session; a share
	// of leaves are graceful (departure published), the rest crash and
	// linger until purged.
	Session       time.Duration
	GracefulShare float64
	CascadeBelow  int // connections a newcomer opens (sync on connect)

	// Scoped workload.
	StreamsProduced    int     // streams each node produces
	StreamsConsumed    int     // streams each node consumes
	ProducersPerStream float64 // mean producers of a stream
	ConsumerZipf       float64 // popularity skew of consumed streams
	GroupSize          int     // members of the one group each node is in
	Sample             int     // random-sample entries each node keeps
	ShuffleInterval    time.Duration
	ShuffleSize        int
}

// DefaultConfig is the model of today's defaults for n peers.
func DefaultConfig(n int, d Design) Config {
	return Config{
		N: n, Design: d, Seed: 1,
		SimTime:        150 * time.Second,
		DeliveryBudget: 3e7, MinFloods: 20,

		D: 6, Dlazy: 6, TopicPeers: 20,
		GossipInterval: time.Second, HistoryGossip: 3, MaxIHaveLength: 5000, MCacheLen: 5,
		// mosaik's routers keep message IDs seen for 30 s
		// (discovery.SeenMessagesTTL, since session 11), not the
		// library's 2 min.
		SeenTTL: 30 * time.Second,
		HopMin:  20 * time.Millisecond, HopMax: 120 * time.Millisecond,

		Heartbeat: 30 * time.Second, Jitter: 0.5, PurgeAfter: 300 * time.Second,
		AntiEntropy: 120 * time.Second, DHTRepublish: 120 * time.Second,

		FrameBytes: 60, IDBytes: 34, DepartureBytes: 200, DigestBytes: 48, SeenBytes: 150,
		DHTRPCBytes: 1600, DHTProviderRec: 120, DHTBucket: 20,
		BumpInterval: time.Second, BumpPeers: 6,
		BumpBytes: 127, BumpFrameBytes: 33, BumpLogBytes: 200, BumpFrameCap: 64 << 10,

		Session: time.Hour, GracefulShare: 0.5, CascadeBelow: 8,

		StreamsProduced: 2, StreamsConsumed: 3, ProducersPerStream: 4, ConsumerZipf: 0.8,
		GroupSize: 5, Sample: 32, ShuffleInterval: 30 * time.Second, ShuffleSize: 8,
	}
}

// inFlight is how long a heartbeat is in flight between two nodes, for
// the anti-entropy syncs that find it: a hop's latency, and with bump push
// one more BumpInterval (a heartbeat waits half an interval at each hop).
func (cfg Config) inFlight() float64 {
	w := cfg.HopMax.Seconds()
	if cfg.BumpPush {
		w += cfg.BumpInterval.Seconds()
	}
	return w
}

// frameFill is the share of BumpFrameCap that a frame of one interval's
// bumps takes when a node accepts a bumps a second (and sends its own).
func (cfg Config) frameFill(a float64) float64 {
	perFrame := (a + 1/cfg.Heartbeat.Seconds()) * cfg.BumpInterval.Seconds()
	return perFrame * float64(cfg.BumpBytes) / float64(cfg.BumpFrameCap)
}
