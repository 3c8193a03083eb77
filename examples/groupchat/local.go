package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/node"
)

// Participants on one machine find each other through a directory: each
// writes its addresses (127.0.0.1 only) to a file named after its peer id
// and dials the others it finds there, now and every scanEvery. One
// connection is enough; catalog gossip then finds the rest. Rescanning
// also joins two participants that started at the same moment and missed
// each other's file (their collections then merge). mDNS would also work,
// but it multicasts on every interface, and this example keeps its
// traffic on 127.0.0.1.
const (
	scanEvery = time.Second
	// staleAfter: a file whose peer refuses a dial and that was not
	// rewritten for this long belongs to a participant that crashed; it
	// is removed. A live participant rewrites a missing file at its next
	// scan.
	staleAfter  = 10 * time.Second
	dialTimeout = 2 * time.Second
	maxAddrFile = 4 << 10
)

// defaultDir is where participants of room meet: the user's cache
// directory, or the temporary directory.
func defaultDir(room string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "mosaik-groupchat", pathSafe(room))
}

// pathSafe keeps a room name usable as one path element.
func pathSafe(room string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == os.PathSeparator {
			return '_'
		}
		return r
	}, room)
}

// localDir announces a node in a directory and dials the others announced
// there. Close removes the node's file and waits for the scanner.
type localDir struct {
	dir, file string
	n         *node.Node
	log       *slog.Logger
	cancel    context.CancelFunc
	done      chan struct{}
	once      sync.Once
}

// openLocalDir announces n in dir, dials the participants already there
// (best effort) and keeps scanning until Close.
func openLocalDir(ctx context.Context, dir string, n *node.Node, log *slog.Logger) (*localDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &localDir{dir: dir, file: filepath.Join(dir, n.ID().String()), n: n, log: log, done: make(chan struct{})}
	if err := d.announce(); err != nil {
		return nil, err
	}
	d.scan(ctx)
	sctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.loop(sctx)
	return d, nil
}

// announce writes the node's loopback addresses, atomically.
func (d *localDir) announce() error {
	var lines []string
	for _, a := range d.n.Addrs() {
		if ip, err := a.ValueForProtocol(ma.P_IP4); err == nil && ip == "127.0.0.1" {
			lines = append(lines, a.String()+"/p2p/"+d.n.ID().String())
		}
	}
	if len(lines) == 0 {
		return errors.New("groupchat: the node has no 127.0.0.1 address to announce")
	}
	tmp, err := os.CreateTemp(d.dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.WriteString(strings.Join(lines, "\n") + "\n")
	if err := errors.Join(werr, tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), d.file)
}

func (d *localDir) loop(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(scanEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(d.file); errors.Is(err, fs.ErrNotExist) {
			if err := d.announce(); err != nil {
				d.log.Warn("announce in the local directory", "dir", d.dir, "err", err)
			}
		}
		d.scan(ctx)
	}
}

// scan dials every announced peer this node is not connected to.
func (d *localDir) scan(ctx context.Context) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("read the local directory", "dir", d.dir, "err", err)
		return
	}
	for _, e := range entries {
		id, err := peer.Decode(e.Name())
		if err != nil || id == d.n.ID() || !e.Type().IsRegular() {
			continue
		}
		if d.n.Host().Network().Connectedness(id) == network.Connected {
			continue
		}
		path := filepath.Join(d.dir, e.Name())
		pi, err := readAddrFile(path, id)
		if err != nil {
			d.log.Debug("unreadable address file", "file", path, "err", err)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err = d.n.Connect(dctx, pi)
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		d.log.Debug("dial announced peer", "peer", id, "err", err)
		if info, serr := e.Info(); serr == nil && time.Since(info.ModTime()) > staleAfter {
			_ = os.Remove(path)
		}
	}
}

// readAddrFile reads one announced peer's addresses; every one must be a
// 127.0.0.1 address of that peer.
func readAddrFile(path string, id peer.ID) (peer.AddrInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAddrFile))
	if err != nil {
		return peer.AddrInfo{}, err
	}
	pi := peer.AddrInfo{ID: id}
	for _, line := range strings.Fields(string(b)) {
		m, err := ma.NewMultiaddr(line)
		if err != nil {
			return pi, err
		}
		got, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return pi, err
		}
		if got.ID != id {
			return pi, errors.New("address of another peer")
		}
		for _, a := range got.Addrs {
			if ip, err := a.ValueForProtocol(ma.P_IP4); err != nil || ip != "127.0.0.1" {
				return pi, errors.New("not a 127.0.0.1 address: " + a.String())
			}
			pi.Addrs = append(pi.Addrs, a)
		}
	}
	if len(pi.Addrs) == 0 {
		return pi, errors.New("no address")
	}
	return pi, nil
}

// Close stops scanning and removes the node's file. Idempotent.
func (d *localDir) Close() error {
	var err error
	d.once.Do(func() {
		d.cancel()
		<-d.done
		if rerr := os.Remove(d.file); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	})
	return err
}
