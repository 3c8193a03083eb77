package discovery

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// Limits of sync 2.0.0 and 2.1.0 (PROTOCOL.md sections 10.3 and 10.8).
// They are fixed, not parameters, so that two nodes never disagree on
// what a page may hold.
const (
	saltLen       = 8
	digestItemLen = 24 // key, start_ms, update_ms: 8 bytes each
	hashLen       = 8  // the content hash 2.1.0 adds to digest items and want keys
	// maxDigestItems caps one digest page: 96 KiB of items (128 KiB in
	// 2.1.0).
	maxDigestItems = 4096
	// maxPageEntries and pageBytes bound what a responder puts in one
	// page: it starts a new page before either is exceeded. A single
	// entry larger than pageBytes travels alone.
	maxPageEntries = 256
	pageBytes      = 256 << 10
	// maxPageFrame caps a page frame: room for one entry of up to
	// 1 MiB - 1 KiB (larger ones are never sent) or pageBytes of entries
	// with their protobuf tags.
	maxPageFrame = 1 << 20
	maxPageEntry = maxPageFrame - 1<<10
	// maxWant caps the keys a responder asks for in one sync (32 KiB, or
	// 64 KiB with their hashes); what it lacks beyond them comes with
	// later syncs.
	maxWant = 4096
	// bumpLen is one bump: key, start_ms, update_ms and the signature.
	bumpLen = 24 + catalog.BumpSignatureLen
	// maxPageBumps caps the bumps of one page (176 KiB).
	maxPageBumps = 2048
	// maxSyncItems caps the digest items a responder reads and the
	// entries an initiator reads in one sync: a peer cannot make a sync
	// endless (SyncTimeout bounds it in time as well).
	maxSyncItems = 1 << 20
)

// dialect is what tells the two delta syncs apart. 2.1.0 (bumps) adds
// the content hash to digest items and want keys and lets pages carry
// bumps (PROTOCOL.md section 10.8); 2.0.0 is the exchange without them.
type dialect struct{ bumps bool }

var (
	dialect20 = dialect{}
	dialect21 = dialect{bumps: true}
)

func (d dialect) String() string {
	if d.bumps {
		return "2.1.0"
	}
	return "2.0.0"
}

// itemLen is the length of one digest item.
func (d dialect) itemLen() int {
	if d.bumps {
		return digestItemLen + hashLen
	}
	return digestItemLen
}

// wantLen is the length of one want key.
func (d dialect) wantLen() int {
	if d.bumps {
		return 8 + hashLen
	}
	return 8
}

// digestFrame caps a digest frame: a page of items and its tags.
func (d dialect) digestFrame() int { return maxDigestItems*d.itemLen() + 16 }

// helloCap caps the SyncHello frame: the initiator's entry plus the
// network, the salt and their tags.
func helloCap(maxEntry int) int { return maxEntry + 64 }

// syncError is a sync refused for a cause; the cause labels its counter.
type syncError struct {
	cause string
	err   error
}

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

func syncErrorf(cause, format string, args ...any) error {
	return &syncError{cause: cause, err: fmt.Errorf(format, args...)}
}

// causeOf is the counter label of a failed sync step.
func causeOf(err error) string {
	var se *syncError
	var ne *network.StreamError
	switch {
	case errors.As(err, &se):
		return se.cause
	case errors.Is(err, framer.ErrTooLarge):
		return "oversize"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	default:
		return "io"
	}
}

// readMessage reads one frame of at most max bytes into m; a frame that
// does not decode is a syncError of cause "malformed".
func readMessage(r *bufio.Reader, max int, m proto.Message) error {
	b, err := framer.ReadFrame(r, max)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return syncErrorf("malformed", "decode %T: %v", m, err)
	}
	return nil
}

// digestItem is what the initiator holds of one peer: the key, the
// version and (2.1.0) the content hash, zero for no bump.
type digestItem struct {
	key  uint64
	v    catalog.Version
	hash uint64
}

// digestKey is the 8-byte key of peer p under salt: the first 8 bytes,
// big-endian, of SHA-256(salt || binary peer ID).
func digestKey(salt []byte, p peer.ID) uint64 {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(p))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// indexed is a catalog entry under its digest key.
type indexed struct {
	key uint64
	e   *catalog.SignedEntry
}

