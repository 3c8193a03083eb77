package catalog

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog/pb"
)

// fullEntry returns an entry of p that uses every field, with its sets out
// of order and holding duplicates, so that sealing has to normalize it.
func fullEntry(tb testing.TB, p testPeer, v Version) Entry {
	tb.Helper()
	e := p.entry(testNetwork, v)
	e.Addrs = []ma.Multiaddr{
		mustAddr(tb, "/ip6/::1/udp/4001/quic-v1"),
		mustAddr(tb, "/ip4/127.0.0.1/tcp/4001"),
		mustAddr(tb, "/dns4/example.com/tcp/443/wss"),
		mustAddr(tb, "/ip4/127.0.0.1/tcp/4001"), // duplicate
		mustAddr(tb, "/ip4/10.0.0.1/udp/4001/quic-v1"),
	}
	e.Tags = []Tag{IDFromString("validator"), IDFromString("region-eu"), IDFromString("validator")}
	e.Streams = []StreamID{IDFromString("orders"), IDFromString("blocks"), IDFromString("orders")}
	e.Tickets = []Ticket{
		{Class: IDFromString("jwt"), Data: []byte("token-b")},
		{Class: IDFromString("jwt"), Data: []byte("token-a")},
		{Class: IDFromString("tdx"), Data: []byte("quote")},
		{Class: IDFromString("jwt"), Data: []byte("token-b")}, // duplicate
	}
	e.Groups = []Membership{
		{Group: IDFromString("group-b"), Role: 2},
		{Group: IDFromString("group-a"), Role: 1},
		{Group: IDFromString("group-b"), Role: 2}, // duplicate
	}
	return e
}

func isNormalized(e *Entry) bool {
	strictly := func(n int, cmp func(i int) int) bool {
		for i := 1; i < n; i++ {
			if cmp(i) >= 0 {
				return false
			}
		}
		return true
	}
	return strictly(len(e.Tags), func(i int) int { return e.Tags[i-1].Compare(e.Tags[i]) }) &&
		strictly(len(e.Streams), func(i int) int { return e.Streams[i-1].Compare(e.Streams[i]) }) &&
		strictly(len(e.Tickets), func(i int) int { return compareTickets(e.Tickets[i-1], e.Tickets[i]) }) &&
		strictly(len(e.Groups), func(i int) int { return e.Groups[i-1].Group.Compare(e.Groups[i].Group) }) &&
		strictly(len(e.Addrs), func(i int) int { return bytes.Compare(e.Addrs[i-1].Bytes(), e.Addrs[i].Bytes()) })
}

