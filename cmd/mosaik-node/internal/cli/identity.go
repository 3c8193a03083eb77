package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/mosaik-go/mosaik/internal/flock"
	"github.com/mosaik-go/mosaik/node"
)

// allowDuplicateIdentityUsage is the help text of --allow-duplicate-identity.
const allowDuplicateIdentityUsage = "keep running when another process uses this node's key on the network (by default the node logs an error and exits 1: the peers ignore the entry of the process started first)"

// identityWatch ends a command when its node finds another process using
// its identity (node.DuplicateIdentity), unless that is allowed.
type identityWatch struct {
	n     *node.Node
	allow bool
	done  chan struct{}
}

// watchIdentity returns a context that is cancelled when n finds a
// duplicate identity (unless allow, which only logs a warning), and the
// watch; call its stop when the command ends and its result to turn the
// command's error into the duplicate identity's.
func watchIdentity(ctx context.Context, n *node.Node, allow bool, log *slog.Logger) (context.Context, *identityWatch, func()) {
	ctx, cancel := context.WithCancel(ctx)
	w := &identityWatch{n: n, allow: allow, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		select {
		case <-ctx.Done():
			return
		case <-n.DuplicateIdentity():
		}
		if allow {
			log.Warn("continuing with a duplicate identity (--allow-duplicate-identity): the peers ignore this node's entry while the other process runs")
			return
		}
		cancel()
	}()
	return ctx, w, func() { cancel(); <-w.done }
}

// result is the command's error: the duplicate identity when it ended the
// command, err otherwise.
func (w *identityWatch) result(err error) error {
	if w.allow {
		return err
	}
	if de := w.n.DuplicateIdentityErr(); de != nil {
		return fmt.Errorf("%w; stop the other process or give each process its own --key (--allow-duplicate-identity keeps this one running)", de)
	}
	return err
}

// lockIdentity holds an exclusive lock on key+".lock" while the command
// runs: a second process started with the same identity on this machine
// (the same --data-dir or --key) fails at once, before its node announces
// itself, instead of making the first exit on a duplicate identity (and,
// restarted by a supervisor, evict the second in turn). The lock file
// names the holder's pid. No key (a new identity each run), or
// --allow-duplicate-identity, takes no lock; nor does a key whose
// directory is not writable (a read-only secrets mount): that is logged.
// release is never nil.
func lockIdentity(key string, allow bool, log *slog.Logger) (release func(), err error) {
	if key == "" || allow {
		return func() {}, nil
	}
	path := key + ".lock"
	f, err := flock.Lock(path)
	if errors.Is(err, flock.ErrBusy) {
		pid := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil && len(bytes.TrimSpace(b)) > 0 {
			pid = string(bytes.TrimSpace(b))
		}
		return nil, usagef("identity %s is in use by another process on this machine (pid %s): give each node its own --data-dir or --key", key, pid)
	}
	if err != nil {
		log.Warn("no identity lock (another process on this machine could start with the same key)", "path", path, "err", err)
		return func() {}, nil
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}
