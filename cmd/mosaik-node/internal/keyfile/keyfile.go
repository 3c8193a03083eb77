// Package keyfile stores a node's ed25519 identity: the libp2p protobuf
// encoding of the private key (crypto.MarshalPrivateKey), in a file of mode
// 0600.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxKeyFile caps what Load reads: an ed25519 key file is 68 bytes.
const maxKeyFile = 4 << 10

// Create writes a new ed25519 key to path, which must not exist, and
// returns its peer ID.
func Create(path string) (peer.ID, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", err
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("keyfile: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", fmt.Errorf("keyfile: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("keyfile: write %s: %w", path, err)
	}
	return peer.IDFromPrivateKey(k)
}

// Load reads an ed25519 key from path.
func Load(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxKeyFile+1)
	n, _ := f.Read(b)
	if n > maxKeyFile {
		return nil, fmt.Errorf("keyfile: %s is larger than %d bytes; not a key file", path, maxKeyFile)
	}
	k, err := crypto.UnmarshalPrivateKey(b[:n])
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("keyfile: %s holds a %v key; mosaik needs ed25519", path, k.Type())
	}
	return k, nil
}

// LoadOrCreate loads the key at path, creating it first when missing.
func LoadOrCreate(path string) (crypto.PrivKey, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := Create(path); err != nil {
			return nil, err
		}
	}
	return Load(path)
}

// PeerID returns the peer ID of the key at path.
func PeerID(path string) (peer.ID, error) {
	k, err := Load(path)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}