func TestSeal_OpenEntryRoundTrip(t *testing.T) {
	p := newTestPeer(t)
	in := fullEntry(t, p, NewVersion(t0))
	inCopy := in.Clone()

	s, err := Seal(in, p.key)
	if err != nil {
		t.Fatal(err)
	}
	if !sameContent(&in, &inCopy) || in.Version != inCopy.Version {
		t.Fatal("Seal changed the caller's entry")
	}
	if len(s.Entry.Addrs) != 4 || len(s.Entry.Tags) != 2 || len(s.Entry.Streams) != 2 || len(s.Entry.Tickets) != 3 {
		t.Fatalf("sealed entry not de-duplicated: %d addrs, %d tags, %d streams, %d tickets",
			len(s.Entry.Addrs), len(s.Entry.Tags), len(s.Entry.Streams), len(s.Entry.Tickets))
	}
	if !isNormalized(&s.Entry) {
		t.Fatalf("sealed entry not normalized: %+v", s.Entry)
	}

	got, err := OpenEntry(s.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &got.Entry
	if !sameContent(e, &s.Entry) || e.Version != s.Entry.Version {
		t.Fatalf("round trip changed the entry:\n got  %+v\n want %+v", *e, s.Entry)
	}
	if e.PeerID != p.id || got.PeerID() != p.id || e.Network != testNetwork || e.Protocol != ProtocolVersion || e.Version != NewVersion(t0) {
		t.Fatalf("header fields lost: %+v", *e)
	}
	if !bytes.Equal(got.Bytes(), s.Bytes()) {
		t.Fatal("Bytes() of an opened entry must be the bytes it was opened from")
	}

	// Query helpers on the decoded entry.
	if !e.HasTag(IDFromString("validator")) || !e.HasTags(IDFromString("validator"), IDFromString("region-eu")) ||
		e.HasTag(IDFromString("leader")) || e.HasTags(IDFromString("validator"), IDFromString("leader")) {
		t.Error("HasTag/HasTags wrong")
	}
	if !e.Produces(IDFromString("orders")) || !e.Produces(IDFromString("blocks")) || e.Produces(IDFromString("trades")) {
		t.Error("Produces wrong")
	}
	jwt := e.TicketsOf(IDFromString("jwt"))
	if len(jwt) != 2 || string(jwt[0]) != "token-a" || string(jwt[1]) != "token-b" {
		t.Errorf("TicketsOf(jwt) = %q", jwt)
	}
	if e.TicketsOf(IDFromString("none")) != nil {
		t.Error("TicketsOf(unknown class) must be empty")
	}
	ai := e.AddrInfo()
	if ai.ID != p.id || len(ai.Addrs) != 4 {
		t.Errorf("AddrInfo = %v", ai)
	}
	ai.Addrs[0] = nil
	if e.Addrs[0] == nil {
		t.Error("AddrInfo must return a copy of the address slice")
	}
}

func TestSeal_EmptySetsRoundTrip(t *testing.T) {
	p := newTestPeer(t)
	s := p.seal(t, testNetwork, NewVersion(t0), nil)
	got, err := OpenEntry(s.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entry.Addrs)+len(got.Entry.Tags)+len(got.Entry.Streams)+len(got.Entry.Tickets) != 0 {
		t.Fatalf("empty entry came back with content: %+v", got.Entry)
	}
}

func TestSeal_IsDeterministic(t *testing.T) {
	// The same entry in two different orders seals to the same payload, so
	// equal entries are equal on the wire (ed25519 signatures are
	// deterministic too).
	p := newTestPeer(t)
	a := fullEntry(t, p, NewVersion(t0))
	b := a.Clone()
	slices.Reverse(b.Addrs)
	slices.Reverse(b.Tags)
	slices.Reverse(b.Streams)
	slices.Reverse(b.Tickets)
	sa, err := Seal(a, p.key)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Seal(b, p.key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
		t.Fatal("sealing the same set content in another order gave different bytes")
	}
}

func TestSeal_WrongKey(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	if _, err := Seal(p.entry(testNetwork, NewVersion(t0)), q.key); err == nil {
		t.Fatal("Seal with a key that is not the entry's peer must fail")
	}
}

func TestOpenEntry_Rejections(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	valid := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) { *e = fullEntry(t, p, e.Version) })
	validPayload := entryPayload(t, &valid.Entry)

	tamperedPayload := bytes.Clone(valid.Bytes())
	i := bytes.Index(tamperedPayload, []byte(ProtocolVersion))
	if i < 0 {
		t.Fatal("protocol string not found in the envelope")
	}
	tamperedPayload[i+len(ProtocolVersion)-1] ^= 0x01 // still a valid string, so it still decodes

	tamperedSig := bytes.Clone(valid.Bytes())
	tamperedSig[len(tamperedSig)-1] ^= 0x01 // the signature is the last field

	secpKey, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpID, err := peer.IDFromPrivateKey(secpKey)
	if err != nil {
		t.Fatal(err)
	}
	secpEntry := Entry{PeerID: secpID, Network: testNetwork, Protocol: ProtocolVersion, Version: NewVersion(t0)}

	ecdsaKey, _, err := crypto.GenerateECDSAKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdsaID, err := peer.IDFromPrivateKey(ecdsaKey)
	if err != nil {
		t.Fatal(err)
	}
	ecdsaEntry := Entry{PeerID: ecdsaID, Network: testNetwork, Protocol: ProtocolVersion, Version: NewVersion(t0)}

	departure, err := SealDeparture(Departure{PeerID: p.id, Network: testNetwork, LastVersion: NewVersion(t0), Timestamp: t0}, p.key)
	if err != nil {
		t.Fatal(err)
	}

	// withPB seals, under the right domain and type and with p's key, the
	// entry payload produced by mutating a valid entry's protobuf.
	withPB := func(mut func(m *pb.Entry)) []byte {
		m := valid.Entry.toPB()
		mut(m)
		rec := &entryRecord{m: m}
		b, err := rec.MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		return sealRaw(t, EntryDomain, EntryPayloadType, b, p.key)
	}

	tests := []struct {
		name    string
		data    []byte
		maxSize int
		want    error
	}{
		{"tampered payload byte", tamperedPayload, 0, ErrBadSignature},
		{"tampered signature byte", tamperedSig, 0, ErrBadSignature},
		{"signed by another ed25519 key", sealRaw(t, EntryDomain, EntryPayloadType, validPayload, q.key), 0, ErrSignerMismatch},
		{"wrong domain", sealRaw(t, "libp2p-routing-state", EntryPayloadType, validPayload, p.key), 0, ErrBadSignature},
		{"departure domain", sealRaw(t, DepartureDomain, EntryPayloadType, validPayload, p.key), 0, ErrBadSignature},
		{"wrong payload type", sealRaw(t, EntryDomain, []byte("/mosaik/catalog/entry/2"), validPayload, p.key), 0, ErrWrongPayloadType},
		{"a departure is not an entry", departure, 0, ErrWrongPayloadType},
		{"secp256k1 signer", sealRaw(t, EntryDomain, EntryPayloadType, entryPayload(t, &secpEntry), secpKey), 0, ErrBadSignature},
		{"ecdsa signer", sealRaw(t, EntryDomain, EntryPayloadType, entryPayload(t, &ecdsaEntry), ecdsaKey), 0, ErrBadSignature},
		{"huge garbage", bytes.Repeat([]byte{0xa5}, DefaultMaxEntrySize+1), 0, ErrOversize},
		{"huge garbage, explicit cap", bytes.Repeat([]byte{0x0a}, 4<<20), 1 << 20, ErrOversize},
		{"valid entry above a small cap", valid.Bytes(), len(valid.Bytes()) - 1, ErrOversize},
		{"garbage payload, valid signature", sealRaw(t, EntryDomain, EntryPayloadType, []byte{0xff, 0xff, 0xff}, p.key), 0, ErrMalformed},
		{"empty payload, valid signature", sealRaw(t, EntryDomain, EntryPayloadType, nil, p.key), 0, ErrMalformed},
		{"bad peer id", withPB(func(m *pb.Entry) { m.PeerId = []byte("not a peer id") }), 0, ErrMalformed},
		{"short network", withPB(func(m *pb.Entry) { m.Network = m.Network[:31] }), 0, ErrMalformed},
		{"short tag", withPB(func(m *pb.Entry) { m.Tags = append(m.Tags, make([]byte, 31)) }), 0, ErrMalformed},
		{"long stream", withPB(func(m *pb.Entry) { m.Streams = append(m.Streams, make([]byte, 33)) }), 0, ErrMalformed},
		{"short ticket class", withPB(func(m *pb.Entry) { m.Tickets = append(m.Tickets, &pb.Ticket{Class: []byte{1}}) }), 0, ErrMalformed},
		{"protocol too long", withPB(func(m *pb.Entry) { m.Protocol = strings.Repeat("x", maxProtocolLen+1) }), 0, ErrMalformed},
		{"no version", withPB(func(m *pb.Entry) { m.Version = nil }), 0, ErrMalformed},
		{"zero start", withPB(func(m *pb.Entry) { m.Version = &pb.Version{StartMs: 0, UpdateMs: 5} }), 0, ErrMalformed},
		{"update before start", withPB(func(m *pb.Entry) { m.Version = &pb.Version{StartMs: 10, UpdateMs: 9} }), 0, ErrMalformed},
		{"too many tags", withPB(func(m *pb.Entry) {
			m.Tags = nil
			for i := range MaxTags + 1 {
				id := HashID([]byte{byte(i), byte(i >> 8)})
				m.Tags = append(m.Tags, id[:])
			}
		}), 64 << 10, ErrMalformed},
		{"short group id", withPB(func(m *pb.Entry) { m.Groups = append(m.Groups, &pb.GroupMembership{Id: []byte{1}, Role: 1}) }), 0, ErrMalformed},
		{"group role 0", withPB(func(m *pb.Entry) { m.Groups[0].Role = 0 }), 0, ErrMalformed},
		{"group role 256", withPB(func(m *pb.Entry) { m.Groups[0].Role = 256 }), 0, ErrMalformed},
		{"too many groups", withPB(func(m *pb.Entry) {
			m.Groups = nil
			for i := range MaxGroups + 1 {
				id := HashID([]byte{byte(i), byte(i >> 8)})
				m.Groups = append(m.Groups, &pb.GroupMembership{Id: id[:], Role: 1})
			}
		}), 64 << 10, ErrMalformed},
		{"too many addrs", withPB(func(m *pb.Entry) {
			for range MaxAddrs + 1 {
				m.Addrs = append(m.Addrs, m.Addrs[0])
			}
		}), 0, ErrMalformed},
		{"too many tickets", withPB(func(m *pb.Entry) {
			m.Tickets = nil
			for i := range MaxTickets + 1 {
				m.Tickets = append(m.Tickets, &pb.Ticket{Class: make([]byte, 32), Data: []byte{byte(i)}})
			}
		}), 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenEntry(tt.data, tt.maxSize)
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenEntry: got %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatal("OpenEntry returned an entry together with an error")
			}
			if !IsRejected(err) {
				t.Fatalf("IsRejected(%v) = false: invalid input must be rejected", err)
			}
		})
	}
}

