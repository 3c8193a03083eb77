package catalog

import (
	"bytes"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog/pb"
)

// Wire constants. They are part of the protocol (see PROTOCOL.md).
const (
	// EntryDomain is the record-envelope signing domain of catalog entries.
	EntryDomain = "mosaik-catalog-entry"
	// DepartureDomain is the signing domain of departure messages.
	DepartureDomain = "mosaik-catalog-departure"
	// ProtocolVersion is written into every entry this implementation seals.
	ProtocolVersion = "mosaik-go/0.1.0"

	// DefaultMaxEntrySize caps a sealed entry (envelope included). Larger
	// entries are rejected before any decoding.
	DefaultMaxEntrySize = 8 << 10

	// Structural caps enforced when decoding an entry.
	MaxAddrs   = 64
	MaxTags    = 256
	MaxStreams = 1024
	// MaxTickets: a peer needs one ticket per class it proves and two
	// while it renews one, so 16 covers eight classes mid-renewal. Every
	// ticket of a class a validator requires may cost a signature check
	// whenever the entry changes, so the cap also bounds that work: 16
	// ECDSA P-384 checks (the slowest accepted) are about 16 ms. The entry
	// size cap already bounds large tickets; this one bounds small ones (a
	// libp2p-signed ticket is about 200 bytes).
	MaxTickets     = 16
	MaxGroups      = 256
	maxProtocolLen = 128
	maxNameLen     = 128
)

// Envelope payload types (the "codec" of libp2p record envelopes).
var (
	EntryPayloadType     = []byte("/mosaik/catalog/entry/1")
	DeparturePayloadType = []byte("/mosaik/catalog/departure/1")
)

// Version orders the entries of one peer: StartMS is the unix millisecond at
// which the node's run began, UpdateMS a per-run counter that tracks the
// wall clock and strictly increases on every change. A restarted node has a
// later StartMS and so always beats its previous run.
type Version struct {
	StartMS  int64
	UpdateMS int64
}

// NewVersion returns the first version of a run starting at now.
func NewVersion(now time.Time) Version {
	ms := now.UnixMilli()
	return Version{StartMS: ms, UpdateMS: ms}
}

// Next returns the version after v: its update counter becomes
// max(UpdateMS, now)+1, so versions are strictly monotonic even when the
// clock stalls or steps back, and roughly equal to the time of the change.
func (v Version) Next(now time.Time) Version {
	u := max(v.UpdateMS, now.UnixMilli())
	if u < 1<<63-1 {
		u++
	}
	return Version{StartMS: v.StartMS, UpdateMS: u}
}

// Compare orders versions lexicographically by (StartMS, UpdateMS).
func (v Version) Compare(o Version) int {
	switch {
	case v.StartMS != o.StartMS:
		if v.StartMS < o.StartMS {
			return -1
		}
		return 1
	case v.UpdateMS < o.UpdateMS:
		return -1
	case v.UpdateMS > o.UpdateMS:
		return 1
	}
	return 0
}

// UpdatedAt is the wall-clock time of the last change.
func (v Version) UpdatedAt() time.Time { return time.UnixMilli(v.UpdateMS) }

// StartedAt is the wall-clock time at which the run began.
func (v Version) StartedAt() time.Time { return time.UnixMilli(v.StartMS) }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.StartMS, v.UpdateMS) }

// Ticket is an opaque authorization credential of a class, carried in the
// holder's catalog entry. Its validator (package policy) interprets Data.
type Ticket struct {
	Class TicketClass
	Data  []byte
}

func compareTickets(a, b Ticket) int {
	if c := a.Class.Compare(b.Class); c != 0 {
		return c
	}
	return bytes.Compare(a.Data, b.Data)
}

// Membership is one group of a peer's entry: the group's ID and the peer's
// role in it. Roles are the groups package's (1 writer, 2 reader); any
// non-zero value up to 255 is carried, so later roles pass through older
// nodes.
type Membership struct {
	Group ID
	Role  uint8
}

