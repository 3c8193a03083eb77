package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/policy"
)

func registerStrictPerms(fs *flag.FlagSet, v *bool) {
	fs.BoolVar(v, "strict-perms", false, "refuse a key file that group or others may access (default: warn and use it)")
}

func keyOptions(strict bool, log *slog.Logger) []keyfile.Option {
	opts := []keyfile.Option{keyfile.WithLogger(log)}
	if strict {
		opts = append(opts, keyfile.WithStrictPerms())
	}
	return opts
}

// stderrLogger is the logger of commands without --log-level: warnings
// only, as text.
func stderrLogger(env Env) *slog.Logger {
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func cmdKeygen(args []string, env Env) error {
	fs := newFlagSet("keygen", env)
	out := fs.String("out", "", "key file to create (must not exist)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("keygen: --out is required")
	}
	id, err := keyfile.Create(*out)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintln(env.Stdout, id)
	return nil
}

func cmdID(args []string, env Env) error {
	fs := newFlagSet("id", env)
	key := fs.String("key", "", "key file")
	var strict bool
	registerStrictPerms(fs, &strict)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *key == "" {
		return usagef("id: --key is required")
	}
	id, err := keyfile.PeerID(*key, keyOptions(strict, stderrLogger(env))...)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintln(env.Stdout, id)
	return nil
}

func cmdTicketIssue(args []string, env Env) error {
	fs := newFlagSet("ticket issue", env)
	issuerKey := fs.String("issuer-key", "", "the issuer's ed25519 key file")
	subject := fs.String("subject", "", "peer ID of the ticket holder")
	network := fs.String("network", "", "network the ticket is valid in")
	class := fs.String("class", "", "ticket class (default the libp2p-signed ticket class)")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity from now")
	out := fs.String("out", "", "ticket file to write")
	var strict bool
	registerStrictPerms(fs, &strict)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *issuerKey == "" || *subject == "" || *network == "" || *out == "":
		return usagef("ticket issue: --issuer-key, --subject, --network and --out are required")
	case *ttl <= 0:
		return usagef("ticket issue: --ttl must be positive")
	}
	k, err := keyfile.Load(*issuerKey, keyOptions(strict, stderrLogger(env))...)
	if err != nil {
		return usageError{err}
	}
	sub, err := peer.Decode(*subject)
	if err != nil {
		return usagef("--subject %q: %v", *subject, err)
	}
	st := policy.SignedTicket{Subject: sub, Network: catalog.IDFromString(*network), Expires: time.Now().Add(*ttl)}
	if *class != "" {
		st.Class = catalog.IDFromString(*class)
	}
	t, err := policy.IssueSignedTicket(k, st)
	if err != nil {
		return err
	}
	return writeTicket(*out, formatSigned, t)
}