func TestOpenEntry_SkipsUnparseableAddrs(t *testing.T) {
	// An address this version cannot parse is left out and counted; the
	// entry, its other addresses and its signed bytes are kept (as
	// go-libp2p does with peer records). A transport we do not know must
	// not make its peer unreachable on the ones we do.
	p := newTestPeer(t)
	valid := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) { *e = fullEntry(t, p, e.Version) })
	withAddr := func(extra []byte) []byte {
		m := valid.Entry.toPB()
		m.Addrs = append(m.Addrs, extra)
		rec := &entryRecord{m: m}
		b, err := rec.MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		return sealRaw(t, EntryDomain, EntryPayloadType, b, p.key)
	}
	// A well-formed multiaddr of a protocol code go-multiaddr v0.16 does
	// not know (0x3f0f, a varint), with a 4-byte value.
	unknown := append(binary.AppendUvarint(nil, 0x3f0f), 1, 2, 3, 4)
	for _, tc := range []struct {
		name string
		addr []byte
	}{
		{"unknown protocol code", unknown},
		{"garbage", []byte{0xff, 0xff, 0xff}},
		{"empty", []byte{}},
		{"trailing bytes", append(bytes.Clone(valid.Entry.Addrs[0].Bytes()), 0x00)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := withAddr(tc.addr)
			got, err := OpenEntry(data, 0)
			if err != nil {
				t.Fatalf("OpenEntry: %v", err)
			}
			if got.Entry.SkippedAddrs != 1 {
				t.Fatalf("SkippedAddrs = %d, want 1", got.Entry.SkippedAddrs)
			}
			if !slices.EqualFunc(got.Entry.Addrs, valid.Entry.Addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) }) {
				t.Fatalf("addrs = %v, want the parseable ones %v", got.Entry.Addrs, valid.Entry.Addrs)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatal("the signed bytes were not kept as received")
			}
		})
	}
	// The count belongs to received entries: sealing ignores it.
	e := valid.Entry.Clone()
	e.SkippedAddrs = 3
	s, err := Seal(e, p.key)
	if err != nil {
		t.Fatal(err)
	}
	if s.Entry.SkippedAddrs != 0 {
		t.Fatalf("sealed entry reports %d skipped addrs", s.Entry.SkippedAddrs)
	}
}

