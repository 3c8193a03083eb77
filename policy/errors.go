package policy

import "errors"

// Errors of ticket validation.
var (
	ErrTicketMalformed  = errors.New("policy: malformed ticket")
	ErrTicketSignature  = errors.New("policy: ticket signature invalid")
	ErrUntrustedIssuer  = errors.New("policy: ticket issuer is not trusted")
	ErrWrongSubject     = errors.New("policy: ticket issued for another peer")
	ErrWrongNetwork     = errors.New("policy: ticket issued for another network")
	ErrWrongClass       = errors.New("policy: ticket of another class")
	ErrTicketNotYet     = errors.New("policy: ticket not valid yet")
	ErrTicketExpired    = errors.New("policy: ticket expired")
	ErrTicketNoExpiry   = errors.New("policy: ticket never expires and non-expiring tickets are not allowed")
	ErrTicketTooLong    = errors.New("policy: ticket lifetime exceeds the maximum")
	ErrTicketClaim      = errors.New("policy: required claim missing or different")
	ErrTicketTooOld     = errors.New("policy: ticket issued too long ago")
	ErrTicketAudience   = errors.New("policy: ticket audience not allowed")
	ErrTicketAlgorithm  = errors.New("policy: ticket algorithm or key not accepted")
	ErrTicketIssuerName = errors.New("policy: ticket issuer not allowed")
)
