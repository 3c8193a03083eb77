package sim

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
)

// Costs are the per-operation constants the model charges. They are
// measured on the machine that runs the simulation by [Calibrate];
// [DefaultCosts] holds one such measurement so that tests and quick runs do
// not depend on a noisy shared machine.
type Costs struct {
	// EntryBytes is the sealed size of the typical entry (4 addresses,
	// 3 tags, 2 streams, one 300 B ticket).
	EntryBytes int
	// VerifyNs is one raw ed25519 verification of EntryBytes of data.
	VerifyNs float64
	// OpenNs is catalog.OpenEntry of the typical entry: size cap,
	// envelope and entry decoding and the ed25519 verification.
	OpenNs float64
	// HashNs is catalog.HashID (BLAKE3) of one received message, the
	// gossipsub message ID computed for every copy, duplicates included.
	HashNs float64
	// MergeBaseNs and MergePerEntryNs fit today's Store.Merge (which copies
	// the peer map and re-sorts the snapshot) as base + perEntry·n.
	MergeBaseNs, MergePerEntryNs float64
	// MergeSmallNs is Store.Merge at 100 peers: what an O(log n) store
	// (issue 17 part 1) costs at any size, to within a small factor.
	MergeSmallNs float64
	// HeapPerEntry is the heap a store holds per typical entry, sealed
	// bytes included.
	HeapPerEntry float64
}

// DefaultCosts are the medians of five [Calibrate] runs on the project's
// 2-core development machine on 2026-12-04 (main at 9e15e84), while other
// builds kept its load average at 6–11, so single runs varied by up to 3×
// and an idle core is faster: ed25519 verify 66.6–112.4 µs, OpenEntry
// 62.0–266.0 µs, BLAKE3 1.42–3.56 µs, Store.Merge 313–679 ns per peer
// (base 0–20 µs), 13–78 µs at 100 peers, heap 2 794–2 796 B per entry.
func DefaultCosts() Costs {
	return Costs{
		EntryBytes:      819,
		VerifyNs:        69_800,
		OpenNs:          92_400,
		HashNs:          1_940,
		MergeBaseNs:     0,
		MergePerEntryNs: 494,
		MergeSmallNs:    19_000,
		HeapPerEntry:    2_796,
	}
}

// MergeNs is today's cost of merging one update into a catalog of n peers.
func (c Costs) MergeNs(n float64) float64 { return c.MergeBaseNs + c.MergePerEntryNs*n }

// String formats c for reports.
func (c Costs) String() string {
	return fmt.Sprintf("entry %d B sealed; ed25519 verify %.1f µs; OpenEntry %.1f µs; BLAKE3 msg ID %.2f µs; "+
		"Store.Merge %.1f µs + %.0f ns/peer (%.0f µs at 100 peers); heap %.0f B/entry",
		c.EntryBytes, c.VerifyNs/1e3, c.OpenNs/1e3, c.HashNs/1e3, c.MergeBaseNs/1e3, c.MergePerEntryNs,
		c.MergeSmallNs/1e3, c.HeapPerEntry)
}

type calPeer struct {
	key crypto.PrivKey
	id  peer.ID
}

var calNetwork = catalog.IDFromString("mosaik-go/sim")

func newCalPeer() (calPeer, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return calPeer{}, err
	}
	id, err := peer.IDFromPrivateKey(sk)
	return calPeer{key: sk, id: id}, err
}

// typicalEntry is catalog's benchmark entry: 4 addresses, 3 tags, 2
// streams and one 300-byte ticket.
func typicalEntry(p calPeer, v catalog.Version) catalog.Entry {
	e := catalog.Entry{PeerID: p.id, Network: calNetwork, Protocol: catalog.ProtocolVersion, Version: v}
	TypicalFields(&e, "/ip4/192.0.2.10/tcp/4001", "/ip4/192.0.2.10/udp/4001/quic-v1",
		"/ip6/2001:db8::10/tcp/4001", "/ip6/2001:db8::10/udp/4001/quic-v1")
	e.Normalize()
	return e
}