// Entry is a peer's self-description in the catalog. Entries read from a
// catalog snapshot are shared: treat them as read-only and Clone before
// changing one.
type Entry struct {
	PeerID   peer.ID
	Network  NetworkID
	Protocol string
	Version  Version
	Addrs    []ma.Multiaddr
	Tags     []Tag        // sorted, unique
	Streams  []StreamID   // sorted, unique
	Tickets  []Ticket     // sorted by (Class, Data), unique
	Groups   []Membership // sorted by Group, unique by Group
	// Names are the human-readable names of tags and streams, for display
	// ("validator", "orders"); each derives an ID in Tags or Streams. They
	// are optional: IDs are what the protocol compares.
	Names []string // sorted, unique
	// SkippedAddrs counts addresses of a received entry that this version
	// cannot parse (a protocol code go-multiaddr does not know, or bytes
	// that are not a multiaddr). They are left out of Addrs, as go-libp2p
	// does with peer records, rather than refusing the whole entry: a peer
	// advertising a transport we do not know stays reachable on the others.
	// The signed bytes keep them, so relays and syncs pass them on.
	SkippedAddrs int
}

// NameOf returns the known name of id (a tag or stream of the entry), or
// its hex form.
func (e *Entry) NameOf(id ID) string {
	for _, n := range e.Names {
		if IDFromString(n) == id {
			return n
		}
	}
	return id.String()
}

// HasTag reports whether the entry carries tag t.
func (e *Entry) HasTag(t Tag) bool {
	_, ok := slices.BinarySearchFunc(e.Tags, t, ID.Compare)
	return ok
}

// HasTags reports whether the entry carries every tag in ts.
func (e *Entry) HasTags(ts ...Tag) bool {
	for _, t := range ts {
		if !e.HasTag(t) {
			return false
		}
	}
	return true
}

// Produces reports whether the peer produces stream s.
func (e *Entry) Produces(s StreamID) bool {
	_, ok := slices.BinarySearchFunc(e.Streams, s, ID.Compare)
	return ok
}

// InGroup returns the peer's membership of group g.
func (e *Entry) InGroup(g ID) (Membership, bool) {
	i, ok := slices.BinarySearchFunc(e.Groups, g, func(m Membership, g ID) int { return m.Group.Compare(g) })
	if !ok {
		return Membership{}, false
	}
	return e.Groups[i], true
}

// TicketsOf returns the data of every ticket of class c.
func (e *Entry) TicketsOf(c TicketClass) [][]byte {
	var out [][]byte
	for _, t := range e.Tickets {
		if t.Class == c {
			out = append(out, t.Data)
		}
	}
	return out
}

// AddrInfo returns the peer's ID and addresses.
func (e *Entry) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: e.PeerID, Addrs: slices.Clone(e.Addrs)}
}

// Clone returns a deep copy that may be changed freely.
func (e *Entry) Clone() Entry {
	c := *e
	c.Addrs = slices.Clone(e.Addrs)
	c.Tags = slices.Clone(e.Tags)
	c.Streams = slices.Clone(e.Streams)
	c.Names = slices.Clone(e.Names)
	c.Groups = slices.Clone(e.Groups)
	c.Tickets = make([]Ticket, len(e.Tickets))
	for i, t := range e.Tickets {
		c.Tickets[i] = Ticket{Class: t.Class, Data: slices.Clone(t.Data)}
	}
	if e.Tickets == nil {
		c.Tickets = nil
	}
	return c
}

// Normalize sorts and de-duplicates the sets of the entry in place, the form
// in which entries are sealed and compared.
func (e *Entry) Normalize() {
	slices.SortFunc(e.Tags, ID.Compare)
	e.Tags = slices.Compact(e.Tags)
	slices.SortFunc(e.Streams, ID.Compare)
	e.Streams = slices.Compact(e.Streams)
	slices.SortFunc(e.Tickets, compareTickets)
	e.Tickets = slices.CompactFunc(e.Tickets, func(a, b Ticket) bool { return compareTickets(a, b) == 0 })
	// One membership per group: the first after sorting by (group, role).
	slices.SortFunc(e.Groups, func(a, b Membership) int {
		if c := a.Group.Compare(b.Group); c != 0 {
			return c
		}
		return int(a.Role) - int(b.Role)
	})
	e.Groups = slices.CompactFunc(e.Groups, func(a, b Membership) bool { return a.Group == b.Group })
	// Keep only names of listed tags and streams.
	e.Names = slices.DeleteFunc(e.Names, func(n string) bool {
		id := IDFromString(n)
		return len(n) > maxNameLen || (!e.HasTag(id) && !e.Produces(id))
	})
	slices.Sort(e.Names)
	e.Names = slices.Compact(e.Names)
	slices.SortFunc(e.Addrs, func(a, b ma.Multiaddr) int { return bytes.Compare(a.Bytes(), b.Bytes()) })
	e.Addrs = slices.CompactFunc(e.Addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) })
}