// digestIndex keys every entry of es under salt, in ascending key order,
// skipping the entry of skip. Two peers with one key (odds 2^-64 per
// pair) both stay: the responder sends each unless the digest names a
// newer version, the initiator lists the first only.
func digestIndex(salt []byte, es iter.Seq[*catalog.SignedEntry], skip peer.ID) []indexed {
	var out []indexed
	for e := range es {
		if e.Entry.PeerID != skip {
			out = append(out, indexed{digestKey(salt, e.Entry.PeerID), e})
		}
	}
	slices.SortFunc(out, func(a, b indexed) int { return cmp.Compare(a.key, b.key) })
	return out
}

// appendItem appends the wire form of one digest item (the hash only in
// 2.1.0).
func (d dialect) appendItem(b []byte, it digestItem) []byte {
	b = binary.BigEndian.AppendUint64(b, it.key)
	b = binary.BigEndian.AppendUint64(b, uint64(it.v.StartMS))
	b = binary.BigEndian.AppendUint64(b, uint64(it.v.UpdateMS))
	if d.bumps {
		b = binary.BigEndian.AppendUint64(b, it.hash)
	}
	return b
}

// contentHash is e's content hash as digest items and want keys carry
// it: zero when e takes no bump.
func contentHash(e *catalog.SignedEntry) uint64 {
	h, _ := e.ContentHash()
	return h
}

// decodeDigest decodes one SyncDigest frame body. Its keys must ascend
// strictly and exceed after (the last key of the previous page) unless
// first. It never panics on hostile input.
func (d dialect) decodeDigest(data []byte, first bool, after uint64) (items []digestItem, last bool, err error) {
	if len(data) > d.digestFrame() {
		return nil, false, syncErrorf("oversize", "digest page of %d bytes > %d", len(data), d.digestFrame())
	}
	var dg pb.SyncDigest
	if err := proto.Unmarshal(data, &dg); err != nil {
		return nil, false, syncErrorf("malformed", "digest page: %v", err)
	}
	l := d.itemLen()
	if len(dg.Items)%l != 0 {
		return nil, false, syncErrorf("malformed", "digest page of %d bytes is not whole items", len(dg.Items))
	}
	n := len(dg.Items) / l
	if n > maxDigestItems {
		return nil, false, syncErrorf("oversize", "digest page of %d items > %d", n, maxDigestItems)
	}
	if n == 0 && !dg.Last {
		return nil, false, syncErrorf("empty_page", "empty digest page before the last")
	}
	items = make([]digestItem, n)
	for i := range items {
		b := dg.Items[i*l:]
		it := digestItem{key: binary.BigEndian.Uint64(b), v: catalog.Version{
			StartMS: int64(binary.BigEndian.Uint64(b[8:])), UpdateMS: int64(binary.BigEndian.Uint64(b[16:]))}}
		if d.bumps {
			it.hash = binary.BigEndian.Uint64(b[24:])
		}
		if (!first || i > 0) && it.key <= after {
			return nil, false, syncErrorf("digest_unsorted", "digest key %016x after %016x", it.key, after)
		}
		items[i], after = it, it.key
	}
	return items, dg.Last, nil
}

// decodePage decodes one SyncPage frame body: at most maxPageEntries
// entries and (2.1.0 only) maxPageBumps whole bumps, and neither only on
// the last page. It never panics on hostile input; the entries and bumps
// are checked one by one when merged.
func (d dialect) decodePage(data []byte) (*pb.SyncPage, error) {
	if len(data) > maxPageFrame {
		return nil, syncErrorf("oversize", "page of %d bytes > %d", len(data), maxPageFrame)
	}
	var pg pb.SyncPage
	if err := proto.Unmarshal(data, &pg); err != nil {
		return nil, syncErrorf("malformed", "page: %v", err)
	}
	wl := d.wantLen()
	switch n := len(pg.Entries); {
	case n > maxPageEntries:
		return nil, syncErrorf("oversize", "page of %d entries > %d", n, maxPageEntries)
	case len(pg.Bumps) > 0 && !d.bumps:
		return nil, syncErrorf("malformed", "bumps in a %v page", d)
	case len(pg.Bumps)%bumpLen != 0:
		return nil, syncErrorf("malformed", "bumps of %d bytes are not whole bumps", len(pg.Bumps))
	case len(pg.Bumps) > maxPageBumps*bumpLen:
		return nil, syncErrorf("oversize", "page of %d bumps > %d", len(pg.Bumps)/bumpLen, maxPageBumps)
	case n == 0 && len(pg.Bumps) == 0 && !pg.Last:
		return nil, syncErrorf("empty_page", "empty page before the last")
	case len(pg.Want) > 0 && !pg.Last:
		return nil, syncErrorf("malformed", "want on a page before the last")
	case len(pg.Want)%wl != 0:
		return nil, syncErrorf("malformed", "want of %d bytes is not whole keys", len(pg.Want))
	case len(pg.Want) > maxWant*wl:
		return nil, syncErrorf("oversize", "want of %d keys > %d", len(pg.Want)/wl, maxWant)
	}
	// want is in digest order: keys strictly ascend. A key named twice
	// would be answered twice (review probe: one key 4 096 times drew the
	// same entry 4 096 times, 32 MiB of upload at the entry cap).
	for i := wl; i < len(pg.Want); i += wl {
		if binary.BigEndian.Uint64(pg.Want[i:]) <= binary.BigEndian.Uint64(pg.Want[i-wl:]) {
			return nil, syncErrorf("malformed", "want keys do not strictly ascend at key %d", i/wl)
		}
	}
	return &pg, nil
}

