package catalog

import (
	"errors"
	"fmt"
)

// Errors returned when an entry or departure is refused. A refused input
// is either rejected (it is invalid: the sender misbehaved and gossip should
// penalise it) or ignored (it is valid but useless now: stale, replayed or
// not newer). [IsRejected] tells the two apart; errors.Is works on each.
var (
	// Rejections: the input is invalid.
	ErrOversize         = errors.New("catalog: message exceeds the size limit")
	ErrMalformed        = errors.New("catalog: malformed message")
	ErrBadSignature     = errors.New("catalog: invalid signature or wrong domain")
	ErrSignerMismatch   = errors.New("catalog: signer is not the entry's peer")
	ErrOtherNetwork     = errors.New("catalog: entry belongs to another network")
	ErrClockDrift       = errors.New("catalog: timestamp too far from local clock")
	ErrWrongPayloadType = errors.New("catalog: unexpected envelope payload type")
	// ErrUnadmitted: the catalog is closed (see [Admission]) and the entry
	// holds no valid admission ticket, or its admission ended.
	ErrUnadmitted = errors.New("catalog: entry holds no valid admission ticket")
	// ErrBadBump: a bump (PROTOCOL.md section 10.8) does not apply to the
	// entry it names: the receiver holds that entry in a form a bump
	// cannot be spliced into, or the signature is not BumpSignatureLen
	// bytes. A bump that applies but whose signature does not verify fails
	// as ErrBadSignature when opened.
	ErrBadBump = errors.New("catalog: bump does not apply to the held entry")

	// Ignored: valid but not applicable.
	ErrStale       = errors.New("catalog: entry is stale")
	ErrNotNewer    = errors.New("catalog: entry version is not newer than the known one")
	ErrLocal       = errors.New("catalog: entry describes the local peer")
	ErrUnknown     = errors.New("catalog: peer is not in the catalog")
	ErrCatalogFull = errors.New("catalog: the catalog holds MaxPeers peers")
	ErrRateLimited = errors.New("catalog: entry updated sooner than MinUpdateInterval after the previous one")
	ErrAddressCap  = errors.New("catalog: too many peers announce that address or subnet")
	// ErrCatalogChurn: a new peer finds the catalog full and the peer
	// eviction would pick entered it less than Params.EvictMinAge ago.
	ErrCatalogChurn = errors.New("catalog: the catalog is full and its evictable peers arrived within EvictMinAge")
	// ErrAdmissionWindow: in a closed catalog, the entry's admission
	// starts or ended within Params.MaxClockDrift of now. It is refused
	// but not rejected: a relay whose clock is that far from ours may
	// have taken it honestly.
	ErrAdmissionWindow = errors.New("catalog: the entry's admission starts or ends within the clock drift of now")
)

// IsRejected reports whether err marks invalid input (a protocol violation by
// the sender), as opposed to input that is merely stale or redundant.
func IsRejected(err error) bool {
	for _, e := range []error{ErrOversize, ErrMalformed, ErrBadSignature, ErrSignerMismatch, ErrOtherNetwork, ErrClockDrift, ErrWrongPayloadType, ErrUnadmitted, ErrBadBump} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Reason returns a short, stable label for the cause of err, for metric
// attributes ("oversize", "bad_signature", ...). It returns "other" for
// errors not defined by this package.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrOversize):
		return "oversize"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ErrSignerMismatch):
		return "signer_mismatch"
	case errors.Is(err, ErrOtherNetwork):
		return "other_network"
	case errors.Is(err, ErrClockDrift):
		return "clock_drift"
	case errors.Is(err, ErrWrongPayloadType):
		return "payload_type"
	case errors.Is(err, ErrUnadmitted):
		return "unadmitted"
	case errors.Is(err, ErrBadBump):
		return "bad_bump"
	case errors.Is(err, ErrStale):
		return "stale"
	case errors.Is(err, ErrNotNewer):
		return "not_newer"
	case errors.Is(err, ErrLocal):
		return "local"
	case errors.Is(err, ErrUnknown):
		return "unknown"
	case errors.Is(err, ErrCatalogFull):
		return "catalog_full"
	case errors.Is(err, ErrCatalogChurn):
		return "catalog_churn"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrAddressCap):
		return "address_cap"
	case errors.Is(err, ErrAdmissionWindow):
		return "admission_window"
	default:
		return "other"
	}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
