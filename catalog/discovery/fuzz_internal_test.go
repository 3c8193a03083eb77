package discovery

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
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
	f.Fuzz(func(t *testing.T, data []byte) {
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