// wanted is one key of a want, with (2.1.0) the content hash of the
// asker's entry of that key, zero when it has none.
type wanted struct {
	key, hash uint64
}

// wantKeys decodes the want field of a page checked by decodePage.
func (d dialect) wantKeys(b []byte) []wanted {
	l := d.wantLen()
	keys := make([]wanted, len(b)/l)
	for i := range keys {
		keys[i].key = binary.BigEndian.Uint64(b[i*l:])
		if d.bumps {
			keys[i].hash = binary.BigEndian.Uint64(b[i*l+8:])
		}
	}
	return keys
}

// pageWriter fills and writes the pages of either side.
type pageWriter struct {
	w       io.Writer
	d       dialect
	page    pb.SyncPage
	size    int
	entries int    // entries written in all
	bumped  int    // bumps written in all
	want    []byte // packed keys for the last page
}

// send queues e, as a bump when the receiver holds the same content
// (theirs, its content hash, is e's) and the dialect has bumps, else
// whole.
func (pw *pageWriter) send(key uint64, e *catalog.SignedEntry, theirs uint64) error {
	if pw.d.bumps && theirs != 0 && contentHash(e) == theirs {
		if sig, ok := e.Signature(); ok {
			return pw.addBump(key, e.Entry.Version, sig)
		}
	}
	return pw.add(e.Bytes())
}

// add queues one sealed entry, writing the page first when the entry
// would overflow it.
func (pw *pageWriter) add(b []byte) error {
	if len(b) > maxPageEntry {
		return nil // larger than any page may carry; no node accepts such an entry
	}
	if n := len(pw.page.Entries); n == maxPageEntries || (!pw.empty() && pw.size+len(b) > pageBytes) {
		if err := pw.flush(false); err != nil {
			return err
		}
	}
	pw.page.Entries = append(pw.page.Entries, b)
	pw.size += len(b)
	return nil
}

// addBump queues one bump, writing the page first when it is full.
func (pw *pageWriter) addBump(key uint64, v catalog.Version, sig []byte) error {
	if len(pw.page.Bumps) == maxPageBumps*bumpLen || pw.size+bumpLen > pageBytes {
		if err := pw.flush(false); err != nil {
			return err
		}
	}
	b := binary.BigEndian.AppendUint64(pw.page.Bumps, key)
	b = binary.BigEndian.AppendUint64(b, uint64(v.StartMS))
	b = binary.BigEndian.AppendUint64(b, uint64(v.UpdateMS))
	pw.page.Bumps = append(b, sig...)
	pw.size += bumpLen
	return nil
}

func (pw *pageWriter) empty() bool { return len(pw.page.Entries) == 0 && len(pw.page.Bumps) == 0 }

// flush writes the queued page (with the end marker when last). A page
// that is not the last is never empty.
func (pw *pageWriter) flush(last bool) error {
	if !last && pw.empty() {
		return nil
	}
	pw.page.Last = last
	if last {
		pw.page.Want = pw.want
	}
	if err := framer.WriteProto(pw.w, &pw.page); err != nil {
		return err
	}
	pw.entries += len(pw.page.Entries)
	pw.bumped += len(pw.page.Bumps) / bumpLen
	clear(pw.page.Entries)
	pw.page.Entries, pw.page.Bumps, pw.page.Want, pw.size = pw.page.Entries[:0], pw.page.Bumps[:0], nil, 0
	return nil
}