// sameContent reports whether a and b differ only in their version.
func sameContent(a, b *Entry) bool {
	return a.PeerID == b.PeerID && a.Network == b.Network && a.Protocol == b.Protocol &&
		slices.EqualFunc(a.Addrs, b.Addrs, func(x, y ma.Multiaddr) bool { return x.Equal(y) }) &&
		slices.Equal(a.Tags, b.Tags) && slices.Equal(a.Streams, b.Streams) && slices.Equal(a.Names, b.Names) &&
		slices.EqualFunc(a.Tickets, b.Tickets, func(x, y Ticket) bool { return compareTickets(x, y) == 0 }) &&
		slices.Equal(a.Groups, b.Groups) &&
		a.SkippedAddrs == b.SkippedAddrs
}

func (e *Entry) toPB() *pb.Entry {
	m := &pb.Entry{
		PeerId:   []byte(e.PeerID),
		Network:  e.Network[:],
		Protocol: e.Protocol,
		Version:  &pb.Version{StartMs: e.Version.StartMS, UpdateMs: e.Version.UpdateMS},
	}
	for _, a := range e.Addrs {
		m.Addrs = append(m.Addrs, a.Bytes())
	}
	for _, t := range e.Tags {
		m.Tags = append(m.Tags, t[:])
	}
	for _, s := range e.Streams {
		m.Streams = append(m.Streams, s[:])
	}
	for _, t := range e.Tickets {
		m.Tickets = append(m.Tickets, &pb.Ticket{Class: t.Class[:], Data: t.Data})
	}
	m.Names = e.Names
	for _, g := range e.Groups {
		m.Groups = append(m.Groups, &pb.GroupMembership{Id: g.Group[:], Role: uint32(g.Role)})
	}
	return m
}

func entryFromPB(m *pb.Entry) (Entry, error) {
	var e Entry
	id, err := peer.IDFromBytes(m.GetPeerId())
	if err != nil {
		return e, malformed("peer id: %v", err)
	}
	e.PeerID = id
	if e.Network, err = IDFromBytes(m.GetNetwork()); err != nil {
		return e, malformed("network: %v", err)
	}
	if len(m.GetProtocol()) > maxProtocolLen {
		return e, malformed("protocol string longer than %d", maxProtocolLen)
	}
	e.Protocol = m.GetProtocol()
	e.Version = Version{StartMS: m.GetVersion().GetStartMs(), UpdateMS: m.GetVersion().GetUpdateMs()}
	if e.Version.StartMS <= 0 || e.Version.UpdateMS < e.Version.StartMS {
		return e, malformed("invalid version %v", e.Version)
	}
	if len(m.Addrs) > MaxAddrs || len(m.Tags) > MaxTags || len(m.Streams) > MaxStreams || len(m.Tickets) > MaxTickets ||
		len(m.Groups) > MaxGroups || len(m.Names) > len(m.Tags)+len(m.Streams) {
		return e, malformed("too many addrs, tags, streams, tickets or groups")
	}
	for _, b := range m.Addrs {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			e.SkippedAddrs++
			continue
		}
		e.Addrs = append(e.Addrs, a)
	}
	ids := func(in [][]byte, what string) ([]ID, error) {
		out := make([]ID, 0, len(in))
		for _, b := range in {
			id, err := IDFromBytes(b)
			if err != nil {
				return nil, malformed("%s: %v", what, err)
			}
			out = append(out, id)
		}
		return out, nil
	}
	if e.Tags, err = ids(m.Tags, "tag"); err != nil {
		return e, err
	}
	if e.Streams, err = ids(m.Streams, "stream"); err != nil {
		return e, err
	}
	for _, t := range m.Tickets {
		c, err := IDFromBytes(t.GetClass())
		if err != nil {
			return e, malformed("ticket class: %v", err)
		}
		e.Tickets = append(e.Tickets, Ticket{Class: c, Data: t.GetData()})
	}
	for _, g := range m.Groups {
		id, err := IDFromBytes(g.GetId())
		if err != nil {
			return e, malformed("group: %v", err)
		}
		if g.GetRole() == 0 || g.GetRole() > 255 {
			return e, malformed("group %s: role %d is not within [1, 255]", id.Short(), g.GetRole())
		}
		e.Groups = append(e.Groups, Membership{Group: id, Role: uint8(g.GetRole())})
	}
	e.Normalize()
	for _, n := range m.Names {
		if len(n) > maxNameLen {
			return e, malformed("name longer than %d bytes", maxNameLen)
		}
		if id := IDFromString(n); !e.HasTag(id) && !e.Produces(id) {
			return e, malformed("name %q names no tag or stream of the entry", n)
		}
	}
	e.Names = slices.Clone(m.Names)
	slices.Sort(e.Names)
	e.Names = slices.Compact(e.Names)
	return e, nil
}

