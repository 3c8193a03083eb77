// Package keyfile stores a node's ed25519 identity: the libp2p protobuf
// encoding of the private key (crypto.MarshalPrivateKey), in a file of mode
// 0600.
//
// Create never leaves a partial or world-readable key behind: it writes a
// temporary file in the same directory with mode 0600, syncs it, links it
// into place (failing if the key file exists) and syncs the directory, so
// after a crash the key file is either absent or complete. Load warns about
// a key file that group or others may read, and refuses it under
// WithStrictPerms.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxKeyFile caps what Load reads: an ed25519 key file is 68 bytes.
const maxKeyFile = 4 << 10

// ErrInsecurePerms is returned by Load under WithStrictPerms for a key file
// that group or others may read or write.
var ErrInsecurePerms = errors.New("keyfile: key file is accessible to group or others")

// ErrCorrupt is returned by Load for a file that does not hold a key in the
// expected format.
var ErrCorrupt = errors.New("keyfile: not a key file")

// wantFormat names the format in the corrupt-file error, so an operator
// knows what the file should have held and how to make one.
const wantFormat = "want a libp2p protobuf-encoded ed25519 private key as written by 'mosaik-node keygen --out FILE'"

// Option configures Load, LoadOrCreate and PeerID.
type Option func(*config)

type config struct {
	strict bool
	log    *slog.Logger
}

// WithStrictPerms refuses a key file that group or others may access,
// instead of warning.
func WithStrictPerms() Option { return func(c *config) { c.strict = true } }

// WithLogger sets where the permission warning goes (default: slog's
// default logger).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

func newConfig(opts []Option) config {
	c := config{log: slog.Default()}
	for _, o := range opts {
		o(&c)
	}
	return c
}

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
	if err := writeNew(path, b); err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}

// writeNew writes b to path atomically and without replacing an existing
// file: a temporary file next to it, synced, then hard-linked to path
// (link, unlike rename, fails when path exists), then the directory synced
// so the new name survives a crash.
func writeNew(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("keyfile: %s: %w", path, fs.ErrExist)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // after the link, path keeps the data
	}()
	// CreateTemp already uses 0600; Chmod states it against any umask or
	// platform default.
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("keyfile: chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("keyfile: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keyfile: sync %s: %w", tmp, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("keyfile: write %s: %w", tmp, cerr)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keyfile: %s: %w", path, fs.ErrExist)
		}
		// A file system without hard links: rename, having checked above
		// that path did not exist.
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("keyfile: %w", err)
		}
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable. Some platforms cannot open
// or sync a directory; there the rename's own guarantees must do.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keyfile: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keyfile: sync %s: %w", dir, err)
	}
	return nil
}

// Load reads an ed25519 key from path. A key file that group or others
// may access is logged as a warning, or refused with ErrInsecurePerms
// under WithStrictPerms.
func Load(path string, opts ...Option) (crypto.PrivKey, error) {
	c := newConfig(opts)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	// Judge the file that was opened, not whatever the name points at now.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		if c.strict {
			return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrInsecurePerms, path, perm, path)
		}
		c.log.Warn("key file is accessible to group or others; run chmod 600 on it (--strict-perms refuses it)", "path", path, "mode", fmt.Sprintf("%04o", perm))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; %s", ErrCorrupt, path, maxKeyFile, wantFormat)
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s (%v)", ErrCorrupt, path, wantFormat, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("keyfile: %s holds a %v key; mosaik needs ed25519", path, k.Type())
	}
	return k, nil
}

// LoadOrCreate loads the key at path, creating it first when missing. A
// created key is logged at INFO with its path and peer ID: a typo in the
// path otherwise silently gives the node a new identity.
func LoadOrCreate(path string, opts ...Option) (crypto.PrivKey, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		id, err := Create(path)
		switch {
		case err == nil:
			where := path
			if abs, aerr := filepath.Abs(path); aerr == nil {
				where = abs
			}
			newConfig(opts).log.Info("key file not found: created a new identity", "path", where, "peer", id)
		case !errors.Is(err, fs.ErrExist):
			return nil, err
		}
	}
	return Load(path, opts...)
}

// PeerID returns the peer ID of the key at path.
func PeerID(path string, opts ...Option) (peer.ID, error) {
	k, err := Load(path, opts...)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}
