package catalog

import (
	"crypto/ed25519"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/internal/edverify"
)

// verifySig checks sig over msg by k. Entries are signed by ed25519 keys
// (decodeEnvelope refuses others), and checking them is the largest single
// item of a node's CPU in a join wave (a fifth of it at N = 100): they go
// through edverify, which accepts exactly the signatures crypto/ed25519
// accepts, faster. Any other key type keeps its own Verify.
func verifySig(k crypto.PubKey, msg, sig []byte) (bool, error) {
	ek, ok := k.(*crypto.Ed25519PublicKey)
	if !ok {
		return k.Verify(msg, sig)
	}
	raw, err := ek.Raw()
	if err != nil {
		return false, err
	}
	return edverify.Verify(ed25519.PublicKey(raw), msg, sig), nil
}