// checkShape enforces the structural caps that receivers enforce, so a node
// cannot seal an entry every peer would reject.
func checkShape(e *Entry) error {
	switch {
	case len(e.Protocol) > maxProtocolLen:
		return malformed("protocol string longer than %d", maxProtocolLen)
	case len(e.Addrs) > MaxAddrs:
		return malformed("%d addrs > %d", len(e.Addrs), MaxAddrs)
	case len(e.Tags) > MaxTags:
		return malformed("%d tags > %d", len(e.Tags), MaxTags)
	case len(e.Streams) > MaxStreams:
		return malformed("%d streams > %d", len(e.Streams), MaxStreams)
	case len(e.Tickets) > MaxTickets:
		return malformed("%d tickets > %d", len(e.Tickets), MaxTickets)
	case len(e.Groups) > MaxGroups:
		return malformed("%d groups > %d", len(e.Groups), MaxGroups)
	case slices.ContainsFunc(e.Groups, func(g Membership) bool { return g.Role == 0 }):
		return malformed("a group membership with role 0")
	case e.Version.StartMS <= 0 || e.Version.UpdateMS < e.Version.StartMS:
		return malformed("invalid version %v", e.Version)
	}
	return nil
}

// SignedEntry is an Entry together with the sealed envelope bytes it was
// read from or sealed into. It is immutable once made and safe to share
// between goroutines.
type SignedEntry struct {
	Entry Entry
	raw   []byte
	// The content hash (see ContentHash), computed on first use:
	// hashState is hashUnknown, hashOK (then hash holds it) or hashNone.
	hashState atomic.Uint32
	hash      atomic.Uint64
}

// Bytes returns the sealed envelope, ready to send. Do not modify it.
func (s *SignedEntry) Bytes() []byte { return s.raw }

// PeerID is shorthand for s.Entry.PeerID.
func (s *SignedEntry) PeerID() peer.ID { return s.Entry.PeerID }

type entryRecord struct{ m *pb.Entry }

func (*entryRecord) Domain() string { return EntryDomain }
func (*entryRecord) Codec() []byte  { return EntryPayloadType }
func (r *entryRecord) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r.m)
}
func (r *entryRecord) UnmarshalRecord(b []byte) error {
	r.m = new(pb.Entry)
	return proto.Unmarshal(b, r.m)
}

// Seal normalizes e and signs it with sk, which must be the key of
// e.PeerID.
func Seal(e Entry, sk crypto.PrivKey) (*SignedEntry, error) {
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("catalog: seal: %w", err)
	}
	if id != e.PeerID {
		return nil, fmt.Errorf("catalog: seal: key of %s cannot sign the entry of %s", id, e.PeerID)
	}
	e = e.Clone()
	e.Normalize()
	e.SkippedAddrs = 0 // a receiver's count; the sealed bytes hold only Addrs
	if err := checkShape(&e); err != nil {
		return nil, fmt.Errorf("catalog: seal: %w", err)
	}
	env, err := record.Seal(&entryRecord{m: e.toPB()}, sk)
	if err != nil {
		return nil, fmt.Errorf("catalog: seal: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("catalog: seal: %w", err)
	}
	return &SignedEntry{Entry: e, raw: raw}, nil
}
