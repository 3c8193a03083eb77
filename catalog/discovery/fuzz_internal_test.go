package discovery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// FuzzDecodeAnnouncement feeds arbitrary gossip payloads to the
// announcement decoder: it must never panic, and whatever it accepts must
// be a verified entry or departure.
func FuzzDecodeAnnouncement(f *testing.F) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	local, err := catalog.NewLocal(sk, catalog.IDFromString("fuzz"), now, func(e *catalog.Entry) {
		e.Tags = []catalog.Tag{catalog.IDFromString("t")}
	})
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
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x08, 0x01, 0x0a, 0x00})             // entry with a wrong-typed field 1 first
	f.Add([]byte{0x0a, 0x01, 0x61, 0x12, 0x01, 0x62}) // both members: the last wins
	f.Add([]byte{0x0b, 0x0c, 0x0a, 0x01, 0x61})       // an empty group, then an entry
	f.Fuzz(func(t *testing.T, data []byte) {
		// The hand-written decoder agrees with proto.Unmarshal.
		kind, body, perr := parseAnnouncement(data)
		var ann pb.Announcement
		uerr := proto.Unmarshal(data, &ann)
		if (perr == nil) != (uerr == nil) {
			t.Fatalf("parseAnnouncement error %v, proto.Unmarshal error %v", perr, uerr)
		}
		if perr == nil {
			switch k := ann.Kind.(type) {
			case *pb.Announcement_Entry:
				if kind != announceEntry || !bytes.Equal(body, k.Entry) {
					t.Fatalf("parseAnnouncement = %d %x, proto.Unmarshal: entry %x", kind, body, k.Entry)
				}
			case *pb.Announcement_Departure:
				if kind != announceDeparture || !bytes.Equal(body, k.Departure) {
					t.Fatalf("parseAnnouncement = %d %x, proto.Unmarshal: departure %x", kind, body, k.Departure)
				}
			default:
				if kind != 0 {
					t.Fatalf("parseAnnouncement = %d, proto.Unmarshal: no member", kind)
				}
			}
		}
		open := func(b []byte) (*catalog.SignedEntry, error) { return catalog.OpenEntry(b, catalog.DefaultMaxEntrySize) }
		e, d, err := decodeAnnouncement(data, catalog.DefaultMaxEntrySize+16, open)
		if err != nil {
			if e != nil || d != nil {
				t.Fatal("a result came with an error")
			}
			return
		}
		switch {
		case e != nil:
			if _, err := catalog.OpenEntry(e.Bytes(), 0); err != nil {
				t.Fatalf("accepted entry does not verify: %v", err)
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
// decoder: it must never panic, and what it accepts must be whole items
// in strictly ascending key order within the page cap.
func FuzzDecodeDigest(f *testing.F) {
	items := appendDigestItem(appendDigestItem(nil, 1, catalog.Version{StartMS: 1, UpdateMS: 2}), 7, catalog.Version{StartMS: 3, UpdateMS: 4})
	ok, _ := proto.Marshal(&pb.SyncDigest{Items: items, Last: true})
	unsorted, _ := proto.Marshal(&pb.SyncDigest{Items: append(slices.Clone(items[24:]), items[:24]...)})
	empty, _ := proto.Marshal(&pb.SyncDigest{})
	f.Add(ok, true, uint64(0))
	f.Add(ok, false, uint64(1))
	f.Add(unsorted, true, uint64(0))
	f.Add(empty, true, uint64(0))
	f.Add([]byte{0x0a, 0x19}, true, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, first bool, after uint64) {
		got, _, err := decodeDigest(data, first, after)
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
// decoder: it must never panic, and what it accepts holds at most
// maxPageEntries entries, none only on the last page.
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
	f.Add(want)
	f.Add(one)
	f.Add(end)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		pg, err := decodePage(data)
		if err != nil {
			if pg != nil {
				t.Fatal("a page came with an error")
			}
			return
		}
		if len(pg.Entries) > maxPageEntries || (len(pg.Entries) == 0 && !pg.Last) {
			t.Fatalf("accepted a page of %d entries, last %v", len(pg.Entries), pg.Last)
		}
		if len(pg.Want) > maxWant*8 || len(pg.Want)%8 != 0 || (len(pg.Want) > 0 && !pg.Last) {
			t.Fatalf("accepted a want of %d bytes, last %v", len(pg.Want), pg.Last)
		}
		if keys := wantKeys(pg.Want); len(keys) != len(pg.Want)/8 {
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