func TestOpenEntry_AcceptsLimits(t *testing.T) {
	// The structural caps are inclusive: exactly MaxTags tags is fine.
	p := newTestPeer(t)
	s := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
		for i := range MaxTags {
			e.Tags = append(e.Tags, HashID([]byte{byte(i), byte(i >> 8)}))
		}
		e.Protocol = strings.Repeat("p", maxProtocolLen)
	})
	// The structural caps allow more than the default size cap.
	got, err := OpenEntry(s.Bytes(), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entry.Tags) != MaxTags {
		t.Fatalf("got %d tags", len(got.Entry.Tags))
	}
	// A cap equal to the size accepts.
	if _, err := OpenEntry(s.Bytes(), len(s.Bytes())); err != nil {
		t.Fatalf("cap equal to the size: %v", err)
	}
}

// MaxTickets bounds the signature checks one entry can demand of a
// validator: exactly MaxTickets opens, one more is refused on both sides.
func TestEntry_TicketCap(t *testing.T) {
	p := newTestPeer(t)
	tickets := func(n int) []Ticket {
		var ts []Ticket
		for i := range n {
			ts = append(ts, Ticket{Class: IDFromString("class"), Data: []byte{byte(i)}})
		}
		return ts
	}
	s := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) { e.Tickets = tickets(MaxTickets) })
	got, err := OpenEntry(s.Bytes(), 0)
	if err != nil {
		t.Fatalf("OpenEntry with %d tickets: %v", MaxTickets, err)
	}
	if len(got.Entry.Tickets) != MaxTickets {
		t.Fatalf("got %d tickets, want %d", len(got.Entry.Tickets), MaxTickets)
	}
	e := p.entry(testNetwork, NewVersion(t0))
	e.Tickets = tickets(MaxTickets + 1)
	if _, err := Seal(e, p.key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Seal with %d tickets: %v, want ErrMalformed", len(e.Tickets), err)
	}
}

