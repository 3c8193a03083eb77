package cli

import (
	"context"
	"fmt"
	"log/slog"

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
