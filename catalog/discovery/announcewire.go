package discovery

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mosaik-go/mosaik/catalog"
)

// Field numbers of pb.Announcement: its oneof kind, and the nonce.
const (
	announceEntry     protowire.Number = 1
	announceDeparture protowire.Number = 2
	announceNonce     protowire.Number = 3 // outside the oneof
)

// MaxBatchEntries caps the entries of one gossip announcement (a relay
// batch, PROTOCOL.md section 9.6). A message with more is malformed.
const MaxBatchEntries = 64

// maxBatchVerifies bounds the signatures a validator verifies for the
// entries of an accepted batch that it ignores (see decodeAnnouncement).
const maxBatchVerifies = 4

// errCostlyBatch ignores a batch that would take more verifications
// (label costly_batch; its ignored entries count by their own labels).
var errCostlyBatch = fmt.Errorf("discovery: a relay batch with more than %d ignored entries to verify", maxBatchVerifies)

// errUnvouchedBatch ignores a batch holding an authentic entry that this
// node refuses for a reason its sender may not share (admission_window):
// forwarded, it could cost this node the next hop's penalty.
var errUnvouchedBatch = errors.New("discovery: a relay batch with an entry this node cannot vouch for")

// heldBack reports whether err ignores a batch only to keep it from
// going further: its new entries (returned beside err) are merged all
// the same.
func heldBack(err error) bool {
	return errors.Is(err, errCostlyBatch) || errors.Is(err, errUnvouchedBatch)
}

// refusalReason is the metric label of a refused announcement or entry:
// catalog.Reason, costly_batch for errCostlyBatch and unvouched_batch for
// errUnvouchedBatch.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, errCostlyBatch):
		return "costly_batch"
	case errors.Is(err, errUnvouchedBatch):
		return "unvouched_batch"
	}
	return catalog.Reason(err)
}

// batchChecker checks the ignored entries of a batch, and opens a
// departure against the catalog (*catalog.Store).
type batchChecker interface {
	HeldCopy(data []byte) bool
	Authentic(data []byte, now time.Time) error
	OpenDeparture(data []byte, now time.Time) (*catalog.Departure, error)
}

// decodeAnnouncement decodes a gossip message of at most limit bytes into the
// entries it carries (opened by openEntry) or a verified departure (opened
// by check.OpenDeparture, which judges it against the catalog before its
// signature, or without a check by catalog.OpenDeparture). It never panics
// on hostile input; errors carry catalog's verdict sentinels.
//
// A message may carry several entries (a relay batch). It is refused as a
// whole when one of them is rejected (forged, malformed, ...), since its
// sender should have checked them; entries that are merely ignored (stale,
// known, over a rate limit) are left out, and their errors are returned in
// ignored. When every entry is ignored, err is the first of them and
// entries is empty. In a batch that is not refused (some entry is new, so
// the router forwards the message whole) every ignored entry is checked
// with check too, since openEntry ignores some without verifying them: a
// forged one refuses the batch here, instead of downstream, where its
// rejection would cost this node the forwarder's penalty. A held copy
// costs nothing to check; a batch with more than maxBatchVerifies entries
// to verify that way is ignored as a whole (not forwarded) unchecked, so
// that a batch of one new entry and stale replays cannot make every hop
// verify dozens of signatures for nothing; so is one with an authentic
// entry ignored here for a reason its sender may not share (see
// errUnvouchedBatch). Both return their new entries and ignored entries
// beside the error (errCostlyBatch, errUnvouchedBatch: see heldBack), to
// be merged without forwarding the batch.
//
// A batch names each peer at most once (section 9.6); one that names a
// peer twice is malformed, refused before any entry is opened (entries
// whose key is not inline are compared once opened): copies of one new
// entry would each be verified against the same catalog, and forged
// copies of the local entry would each cost a check for a second process.
func decodeAnnouncement(data []byte, limit int, now time.Time, openEntry func([]byte) (*catalog.SignedEntry, error), check batchChecker) (entries []*catalog.SignedEntry, d *catalog.Departure, ignored []error, err error) {
	if len(data) > limit {
		return nil, nil, nil, fmt.Errorf("%w: announcement of %d bytes > %d", catalog.ErrOversize, len(data), limit)
	}
	kind, bodies, err := parseAnnouncement(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: announcement: %v", catalog.ErrMalformed, err)
	}
	switch kind {
	case announceEntry:
		if len(bodies) > 1 {
			if err := onePerPeer(bodies); err != nil {
				return nil, nil, nil, err
			}
		}
		var unchecked [][]byte // ignored entries, to check if the batch goes on
		for _, b := range bodies {
			e, err := openEntry(b)
			switch {
			case err == nil:
				if _, inline := catalog.SealedPeer(b); !inline && len(bodies) > 1 {
					for _, o := range entries {
						if o.Entry.PeerID == e.Entry.PeerID {
							return nil, nil, nil, fmt.Errorf("%w: a relay batch names peer %s twice", catalog.ErrMalformed, e.Entry.PeerID)
						}
					}
				}
				entries = append(entries, e)
			case catalog.IsRejected(err):
				return nil, nil, nil, err
			default:
				ignored = append(ignored, err)
				unchecked = append(unchecked, b)
			}
		}
		if len(entries) == 0 {
			return nil, nil, ignored[1:], ignored[0]
		}
		if check != nil {
			costly := unchecked[:0]
			for _, b := range unchecked {
				if !check.HeldCopy(b) {
					costly = append(costly, b)
				}
			}
			if len(costly) > maxBatchVerifies {
				return entries, nil, ignored, errCostlyBatch
			}
			unvouched := false
			for _, b := range costly {
				switch err := check.Authentic(b, now); {
				case catalog.IsRejected(err):
					return nil, nil, nil, err
				case err != nil:
					// Authentic, but refused here for a reason the sender
					// may not share (an admission that starts or ended
					// within the clock drift): ignored already; the next
					// hop might reject it, so the batch goes no further.
					unvouched = true
				}
			}
			if unvouched {
				return entries, nil, ignored, errUnvouchedBatch
			}
		}
		return entries, nil, ignored, nil
	case announceDeparture:
		if check != nil {
			// The catalog's checks first, the signature last: a departure
			// of a peer it does not hold costs no verification.
			d, err := check.OpenDeparture(bodies[0], now)
			return nil, d, nil, err
		}
		d, err := catalog.OpenDeparture(bodies[0])
		return nil, d, nil, err
	}
	return nil, nil, nil, fmt.Errorf("%w: empty announcement", catalog.ErrMalformed)
}