func TestOpenEntry_Garbage(t *testing.T) {
	p := newTestPeer(t)
	valid := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) { *e = fullEntry(t, p, e.Version) })
	raw := valid.Bytes()

	inputs := [][]byte{nil, {}, {0}, {0x0a}, {0x0a, 0xff}, bytes.Repeat([]byte{0xff}, 100), []byte("hello, world")}
	for n := 1; n < len(raw); n += 7 {
		inputs = append(inputs, raw[:n]) // every kind of truncation
	}
	rng := mrand.New(mrand.NewChaCha8([32]byte{1}))
	for range 500 {
		b := make([]byte, rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		inputs = append(inputs, b)
	}
	for i, in := range inputs {
		got, err := OpenEntry(in, 0)
		if got != nil || err == nil {
			t.Fatalf("input %d (%d bytes): OpenEntry accepted garbage", i, len(in))
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("input %d (%d bytes): got %v, want ErrMalformed or ErrBadSignature", i, len(in), err)
		}
	}
}

func TestOpenEntry_RetainsNoCallerBuffer(t *testing.T) {
	// Regression (fixed): OpenEntry (entry.go, `return &SignedEntry{Entry: e, raw: data}`)
	// keeps the caller's buffer as the entry's raw bytes without copying.
	// SignedEntry is documented as immutable and is stored by
	// Store.MergeBytes and re-sent in syncs, so a caller that reuses its read
	// buffer (bufio, a frame reader, a fuzz engine) silently corrupts the
	// catalog: the stored bytes no longer carry a valid signature. Either
	// copy (raw: bytes.Clone(data)) or document that OpenEntry and
	// MergeBytes take ownership of data.
	p := newTestPeer(t)
	s := p.seal(t, testNetwork, NewVersion(t0), nil)
	buf := bytes.Clone(s.Bytes())
	got, err := OpenEntry(buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0 // the caller reuses its buffer
	}
	if !bytes.Equal(got.Bytes(), s.Bytes()) {
		t.Fatal("the opened entry's Bytes() changed when the caller reused its buffer")
	}
}

