package groups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mosaik-go/mosaik/catalog"
)

// WithDataDir keeps the group's raft log, hard state and snapshots on disk,
// in a write-ahead log per group at <dir>/groups/<group id hex>/wal
// (created with mode 0600 in 0700 directories), instead of in memory. A node that
// joins again with the same key and directory, after a restart or a crash,
// resumes its membership and state: it restores the latest snapshot,
// replays the committed entries after it and catches up with the others.
//
// Every write is fsynced before raft sends the messages of that step, as
// raft requires. The file is locked while the group runs: a second process
// (or a second Service in this one) joining the same group on the same
// directory fails after a few seconds. When this node loses a merge of
// independent clusters, the file's contents are discarded with the rest of
// its raft state. A small file beside it, epochs, keeps the epochs this
// node left (after a merge it lost or a forced epoch), so that after a
// restart it still announces them (PROTOCOL.md §20.1).
//
// An empty dir keeps the log in memory (the default), which overrides a
// data dir set for the whole service with WithJoinDefaults.
func WithDataDir(dir string) Option {
	return func(c *config) {
		if dir == "" {
			c.openStore = nil
			return
		}
		c.openStore = dataDirOpener(dir)
	}
}

// dataDirOpener opens group stores under dir. The core closes a store
// before it asks for a fresh one, so the file is not locked when it is
// removed.
func dataDirOpener(dir string) func(group catalog.ID, fresh bool) (logStore, error) {
	return func(group catalog.ID, fresh bool) (logStore, error) {
		if fresh {
			// The old format's file goes too: its state is discarded anyway.
			for _, p := range []string{filepath.Join(walStorePath(dir, group), walDirName), boltStorePath(dir, group)} {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, fmt.Errorf("groups: discarding the log store: %w", err)
				}
			}
		}
		return openGroupWAL(dir, group, walOptions{})
	}
}
