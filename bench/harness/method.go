package harness

import (
	"fmt"
	"strings"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
)

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, " and ")
}

// method describes, in the report, what this run did.
func (r *runner) method() []string {
	p := r.plan
	var tp, ln []string
	for _, c := range p.tput {
		tp = append(tp, fmt.Sprintf("%s %s", c.id, fmtNum(float64(c.count))))
	}
	for _, c := range p.lat {
		ln = append(ln, fmt.Sprintf("%d/s for %v", c.rate, c.dur))
	}
	m := []string{
		"One process, 127.0.0.1 only. mosaik, raw and gossipsub run on identical libp2p hosts (TCP only, Noise, yamux, ed25519, the resource limits of a standalone mosaik node, reachability pinned to private so AutoNAT v1 stays static), each system on its own hosts; NATS runs an embedded nats-server (default options) with nats.go clients over loopback TCP.",
		"Every system gets the same payloads and counts. A subscriber is a separate host (libp2p) or connection (NATS); the publisher is on its own host. Systems run in turn inside each repetition, in an order rotated every repetition; each repetition starts after a runtime.GC().",
		"mosaik: node.New on a borrowed host (node.WithHost), node.WithoutDHT, default streams parameters, default discovery parameters except CascadeBelow = 0 (consumer nodes connect to the producer node only: the same star as the other systems), codec streams.Bytes, default lagging policy (TooSlow after a 100 ms lag grace); the consumer hands each datum to the application as its own []byte through Recv.",
		"raw: one libp2p stream per subscriber with mosaik's framing (uvarint length, type byte, uvarint sequence, payload), 32 KiB bufio.Writer, 64 KiB bufio.Reader; the reader checks the sequence and looks at the payload in place (no copy, no queue, no application hand-off): the physical limit of the transport with equal framing. One writer goroutine per subscriber, backpressure from yamux flow control.",
		fmt.Sprintf("gossipsub: go-libp2p-pubsub with default GossipSubParams and message signing (StrictSign: each message signed once, verified by every receiver); non-default: WithFloodPublish(true) (off by default in v0.19) so the publisher sends to every subscriber directly, and in every row but gossipsub-default WithBufferSize, WithPeerOutboundQueueSize and WithValidateQueueSize raised from 32 to %d. Star topology: subscriber hosts connect to the publisher only.", gossipRaised),
		"NATS core: async subscriptions (one goroutine per subscription); pending limits lifted in the flow rows, defaults (500 000 msgs / 64 MiB) in the overload row except nats-2k (2 048 messages, the bound mosaik keeps per consumer); ErrSlowConsumer callbacks and Subscription.Dropped count as reported loss.",
		fmt.Sprintf("Throughput and fan-out: mosaik, gossipsub and NATS have no end-to-end backpressure, so the publisher keeps at most %d datums in flight per subscriber (credits returned every %d datums, the same for all three); raw writes through its own flow control. A repetition sends up to the count (%s; fan-out %d B, %s deliveries over N subscribers) or stops sending after %v, and ends when the last datum arrives; datums/s is delivered datums (all subscribers) ÷ that time. One warm-up repetition per system is not recorded.", flight, batch, strings.Join(tp, ", "), 256, fmtNum(float64(p.fanTotal())), p.capDur),
		"CPU: process CPU time (getrusage user + system, every goroutine of the process: publisher and subscribers, router, server) over the repetition ÷ datums delivered.",
		fmt.Sprintf("Latency: 64 B datums carrying time.Now().UnixNano() at the send, on an absolute schedule (the due time of datum i, then sleep), %s; measured in the subscriber's receiving goroutine; p50/p99/p999 by nearest rank within each repetition. The raw sender flushes every frame.", strings.Join(ln, " and ")),
		fmt.Sprintf("Overload: one session per system for all repetitions, one fast and one slow subscriber. The publisher offers the same load to every system: %d datums/s of %d B for %v (%s datums), paced; the slow subscriber has a fixed service time (at most %d datums/s) while the publisher runs and then catches up at full speed, so only what a system dropped counts as lost, not what it still buffered. Counts are taken once no datum arrived for %v. 'lost without notice' is the loss (%% of the 2 × %s datums due) in a repetition where the application got no signal through the system's API: mosaik's consumer sees TooSlow in Producers() and a reconnect (or gaps in drop mode) and its producer counts Dropped; NATS calls the error handler with ErrSlowConsumer and counts Subscription.Dropped; gossipsub drops at its queues with only an INFO log (the RawTracer counts in the note are for the record). A raw stream is not in this row: it has backpressure and loses nothing (its publisher is slowed down instead).", p.ovRate, p.ovSize, p.ovDur, fmtNum(float64(p.ovRate)*p.ovDur.Seconds()), p.slowRate, p.ovQuiet, fmtNum(float64(p.ovRate)*p.ovDur.Seconds())),
		"Time to first datum: the publisher is running and known (mosaik: in the consumer node's catalog; gossipsub: topic joined, hosts connected; NATS: connections open); from NewConsumer / Subscribe to the first datum received. The mosaik producer and the gossipsub publisher send once they see the subscriber (Send waits until online / a PeerJoin topic event); the NATS publisher, which has no such signal, republishes every ~50 µs; raw opens a new stream on the existing connection to a handler that writes one frame at once. Each operation is one repetition.",
		fmt.Sprintf("Discovery: N nodes in the process, each given only the first node's address; the time runs from the start of the second node until every node knows all N (polled every 1 ms). mosaik: node.New defaults (default discovery parameters, gossipsub, sync-on-connect, kad-dht) on hosts like the standalone node's but TCP only on 127.0.0.1, host start-up inside the time; memberlist: DefaultLocalConfig on 127.0.0.1, joins in the background like node.New's bootstrap. Node start-up is inside the time for both. Two times per repetition: when 99 %% of the N² (node, node) pairs are known (the gossip epidemic) and when all are; the latter is cut at %v (a capped repetition counts as %v, so the true median can only be higher). Two more rows split the 99 %% time, not judged by any target: when the last node's start returned (node start-up, for mosaik mostly libp2p.New building the host: 2–4 ms a node on 2 cores, memberlist.Create well under 1 ms) and the 99 %% time less that (the spread of the entries once every node runs). The two share the cores: where the row is CPU-bound (mosaik at N = 100), a faster start leaves more of the join wave after it, so the second is not the protocol's time alone. Each repetition starts after debug.FreeOSMemory (the process's free heap pages go back to the OS), so every system touches the memory its nodes use anew, as separate processes would: without it a repetition that followed one of the same system reused that one's pages, and the median depended on the systems' order (at N = 100, cold, mosaik's nodes touch about 28 000–32 000 new pages before 99 %% of pairs, memberlist's about 14 000; warm, after a repetition of the other system, almost none). Two more rows, not judged either: the process's CPU time (user and system, both cores; getrusage) and its minor page faults from the start to 99 %% of pairs.", p.discLimit, p.discLimit),
	}
	m = append(m, fmt.Sprintf("Replay rows: 'mosaik-replay' is mosaik with streams.WithReplay(%+v) on the producer, in the same run and repetitions as 'mosaik' (64 B and 1 KiB throughput, as above): the window's steady-state cost. Resume: a producer (online without consumers) sends 64 B datums at %d/s on an absolute schedule; a consumer on another node reads for 1 s, saves Positions() and closes; %v later a new consumer starts with WithResumeFrom(the saved positions); the time runs from its NewConsumer until it has received every datum sent before that moment, each exactly once (gaps are counted as missed). Memory: the heap (after runtime.GC) that 100 000 datums of 64 B held in a full window take, payloads included, per datum.", benchReplay, replayRate, replayCut))
	if len(p.repl) > 0 {
		n, keys := r.catchUpCommands()
		gp := "default groups.Params (500 ms heartbeat, 2 s election timeout, 3 s bootstrap delay, snapshot every 10 000 entries)"
		if r.cfg.Mode == Smoke {
			gp = "groups.TestParams (smoke mode only: a short bootstrap delay)"
		}
		m = append(m,
			fmt.Sprintf("Groups rows: a replicated key-value put of a 64 B value, committed by 3 replicas on loopback. mosaik: 3 nodes (node.New on borrowed hosts like the others, node.WithoutDHT), each bootstrapped from the first, joined to one group with a map state machine, in-memory log, default CBOR codec, %s; a put is Execute (returns once committed and applied on the caller's node). Measuring starts when all three agree on the leader and the log has been still for three heartbeats (the membership changes are done: 3 voters). 'mosaik' calls Execute on the leader's handle; 'mosaik-via-follower' on a follower's (forwarded to the leader). 'mosaik-durable' keeps every member's raft log in a data dir (node.WithDataDir: a write-ahead log, one fdatasync per append on every member; the leader sends its appends before its own fsync); all three data dirs share this machine's one disk. JetStream 'file-sync' is file storage with sync_interval: always (an fsync per write on every server), the like-for-like durable peer.", gp),
			fmt.Sprintf("JetStream R3: three nats-server nodes embedded in the process, clustered over loopback, a KV bucket with 3 replicas (memory or file storage), synchronous Put from nats.go clients on server 1 (up to 8 connections shared by the clients). raw-rtt: a 64 B request and its 64 B echo on one libp2p stream between two hosts, the physical floor of one replication round trip. Sequential: %d puts per repetition after a warm-up, p50/p99 by nearest rank. Concurrent: 8, 32 and 64 goroutines each putting as soon as its previous put returned, for %v per repetition after a warm-up of a quarter of that; puts/s = completed puts ÷ time.", p.replSeq, p.replDur),
			fmt.Sprintf("Failover: a fresh 3-member group per repetition; from the start of closing the leader (its node: departures sent; or only its libp2p host: no departure, the connections just end, as when a process is killed) to the first Execute through a survivor that commits under another leader (retried at once on ErrOffline). Catch-up: one group filled with %s commands (ExecuteMany of 256, keys repeating every %s, so the state is %s values of 64 B); per repetition a new node (own host) joins as a writer: time from node.New until it has applied the leader's last index, bytes its host received (libp2p bandwidth counter, every protocol) and bytes its group bonds received; the new node leaves after each repetition.", fmtNum(float64(n)), fmtNum(float64(keys)), fmtNum(float64(keys))))
	}
	if len(p.colSizes) > 0 {
		var sizes []string
		for _, n := range p.colSizes {
			sizes = append(sizes, fmtNum(float64(n)))
		}
		m = append(m,
			"Collections insert rows: a collections.Map[string, []byte] opened as a writer on 3 nodes built as in the groups rows (same groups.Params), settled the same way (3 voters, logs still for three heartbeats); a put is Map.Insert of a 64 B value on the leader's replica (returns once committed and applied there). JetStream R3 (memory) and raw-rtt as in the groups rows; the same sequential count, clients (8, 32) and repetition length.",
			fmt.Sprintf("Collections sync rows (%s entries): 3 writer replicas filled with Map.Extend in batches of %d entries (12-character keys, 64 B values), snapshots every quarter of the fill's commands and a compaction window of 1, so a late reader is sent a snapshot (per-node fields, not in the group id); after the fill the writers snapshot the quiet state (groups.Params.SnapshotQuiet, default 1 s; the run waits up to 10 s for every writer's Status.SnapshotIndex to reach its applied index), as a long-lived map's writers have. Per repetition a fresh node (own host, bootstrapped from the first writer) waits until its catalog holds the writers, then, after a runtime.GC() (as every streams repetition starts), the time runs from NewMapReader until the reader has applied the last version (and holds every entry); 'first bond → synced' starts at the reader's first bond in the map's group; bytes are its host's libp2p bandwidth counter (every protocol). raw: the state's bytes (the entries' canonical CBOR as in the snapshot) written in 32 KiB chunks on a new libp2p stream between two connected hosts and read until EOF. 'state throughput' is the state's bytes ÷ time for both.", strings.Join(sizes, ", "), colBatch),
			"Collections local rows: a single writer replica (a group of one) filled as above, with one snapshot at the end of the fill; heap per entry = live heap after the fill − live heap with the empty map open (runtime.GC twice, HeapAlloc), ÷ entries, one sample; it includes the snapshot bytes and the log tail. Get: testing.Benchmark (≈ 1 s per repetition) of Get on random present keys, ns/op, allocs/op and B/op.")
	}
	if len(p.catConvNs) > 0 {
		m = append(m, fmt.Sprintf("Catalog convergence rows (catalog/convergence/N=…, issue 17): the discovery measurement above at N = %s with a %v limit, in quick mode too; the discovery/N=… rows keep their ids and limits.", joinInts(p.catConvNs), p.catLimit))
	}
	if c := p.catScale; c.entries > 0 {
		m = append(m, fmt.Sprintf("Catalog scale rows (catalog/scale/…): one node (node.New on its own host, default discovery parameters with the catalog's MaxPeers raised to hold the generators' own entries, no DHT) fed over its real bump push, gossipsub topic and sync protocol by %d generator hosts in a child process (this binary re-executed, so that making keys, signing heartbeats and the generators' routers cost the child, not the node's process). Each generator runs a gossipsub router subscribed to the catalog topic and a discovery service without gossip whose store holds every simulated entry (it serves syncs and bump push like a node). Simulated peers have typical entries (4 loopback addresses on a port nothing listens on, 3 tags, 2 streams, one 300 B ticket); each re-signs its entry with a new version every heartbeat (default AnnounceInterval %v ± %.0f %% at %s peers; the %s-peer catalog beats %d× as often, so both see the same update rate and the cost per update compares like with like; the heartbeat interval is never scaled otherwise), merged into every generator's store and pushed to the node by one generator's discovery service as a bump in its next bump push frame (PROTOCOL.md §10.9: once a second, as a node of the network sends on the heartbeats it accepted; the node pushes on to the other generators what it merged; with MOSAIK_BENCH_BUMP_RELAYS set every generator pushes every heartbeat, so the node also drops 3 copies of each as known); the topology is a star (the generators connect only to the node). After set-up (a sync with one generator, connections to all, %v of warm-up), per repetition: a %v window of the node process's CPU (getrusage: the node alone, the generators are in the child) and the updates it applied (discovery Stats Added + Updated); its live heap (two GCs) minus the heap of the same node before its first sync, per entry, with and without the mean sealed entry size; at %s peers also a %v partition (a connection gater refuses the generators, their connections are closed; heartbeats go on) followed by reconnection and one explicit sync with a generator (bytes both ways from the node's sync counters), and a newcomer's full sync: a fresh node (syncs on connect off, so exactly one sync runs) calls SyncWith on the node under test; time and bytes.",
			scaleGenHosts, discovery.DefaultParams().AnnounceInterval, 100*discovery.DefaultParams().AnnounceJitter, fmtNum(float64(c.entries)), fmtNum(float64(c.small)), c.entries/c.small, min(c.window, 5*time.Second), c.window, fmtNum(float64(c.entries)), scalePartition))
	}
	switch r.cfg.Mode {
	case Quick:
		m = append(m, fmt.Sprintf("Quick mode: smaller counts, a %v time cap, a %v overload, no mosaik-drop and gossipsub-default overload rows, discovery/N=… rows only for N ∈ {10, 25} with a %v limit (the catalog/convergence rows run N = 50 and 100 in quick mode too), and a 10 s CPU window in the catalog/scale rows (30 s in the full run) at the same, default, update rate. Use the full run for numbers to quote.", p.capDur, p.ovDur, p.discLimit))
	case Smoke:
		m = append(m, "Smoke mode: one tiny repetition of a few scenarios; the numbers mean nothing.")
	}
	return append(m, sybilMethod())
}

func (p plan) fanTotal() int {
	if len(p.fan) == 0 {
		return 0
	}
	return p.fan[0].count * p.fan[0].subs
}
