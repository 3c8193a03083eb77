package discovery

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// FuzzDecodeBumpFrame feeds arbitrary bytes to the bump frame decoder: it
// must never panic, must refuse frames over MaxBumpFrame, and whatever it
// accepts must encode back to the same bytes, record by record.
func FuzzDecodeBumpFrame(f *testing.F) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(sk)
	e := catalog.Entry{PeerID: id, Network: catalog.IDFromString("fuzz"), Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(time.Now())}
	se, err := catalog.Seal(e, sk)
	if err != nil {
		f.Fatal(err)
	}
	one, ok := AppendBumpRecord(nil, se)
	if !ok {
		f.Fatal("a sealed entry has no bump record")
	}
	f.Add(one)
	f.Add(append(bytes.Clone(one), one...))
	f.Add(one[:len(one)-1])
	f.Add([]byte{0})
	f.Add([]byte{65})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		bumps, err := decodeBumpFrame(frame)
		if err != nil {
			return
		}
		if len(frame) > MaxBumpFrame {
			t.Fatalf("accepted a frame of %d bytes", len(frame))
		}
		var again []byte
		for _, b := range bumps {
			if b.v.StartMS <= 0 || b.v.UpdateMS < b.v.StartMS || len(b.sig) != catalog.BumpSignatureLen {
				t.Fatalf("accepted bump %+v", b)
			}
			again = append(again, byte(len(b.id)))
			again = append(again, b.id...)
			again = binary.BigEndian.AppendUint64(again, b.hash)
			again = binary.BigEndian.AppendUint64(again, uint64(b.v.StartMS))
			again = binary.BigEndian.AppendUint64(again, uint64(b.v.UpdateMS))
			again = append(again, b.sig...)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("decoded frame re-encodes differently")
		}
	})
}

// TestDecodeBumpFrame_Record: a record decodes to its entry's peer,
// content hash, version and signature.
func TestDecodeBumpFrame_Record(t *testing.T) {
	sk, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(sk)
	e := catalog.Entry{PeerID: id, Network: catalog.IDFromString("n"), Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(time.Now())}
	se, err := catalog.Seal(e, sk)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := AppendBumpRecord(nil, se)
	if !ok {
		t.Fatal("no record")
	}
	bumps, err := decodeBumpFrame(append(bytes.Clone(rec), rec...))
	if err != nil || len(bumps) != 2 {
		t.Fatalf("decode: %d bumps, %v", len(bumps), err)
	}
	hash, _ := se.ContentHash()
	sig, _ := se.Signature()
	if b := bumps[1]; b.id != id || b.hash != hash || b.v != se.Entry.Version || !bytes.Equal(b.sig, sig) {
		t.Fatalf("decoded %+v", b)
	}
	if _, err := decodeBumpFrame(make([]byte, MaxBumpFrame+1)); err == nil {
		t.Fatal("an oversize frame decoded")
	}
}