// onePerPeer refuses a batch whose entries name one peer twice, by the
// peer IDs their inline keys give (catalog.SealedPeer); entries without
// one are left to decodeAnnouncement's check of the opened entries.
func onePerPeer(bodies [][]byte) error {
	seen := make(map[peer.ID]struct{}, len(bodies))
	for _, b := range bodies {
		id, ok := catalog.SealedPeer(b)
		if !ok {
			continue
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("%w: a relay batch names peer %s twice", catalog.ErrMalformed, id)
		}
		seen[id] = struct{}{}
	}
	return nil
}

// parseAnnouncement decodes a pb.Announcement as proto.Unmarshal does (the
// last member of the oneof wins; other fields, and a member with the wrong
// wire type, are skipped as unknown) without its reflection-driven oneof
// decoding, and without copying: bodies alias data. When the last member is
// an entry, bodies holds every entry member of the message in order (a
// relay batch; proto.Unmarshal keeps only the last, as older nodes do),
// at most MaxBatchEntries; a departure has one body. It returns kind 0 for
// an announcement without either member. FuzzDecodeAnnouncement checks it
// against proto.Unmarshal.
func parseAnnouncement(data []byte) (kind protowire.Number, bodies [][]byte, err error) {
	var entries [][]byte
	var departure []byte
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return 0, nil, fmt.Errorf("field number %d out of range", num)
		}
		b = b[n:]
		if (num == announceEntry || num == announceDeparture) && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			kind, b = num, b[n:]
			if num == announceDeparture {
				departure = v
				continue
			}
			if len(entries) == MaxBatchEntries {
				return 0, nil, fmt.Errorf("more than %d entries", MaxBatchEntries)
			}
			entries = append(entries, v)
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	switch kind {
	case announceEntry:
		return kind, entries, nil
	case announceDeparture:
		return kind, [][]byte{departure}, nil
	}
	return 0, nil, nil
}

// appendBatch appends to b the announcement of a relay batch: each sealed
// entry as an entry member, in order, and no nonce (PROTOCOL.md section
// 9.6). A batch of one is the canonical announcement of section 9.2.
func appendBatch(b []byte, entries []*catalog.SignedEntry) []byte {
	for _, e := range entries {
		b = protowire.AppendTag(b, announceEntry, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Bytes())
	}
	return b
}

// batchSize is the size of e's member in a batch announcement.
func batchSize(e *catalog.SignedEntry) int {
	n := len(e.Bytes())
	return protowire.SizeTag(announceEntry) + protowire.SizeBytes(n)
}
