package discovery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// FuzzDecodeAnnouncement feeds arbitrary gossip payloads to the
// announcement decoder: it must never panic, it must read what
// proto.Unmarshal reads (a batch's last entry is the one proto keeps), and
// whatever it accepts must be verified entries, at most MaxBatchEntries, or
// a departure.
func FuzzDecodeAnnouncement(f *testing.F) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	newLocal := func(k crypto.PrivKey) *catalog.Local {
		local, err := catalog.NewLocal(k, catalog.IDFromString("fuzz"), now, func(e *catalog.Entry) {
			e.Tags = []catalog.Tag{catalog.IDFromString("t")}
		})
		if err != nil {
			f.Fatal(err)
		}
		return local
	}
	local := newLocal(sk)
	sk2, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	entry, _ := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: local.Current().Bytes()}})
	dep, _ := local.Departure(now)
	depAnn, _ := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Departure{Departure: dep}})
	// A join re-announcement: the same entry with a nonce.
	rejoin, _ := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: local.Current().Bytes()}, Nonce: []byte("12345678")})
	f.Add(entry)
	f.Add(rejoin)
	f.Add(depAnn)
	f.Add(appendBatch(nil, []*catalog.SignedEntry{local.Current(), newLocal(sk2).Current()}))
	f.Add(append(appendBatch(nil, []*catalog.SignedEntry{local.Current()}), []byte{0x0a, 0x01, 0x61}...)) // a valid entry, then garbage
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x08, 0x01, 0x0a, 0x00})             // entry with a wrong-typed field 1 first
	f.Add([]byte{0x0a, 0x01, 0x61, 0x12, 0x01, 0x62}) // both members: the last wins
	f.Add([]byte{0x12, 0x01, 0x62, 0x0a, 0x01, 0x61}) // both members: the last wins
	f.Add([]byte{0x0b, 0x0c, 0x0a, 0x01, 0x61})       // an empty group, then an entry
	f.Fuzz(func(t *testing.T, data []byte) {
		// The hand-written decoder agrees with proto.Unmarshal.
		kind, bodies, perr := parseAnnouncement(data)
		var ann pb.Announcement
		uerr := proto.Unmarshal(data, &ann)
		if perr != nil && uerr == nil {
			// Only the batch cap refuses what protobuf reads.
			n := 0
			for b := data; len(b) > 0; {
				num, typ, m := protowire.ConsumeTag(b)
				b = b[m:]
				if num == announceEntry && typ == protowire.BytesType {
					n++
				}
				b = b[protowire.ConsumeFieldValue(num, typ, b):]
			}
			if n <= MaxBatchEntries {
				t.Fatalf("parseAnnouncement error %v, proto.Unmarshal none", perr)
			}
			return
		}
		if (perr == nil) != (uerr == nil) {
			t.Fatalf("parseAnnouncement error %v, proto.Unmarshal error %v", perr, uerr)
		}
		if perr == nil {
			last := func() []byte {
				if len(bodies) == 0 {
					t.Fatalf("parseAnnouncement = kind %d without a body", kind)
				}
				return bodies[len(bodies)-1]
			}
			switch k := ann.Kind.(type) {
			case *pb.Announcement_Entry:
				if kind != announceEntry || !bytes.Equal(last(), k.Entry) || len(bodies) > MaxBatchEntries {
					t.Fatalf("parseAnnouncement = %d, %d bodies, proto.Unmarshal: entry %x", kind, len(bodies), k.Entry)
				}
			case *pb.Announcement_Departure:
				if kind != announceDeparture || len(bodies) != 1 || !bytes.Equal(last(), k.Departure) {
					t.Fatalf("parseAnnouncement = %d %x, proto.Unmarshal: departure %x", kind, bodies, k.Departure)
				}
			default:
				if kind != 0 || bodies != nil {
					t.Fatalf("parseAnnouncement = %d, proto.Unmarshal: no member", kind)
				}
			}
		}
		open := func(b []byte) (*catalog.SignedEntry, error) { return catalog.OpenEntry(b, catalog.DefaultMaxEntrySize) }
		es, d, _, err := decodeAnnouncement(data, catalog.DefaultMaxEntrySize+16, time.Now(), open, nil)
		if err != nil {
			if es != nil || d != nil {
				t.Fatal("a result came with an error")
			}
			return
		}
		switch {
		case len(es) > 0:
			if len(es) > MaxBatchEntries || d != nil {
				t.Fatalf("%d entries and departure %v", len(es), d)
			}
			for _, e := range es {
				if _, err := catalog.OpenEntry(e.Bytes(), 0); err != nil {
					t.Fatalf("accepted entry does not verify: %v", err)
				}
			}
		case d != nil:
			if d.PeerID == "" {
				t.Fatal("accepted departure without a peer")
			}
		default:
			t.Fatal("no error and no result")
		}
	})
}