func TestEntry_CloneIsDeep(t *testing.T) {
	p := newTestPeer(t)
	e := fullEntry(t, p, NewVersion(t0))
	e.Normalize()
	c := e.Clone()
	c.Tags[0] = ID{}
	c.Streams[0] = ID{}
	c.Tickets[0].Data[0] = 'X'
	c.Addrs[0] = nil
	if e.Tags[0].IsZero() || e.Streams[0].IsZero() || e.Tickets[0].Data[0] == 'X' || e.Addrs[0] == nil {
		t.Fatal("Clone shares memory with the original")
	}
	var empty Entry
	if c := empty.Clone(); c.Tickets != nil || c.Tags != nil {
		t.Fatal("Clone of nil sets must stay nil")
	}
}

func TestIsRejected_Reason(t *testing.T) {
	tests := []struct {
		err      error
		rejected bool
		reason   string
	}{
		{nil, false, "ok"},
		{ErrOversize, true, "oversize"},
		{ErrMalformed, true, "malformed"},
		{ErrBadSignature, true, "bad_signature"},
		{ErrSignerMismatch, true, "signer_mismatch"},
		{ErrOtherNetwork, true, "other_network"},
		{ErrClockDrift, true, "clock_drift"},
		{ErrWrongPayloadType, true, "payload_type"},
		{ErrBadBump, true, "bad_bump"},
		{ErrStale, false, "stale"},
		{ErrNotNewer, false, "not_newer"},
		{ErrLocal, false, "local"},
		{ErrUnknown, false, "unknown"},
		{ErrClosed, false, "other"},
		{errors.New("boom"), false, "other"},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			wrapped := tt.err
			if tt.err != nil {
				wrapped = fmt.Errorf("catalog: merge: %w", tt.err)
			}
			for _, err := range []error{tt.err, wrapped} {
				if got := IsRejected(err); got != tt.rejected {
					t.Errorf("IsRejected(%v) = %v, want %v", err, got, tt.rejected)
				}
				if got := Reason(err); got != tt.reason {
					t.Errorf("Reason(%v) = %q, want %q", err, got, tt.reason)
				}
			}
		})
	}
}

func TestEntry_Groups(t *testing.T) {
	p := newTestPeer(t)
	ga, gb := IDFromString("group-a"), IDFromString("group-b")
	s := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
		e.Groups = []Membership{{Group: gb, Role: 2}, {Group: ga, Role: 1}, {Group: gb, Role: 1}}
	})
	got, err := OpenEntry(s.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &got.Entry
	if len(e.Groups) != 2 {
		t.Fatalf("groups %v: want one membership per group", e.Groups)
	}
	if m, ok := e.InGroup(gb); !ok || m.Role != 1 {
		t.Fatalf("InGroup(b) = %v, %v; want role 1 (the lower role of the duplicates)", m, ok)
	}
	if _, ok := e.InGroup(IDFromString("group-c")); ok {
		t.Fatal("InGroup(c) found a group the entry does not list")
	}
	// A node cannot seal what receivers refuse.
	k := p.entry(testNetwork, NewVersion(t0))
	k.Groups = []Membership{{Group: ga}}
	if _, err := Seal(k, p.key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Seal with role 0: %v, want ErrMalformed", err)
	}
	k.Groups = nil
	for i := range MaxGroups + 1 {
		k.Groups = append(k.Groups, Membership{Group: HashID([]byte{byte(i), byte(i >> 8)}), Role: 1})
	}
	if _, err := Seal(k, p.key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Seal with %d groups: %v, want ErrMalformed", len(k.Groups), err)
	}
}
