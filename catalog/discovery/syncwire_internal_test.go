package discovery

import (
	"bytes"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// TestDigestKey_Vector: the key of the vector entry's peer under the
// vector salt is the one in testdata/vectors/catalog/sync_digest.json.
func TestDigestKey_Vector(t *testing.T) {
	id, err := peer.Decode("12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB")
	if err != nil {
		t.Fatal(err)
	}
	if got := digestKey([]byte{0, 1, 2, 3, 4, 5, 6, 7}, id); got != 0xfe3c675969e367a7 {
		t.Errorf("digestKey = %016x, want fe3c675969e367a7", got)
	}
}

// TestPageWriter_Bounds: pages never exceed maxPageEntries nor pageBytes
// of entries (but for a single larger entry), only the last is empty,
// and entries too large for any page are left out.
func TestPageWriter_Bounds(t *testing.T) {
	var buf bytes.Buffer
	pw := &pageWriter{w: &buf}
	sizes := []int{10, pageBytes - 5, 10, pageBytes + 100, maxPageEntry + 1}
	for range 600 {
		sizes = append(sizes, 100)
	}
	for _, n := range sizes {
		if err := pw.add(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.flush(true); err != nil {
		t.Fatal(err)
	}
	fr := framer.NewReader(&buf, maxPageFrame)
	total, pages := 0, 0
	for {
		body, err := fr.Next()
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pg, err := dialect20.decodePage(body)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
		size := 0
		for _, e := range pg.Entries {
			size += len(e)
		}
		if len(pg.Entries) > 1 && size > pageBytes {
			t.Errorf("page %d holds %d entry bytes", pages, size)
		}
		total += len(pg.Entries)
		if pg.Last {
			break
		}
	}
	if want := len(sizes) - 1; total != want || pw.entries != want {
		t.Errorf("%d entries read, %d counted, want %d", total, pw.entries, want)
	}
	if pages < 6 {
		t.Errorf("only %d pages", pages)
	}
}

// TestPageWriter_BumpBounds: in 2.1.0, bumps share the pages' byte budget
// with entries: a page holds at most maxPageBumps bumps, its frame stays
// within maxPageFrame when a large entry follows a page of bumps, and
// every page decodes.
func TestPageWriter_BumpBounds(t *testing.T) {
	var buf bytes.Buffer
	pw := &pageWriter{w: &buf, d: dialect21}
	sig := make([]byte, catalog.BumpSignatureLen)
	for i := range 5000 {
		if err := pw.addBump(uint64(i), catalog.Version{StartMS: 1, UpdateMS: 2}, sig); err != nil {
			t.Fatal(err)
		}
		if i == 2500 {
			if err := pw.add(make([]byte, maxPageEntry)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pw.flush(true); err != nil {
		t.Fatal(err)
	}
	fr := framer.NewReader(&buf, maxPageFrame)
	bumps, entries := 0, 0
	for pages := 1; ; pages++ {
		body, err := fr.Next()
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pg, err := dialect21.decodePage(body)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(pg.Entries) > 0 && len(pg.Bumps) > 0 && len(pg.Bumps)+len(pg.Entries[0]) > pageBytes {
			t.Errorf("page %d holds %d bytes of bumps besides a %d-byte entry", pages, len(pg.Bumps), len(pg.Entries[0]))
		}
		bumps += len(pg.Bumps) / bumpLen
		entries += len(pg.Entries)
		if pg.Last {
			break
		}
	}
	if bumps != 5000 || pw.bumped != 5000 || entries != 1 {
		t.Errorf("%d bumps read, %d counted, %d entries; want 5000, 5000, 1", bumps, pw.bumped, entries)
	}
}