// timeIt returns the mean ns of f over at least minDur and 3 calls.
func timeIt(minDur time.Duration, f func()) float64 {
	n := 0
	start := time.Now()
	for n < 3 || time.Since(start) < minDur {
		f()
		n++
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// Calibrate measures [Costs] on this machine. It takes a few seconds.
func Calibrate() (Costs, error) {
	var c Costs
	t0 := time.Now()
	p, err := newCalPeer()
	if err != nil {
		return c, err
	}
	se, err := catalog.Seal(typicalEntry(p, catalog.NewVersion(t0)), p.key)
	if err != nil {
		return c, err
	}
	data := se.Bytes()
	c.EntryBytes = len(data)

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return c, err
	}
	sig := ed25519.Sign(priv, data)
	c.VerifyNs = timeIt(200*time.Millisecond, func() { ed25519.Verify(pub, data, sig) })
	c.OpenNs = timeIt(200*time.Millisecond, func() { _, _ = catalog.OpenEntry(data, 0) })
	c.HashNs = timeIt(100*time.Millisecond, func() { catalog.HashID(data) })

	small, _, err := mergeCost(100, t0)
	if err != nil {
		return c, err
	}
	m1, _, err := mergeCost(1000, t0)
	if err != nil {
		return c, err
	}
	m4, heap, err := mergeCost(4000, t0)
	if err != nil {
		return c, err
	}
	c.MergeSmallNs = small
	c.MergePerEntryNs = max(0, (m4-m1)/3000)
	c.MergeBaseNs = max(0, m1-1000*c.MergePerEntryNs)
	c.HeapPerEntry = heap
	return c, nil
}

// mergeCost builds a store of n typical peers and returns the mean ns of
// merging one newer version of a random peer, and the heap held per entry.
func mergeCost(n int, t0 time.Time) (float64, float64, error) {
	lp, err := newCalPeer()
	if err != nil {
		return 0, 0, err
	}
	local, err := catalog.Seal(catalog.Entry{PeerID: lp.id, Network: calNetwork, Protocol: catalog.ProtocolVersion,
		Version: catalog.NewVersion(t0)}, lp.key)
	if err != nil {
		return 0, 0, err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := catalog.NewStore(local, catalog.DefaultParams())
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = s.Close() }()
	peers := make([]calPeer, n)
	batch := make([]*catalog.SignedEntry, n)
	for i := range peers {
		if peers[i], err = newCalPeer(); err != nil {
			return 0, 0, err
		}
		if batch[i], err = catalog.Seal(typicalEntry(peers[i], catalog.NewVersion(t0)), peers[i].key); err != nil {
			return 0, 0, err
		}
	}
	if _, errs := s.MergeAll(batch, t0); errs[0] != nil {
		return 0, 0, errs[0]
	}
	batch = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

	const updates = 256
	ups := make([]*catalog.SignedEntry, updates)
	for i := range ups {
		p := peers[(i*7919)%n]
		v := catalog.NewVersion(t0)
		v.UpdateMS += int64(i + 1)
		if ups[i], err = catalog.Seal(typicalEntry(p, v), p.key); err != nil {
			return 0, 0, err
		}
	}
	now := t0.Add(time.Second)
	runtime.GC()
	start := time.Now()
	for _, u := range ups {
		if _, err := s.Merge(u, now); err != nil {
			return 0, 0, err
		}
	}
	runtime.KeepAlive(peers)
	return float64(time.Since(start).Nanoseconds()) / updates, heap, nil
}

// TypicalFields fills e with the typical entry of issue 17's measurements:
// the given addresses (4 of them: TCP and QUIC, IPv4 and IPv6), 3 tags, 2
// streams and one 300 B ticket. The catalog-scale bench rows use it too,
// so that the model and the measured node see the same entries.
func TypicalFields(e *catalog.Entry, addrs ...string) {
	for _, a := range addrs {
		e.Addrs = append(e.Addrs, ma.StringCast(a))
	}
	e.Tags = []catalog.Tag{catalog.IDFromString("validator"), catalog.IDFromString("region-eu"), catalog.IDFromString("tier-1")}
	e.Streams = []catalog.StreamID{catalog.IDFromString("orders"), catalog.IDFromString("blocks")}
	ticket := make([]byte, 300)
	for i := range ticket {
		ticket[i] = byte(i)
	}
	e.Tickets = []catalog.Ticket{{Class: catalog.IDFromString("jwt"), Data: ticket}}
}
