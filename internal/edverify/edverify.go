// Package edverify checks ed25519 signatures about a third faster than
// crypto/ed25519 on amd64, with exactly its rules for which signatures are
// valid.
//
// Every node checks the signature of every catalog entry it learns, so in
// a join wave the network checks about N² of them; this is the hot path it
// serves. The rules matter as much as the speed: ed25519 implementations
// disagree on edge cases (small-order keys, non-canonical encodings,
// cofactored or cofactorless equations), and nodes that disagree on
// whether an entry is valid disagree on the catalog. Verify therefore
// runs github.com/oasisprotocol/curve25519-voi with its standard-library
// preset (cofactorless equation, S < ℓ, R compared as canonical bytes,
// non-canonical and small-order keys allowed), never its batch verifier,
// whose equation is cofactored. The tests check it against crypto/ed25519
// on valid and mutated signatures, on crafted edge cases and under fuzzing.
package edverify

import (
	"crypto/ed25519"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

var stdlibRules = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// Verify reports whether sig is a valid signature of msg by pub, as
// crypto/ed25519.Verify does. Unlike it, a public key that is not
// ed25519.PublicKeySize bytes long is invalid rather than a panic.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return voi.VerifyWithOptions(voi.PublicKey(pub), msg, sig, stdlibRules)
}