// FuzzDecodeDigest feeds arbitrary SyncDigest frame bodies to the digest
// decoder of either dialect (bumps: 2.1.0): it must never panic, and what
// it accepts must be whole items in strictly ascending key order within
// the page cap.
func FuzzDecodeDigest(f *testing.F) {
	for _, d := range []dialect{dialect20, dialect21} {
		items := d.appendItem(d.appendItem(nil, digestItem{1, catalog.Version{StartMS: 1, UpdateMS: 2}, 9}), digestItem{7, catalog.Version{StartMS: 3, UpdateMS: 4}, 0})
		l := d.itemLen()
		ok, _ := proto.Marshal(&pb.SyncDigest{Items: items, Last: true})
		unsorted, _ := proto.Marshal(&pb.SyncDigest{Items: append(slices.Clone(items[l:]), items[:l]...)})
		f.Add(ok, true, uint64(0), d.bumps)
		f.Add(ok, false, uint64(1), d.bumps)
		f.Add(unsorted, true, uint64(0), d.bumps)
	}
	empty, _ := proto.Marshal(&pb.SyncDigest{})
	f.Add(empty, true, uint64(0), false)
	f.Add([]byte{0x0a, 0x19}, true, uint64(0), false)
	f.Add([]byte{0x0a, 0x20}, true, uint64(0), true)
	f.Fuzz(func(t *testing.T, data []byte, first bool, after uint64, bumps bool) {
		got, _, err := dialect{bumps: bumps}.decodeDigest(data, first, after)
		if err != nil {
			if got != nil {
				t.Fatal("items came with an error")
			}
			var se *syncError
			if !errors.As(err, &se) || se.cause == "" {
				t.Fatalf("error without a cause: %v", err)
			}
			return
		}
		if len(got) > maxDigestItems {
			t.Fatalf("%d items accepted", len(got))
		}
		for i, it := range got {
			if (i > 0 || !first) && it.key <= after {
				t.Fatalf("key %d after %d accepted", it.key, after)
			}
			after = it.key
		}
	})
}

// FuzzDecodePage feeds arbitrary SyncPage frame bodies to the page
// decoder of either dialect (bumps: 2.1.0): it must never panic, and what
// it accepts holds at most maxPageEntries entries and maxPageBumps whole
// bumps (none in 2.0.0), neither only on the last page, and a want of
// whole keys.
func FuzzDecodePage(f *testing.F) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	local, err := catalog.NewLocal(sk, catalog.IDFromString("fuzz"), time.Now(), nil)
	if err != nil {
		f.Fatal(err)
	}
	one, _ := proto.Marshal(&pb.SyncPage{Entries: [][]byte{local.Current().Bytes()}})
	end, _ := proto.Marshal(&pb.SyncPage{Last: true})
	want, _ := proto.Marshal(&pb.SyncPage{Last: true, Want: []byte{0, 0, 0, 0, 0, 0, 0, 1}})
	want21, _ := proto.Marshal(&pb.SyncPage{Last: true, Want: make([]byte, 16)})
	sig, _ := local.Current().Signature()
	bumps := binary.BigEndian.AppendUint64(nil, 5)
	bumps = binary.BigEndian.AppendUint64(bumps, 1)
	bumps = append(binary.BigEndian.AppendUint64(bumps, 2), sig...)
	withBump, _ := proto.Marshal(&pb.SyncPage{Bumps: bumps})
	partBump, _ := proto.Marshal(&pb.SyncPage{Bumps: bumps[:50], Last: true})
	for _, b := range []bool{false, true} {
		f.Add(want, b)
		f.Add(want21, b)
		f.Add(one, b)
		f.Add(end, b)
		f.Add(withBump, b)
		f.Add(partBump, b)
		f.Add([]byte{}, b)
		f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, b)
	}
	f.Fuzz(func(t *testing.T, data []byte, withBumps bool) {
		d := dialect{bumps: withBumps}
		pg, err := d.decodePage(data)
		if err != nil {
			if pg != nil {
				t.Fatal("a page came with an error")
			}
			return
		}
		nb := len(pg.Bumps) / bumpLen
		if len(pg.Entries) > maxPageEntries || (len(pg.Entries) == 0 && nb == 0 && !pg.Last) {
			t.Fatalf("accepted a page of %d entries and %d bumps, last %v", len(pg.Entries), nb, pg.Last)
		}
		if len(pg.Bumps)%bumpLen != 0 || nb > maxPageBumps || (nb > 0 && !withBumps) {
			t.Fatalf("accepted %d bytes of bumps in %v", len(pg.Bumps), d)
		}
		if got := decodeBumps(pg.Bumps); len(got) != nb {
			t.Fatal("bumps lost")
		} else {
			for _, b := range got {
				if len(b.sig) != catalog.BumpSignatureLen {
					t.Fatalf("a bump with a %d-byte signature", len(b.sig))
				}
			}
		}
		wl := d.wantLen()
		if len(pg.Want) > maxWant*wl || len(pg.Want)%wl != 0 || (len(pg.Want) > 0 && !pg.Last) {
			t.Fatalf("accepted a want of %d bytes, last %v", len(pg.Want), pg.Last)
		}
		if keys := d.wantKeys(pg.Want); len(keys) != len(pg.Want)/wl {
			t.Fatal("want keys lost")
		}
	})
}

// FuzzReadHello feeds arbitrary bytes, as a stream, to the reader of the
// SyncHello frame: it must never panic nor read past its cap.
func FuzzReadHello(f *testing.F) {
	nw := catalog.IDFromString("fuzz")
	hello, _ := proto.Marshal(&pb.SyncHello{Network: nw[:], Entry: []byte("entry"), Salt: []byte("saltsalt")})
	f.Add(framer.AppendFrame(nil, hello))
	f.Add([]byte{0x80})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(framer.AppendFrame(nil, []byte{0xff}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h pb.SyncHello
		err := readMessage(bufio.NewReader(bytes.NewReader(data)), helloCap(1024), &h)
		if err == nil && proto.Size(&h) > helloCap(1024) {
			t.Fatalf("accepted a hello of %d bytes", proto.Size(&h))
		}
	})
}
