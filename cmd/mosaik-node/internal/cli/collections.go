package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/colls"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/policy"
)

// mapArgs is how many positional arguments each map command takes.
var mapArgs = map[string][]string{
	"put":   {"NAME", "KEY", "VALUE"},
	"get":   {"NAME", "KEY"},
	"del":   {"NAME", "KEY"},
	"list":  {"NAME"},
	"watch": {"NAME"},
}

// collFlags are the collection flags of run (--replicate) and of the map
// commands.
type collFlags struct {
	replicate   listFlag
	forceAfter  time.Duration
	issuers     listFlag
	ticketClass string
	timeout     time.Duration
	asJSON      bool
	valueFile   string
	value       string // read from valueFile by prepare
}

func (c *collFlags) register(fs *flag.FlagSet, cmd string) {
	if cmd == "run" {
		fs.Var(&c.replicate, "replicate", "host a writer replica of the collection `KIND:NAME`, e.g. map:orders; kinds map, set, vec, cell, once (string elements) and depq (int64 priorities, string keys and values); repeatable, durable with --data-dir")
		fs.DurationVar(&c.forceAfter, "force-new-epoch-after", 0, "recovery only (like etcd's --force-new-cluster): a --replicate collection that finds no leader within this `duration` restarts from this replica's state as a new epoch, this node its only voter; use it only when the other writers are gone for good (a group that lost a majority commits nothing by itself, since a partition looks the same); 0: never")
	} else {
		fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "give up (exit 1) when the map's leader cannot be reached, or the command not completed, within this")
		if cmd == "map list" {
			fs.BoolVar(&c.asJSON, "json", false, "print one JSON document")
		}
		if cmd == "map put" {
			fs.StringVar(&c.valueFile, "value-file", "", "take VALUE from this `file` ('-': standard input), all of it, UTF-8 text of at most 4 MiB, instead of the third argument (a command-line argument holds at most 128 KiB)")
		}
	}
	fs.Var(&c.issuers, "require-ticket-issuer", "the collections require a libp2p-signed ticket from this issuer `peer-id` of every replica (repeatable: all of them; part of the collection's identity, so every replica must give the same)")
	fs.StringVar(&c.ticketClass, "ticket-class", "", "class of the required ticket (default the libp2p-signed ticket class)")
	inGroup(fs, groupColls, "replicate", "force-new-epoch-after", "timeout", "json", "value-file", "require-ticket-issuer", "ticket-class")
}

// options returns the collection options of the flags: the ticket
// requirement and, with the fast profile, groups' fast consensus timings
// (part of a group's id: every replica must use the same profile).
func (c *collFlags) options(network catalog.NetworkID, profile string) ([]collections.Option, error) {
	var opts []collections.Option
	if profile == "fast" {
		opts = append(opts, collections.WithGroupOptions(groups.WithParams(groups.TestParams())))
	}
	for _, is := range c.issuers {
		id, err := peer.Decode(is)
		if err != nil {
			return nil, usagef("--require-ticket-issuer %q: %v", is, err)
		}
		v := policy.NewSignedTicketValidator(network, id)
		if c.ticketClass != "" {
			v = v.WithClass(catalog.IDFromString(c.ticketClass))
		}
		opts = append(opts, collections.WithRequireTicket(v))
	}
	if c.ticketClass != "" && len(c.issuers) == 0 {
		return nil, usagef("--ticket-class needs --require-ticket-issuer")
	}
	return opts, nil
}

// specs parses --replicate.
func (c *collFlags) specs() ([]colls.Spec, error) {
	out := make([]colls.Spec, 0, len(c.replicate))
	for _, r := range c.replicate {
		s, err := colls.ParseSpec(r)
		if err != nil {
			return nil, usagef("--replicate %v", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// checkMapArgs validates a map command's positional arguments (put
// takes no VALUE argument with --value-file).
func checkMapArgs(cmd string, pos []string, cf *collFlags) error {
	want := mapArgs[cmd[len("map "):]]
	if cmd == "map put" && cf.valueFile != "" {
		want = want[:2]
	}
	if len(pos) != len(want) {
		return usagef("%s needs %v, got %q", cmd, want, pos)
	}
	if pos[0] == "" {
		return usagef("%s: empty NAME", cmd)
	}
	return nil
}

// runMap runs a map command on node h: it joins the map as a client,
// does its work within --timeout (watch: its sync only, then until ctx
// ends), and leaves.
func runMap(ctx context.Context, h collections.Host, cmd string, pos []string, cf *collFlags, opts []collections.Option, out io.Writer, log *slog.Logger) error {
	name := pos[0]
	if cmd == "map put" && cf.valueFile != "" {
		pos = append(slices.Clone(pos), cf.value)
	}
	c, err := colls.OpenMap(h, name, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	tctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	failed := func(err error) error {
		if errors.Is(err, colls.ErrNoWriter) || errors.Is(err, colls.ErrUnconfirmed) {
			return fmt.Errorf("%s %s: %w (--timeout %v)", cmd, name, err, cf.timeout)
		}
		return fmt.Errorf("%s %s: %w", cmd, name, err)
	}
	switch cmd {
	case "map put", "map del":
		var v collections.Version
		if cmd == "map put" {
			v, err = c.Put(tctx, pos[1], pos[2])
		} else {
			v, err = c.Del(tctx, pos[1])
		}
		if err != nil {
			return failed(err)
		}
		log.Debug("committed", "map", name, "version", v, "leader", c.Leader())
		_, err = fmt.Fprintln(out, v)
		return err
	case "map get":
		v, err := c.Get(tctx, pos[1])
		if err != nil {
			return failed(err)
		}
		_, err = fmt.Fprintln(out, v)
		return err
	case "map list":
		l, err := c.List(tctx)
		if err != nil {
			return failed(err)
		}
		return l.Write(out, cf.asJSON)
	case "map watch":
		if _, err := c.Sync(tctx); err != nil {
			return failed(err)
		}
		return c.Watch(ctx, func(ch colls.Change) error {
			_, err := fmt.Fprintln(out, ch.String())
			return err
		})
	}
	return usagef("unknown command %q", cmd)
}

// maxValueFile bounds a value read by --value-file: a map entry travels in
// one raft entry, which a replica's bond frame (4 MiB by default) must hold
// with its key and framing; the map refuses (collections.ErrTooLarge) what
// does not fit.
const maxValueFile = 4 << 20

// readValue reads a whole --value-file (path, or "-" for in): UTF-8 text,
// since the map's values are strings. Its errors are usage errors: the
// command has not started its node yet.
func readValue(path string, in io.Reader) (string, error) {
	r := in
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", usagef("--value-file: %v", err)
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxValueFile+1))
	if err != nil {
		return "", usagef("--value-file %s: %v", path, err)
	}
	if len(b) > maxValueFile {
		return "", usagef("--value-file %s: more than %d bytes (a value must fit in one bond frame of the map's replicas)", path, maxValueFile)
	}
	if !utf8.Valid(b) {
		return "", usagef("--value-file %s: not UTF-8 text (the map's values are strings)", path)
	}
	return string(b), nil
}
