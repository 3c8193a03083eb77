package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
)

// DefaultPort is run's listen port when no --listen is given, for TCP and
// QUIC alike: a node that restarts keeps its addresses, so the multiaddrs
// other nodes bootstrap from stay valid, as Kubo's 4001 does. It is not
// Kubo's port, so both run on one host.
const DefaultPort = 4801

// keyFileName is the identity's file in a data directory.
const keyFileName = "node.key"

// defaultListen is run's listen addresses without --listen.
func defaultListen() []string {
	return []string{
		fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultPort),
		fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultPort),
	}
}

// defaultDataDir is the user's data directory for mosaik, as the XDG base
// directory specification places it: $XDG_DATA_HOME/mosaik, else
// $HOME/.local/share/mosaik; "" when neither variable is set.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "mosaik")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "mosaik")
	}
	return ""
}

// resolveIdentity fills run's identity and data directory:
//
//   - --key and --data-dir: as given;
//   - --data-dir only: the identity is DIR/node.key;
//   - --key only: that identity, groups in memory (as before data dirs);
//   - neither: the user's data directory (defaultDataDir) holds both;
//     without one (no XDG_DATA_HOME, no HOME) a new identity each run.
//
// It reports whether the data directory is the default one.
func (c *nodeCmd) resolveIdentity(getenv func(string) string) (byDefault bool, err error) {
	switch {
	case c.nf.key != "":
		return false, nil
	case c.dataDir != "":
		c.nf.key = filepath.Join(c.dataDir, keyFileName)
		return false, nil
	}
	d := defaultDataDir(getenv)
	if d == "" {
		return false, nil
	}
	c.dataDir = d
	c.nf.key = filepath.Join(d, keyFileName)
	return true, nil
}

// persistentDefaults applies run's defaults that persist across restarts:
// the identity in the data directory and the stable listen port. The
// first start, which creates the identity, says so in one line.
func (c *nodeCmd) persistentDefaults(getenv func(string) string, log *slog.Logger) error {
	if len(c.nf.listen) == 0 {
		c.nf.listen = defaultListen()
		c.nf.stablePort = true
	}
	byDefault, err := c.resolveIdentity(getenv)
	switch {
	case err != nil:
		return err
	case c.nf.key == "":
		log.Warn("no data directory (neither XDG_DATA_HOME nor HOME is set): a new identity this run; give --data-dir or --key to keep one")
		return nil
	case !byDefault && c.dataDir == "":
		return nil // an explicit --key alone: keyfile logs its creation
	}
	created, id, err := ensureKey(c.dataDir, c.nf.key)
	if err != nil {
		return err
	}
	if created {
		msg := "first start: created a persistent identity in the data directory; later starts reuse it"
		if c.nf.stablePort {
			msg += fmt.Sprintf(" and listen on port %d again", DefaultPort)
		}
		log.Info(msg, "peer", id, "key", c.nf.key, "data_dir", c.dataDir)
	}
	return nil
}

// ensureKey creates dir (0700) and the key file in it when missing.
func ensureKey(dir, key string) (created bool, id string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, "", usagef("--data-dir: %v", err)
	}
	if _, err := os.Stat(key); !errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	pid, err := keyfile.Create(key)
	if errors.Is(err, fs.ErrExist) {
		return false, "", nil // another process won the race: use its key
	}
	if err != nil {
		return false, "", usageError{err}
	}
	return true, pid.String(), nil
}

// initIdentity is run --init: it creates the identity when missing and
// prints the peer ID and the key file, without starting a node, so that
// provisioning (a Dockerfile, an ExecStartPre) can make it explicitly.
func (c *nodeCmd) initIdentity(env Env, log *slog.Logger) error {
	if _, err := c.resolveIdentity(env.Getenv); err != nil {
		return err
	}
	if c.nf.key == "" {
		return usagef("run --init: no data directory (neither XDG_DATA_HOME nor HOME is set); give --data-dir or --key")
	}
	dir := c.dataDir
	if dir == "" {
		dir = filepath.Dir(c.nf.key)
	}
	created, _, err := ensureKey(dir, c.nf.key)
	if err != nil {
		return err
	}
	id, err := keyfile.PeerID(c.nf.key, keyOptions(c.nf.strictPerms, log)...)
	if err != nil {
		return usageError{err}
	}
	state := "existing"
	if created {
		state = "created"
	}
	fmt.Fprintf(env.Stdout, "%s\t%s\t%s\n", id, c.nf.key, state)
	return nil
}
