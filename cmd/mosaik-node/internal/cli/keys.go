package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/policy"
)

func registerStrictPerms(fs *flag.FlagSet, v *bool) {
	fs.BoolVar(v, "strict-perms", false, "refuse a key file that group or others may access (default: warn and use it)")
	inGroup(fs, groupIdentity, "strict-perms")
}

func keyOptions(strict bool, log *slog.Logger) []keyfile.Option {
	opts := []keyfile.Option{keyfile.WithLogger(log)}
	if strict {
		opts = append(opts, keyfile.WithStrictPerms())
	}
	return opts
}

func keygenCmd(env Env) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create an ed25519 key file (a node identity) and print its peer ID",
		Long: `Create an ed25519 key file, mode 0600, and print its peer ID. The file
must not exist. Give it to run, produce or consume with --key.`,
		Example: `  mosaik-node keygen --out node.key
  mosaik-node run --network orders-net --key node.key`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return usagef("keygen: --out is required")
			}
			id, err := keyfile.Create(out)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintln(env.Stdout, id)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "key `file` to create (must not exist)")
	inGroup(c.Flags(), groupIdentity, "out")
	return c
}

func idCmd(env Env) *cobra.Command {
	var key string
	var strict bool
	c := &cobra.Command{
		Use:     "id --key FILE",
		Short:   "Print the peer ID of a key file",
		Example: `  mosaik-node id --key node.key`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if key == "" {
				return usagef("id: --key is required")
			}
			id, err := keyfile.PeerID(key, keyOptions(strict, stderrLogger(env))...)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintln(env.Stdout, id)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "key `file`")
	registerStrictPerms(c.Flags(), &strict)
	inGroup(c.Flags(), groupIdentity, "key")
	return c
}

func ticketIssueCmd(env Env) *cobra.Command {
	var issuerKey, subject, network, class, out string
	var ttl time.Duration
	var strict bool
	c := &cobra.Command{
		Use:   "issue --issuer-key FILE --subject PEER --network NAME --out FILE",
		Short: "Issue a libp2p-signed ticket to a peer",
		Long: `Issue a libp2p-signed ticket: the issuer's key signs the subject's peer
ID, the network and class, and an expiry. The holder carries it with
run --ticket FILE; producers and consumers require it with
--require-ticket-issuer.`,
		Example: `  mosaik-node ticket issue --issuer-key issuer.key --subject 12D3KooW... \
      --network orders-net --ttl 720h --out holder.ticket
  mosaik-node ticket inspect holder.ticket`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			switch {
			case issuerKey == "" || subject == "" || network == "" || out == "":
				return usagef("ticket issue: --issuer-key, --subject, --network and --out are required")
			case ttl <= 0:
				return usagef("ticket issue: --ttl must be positive")
			}
			k, err := keyfile.Load(issuerKey, keyOptions(strict, stderrLogger(env))...)
			if err != nil {
				return usageError{err}
			}
			sub, err := peer.Decode(subject)
			if err != nil {
				return usagef("--subject %q: %v", subject, err)
			}
			st := policy.SignedTicket{Subject: sub, Network: catalog.IDFromString(network), Expires: time.Now().Add(ttl)}
			if class != "" {
				st.Class = catalog.IDFromString(class)
			}
			t, err := policy.IssueSignedTicket(k, st)
			if err != nil {
				return err
			}
			return writeTicket(out, formatSigned, t)
		},
	}
	fs := c.Flags()
	fs.StringVar(&issuerKey, "issuer-key", "", "the issuer's ed25519 key `file`")
	fs.StringVar(&subject, "subject", "", "`peer-id` of the ticket holder")
	fs.StringVar(&network, "network", "", "network the ticket is valid in")
	fs.StringVar(&class, "class", "", "ticket class (default the libp2p-signed ticket class)")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "validity from now")
	fs.StringVar(&out, "out", "", "ticket `file` to write")
	registerStrictPerms(fs, &strict)
	inGroup(fs, groupIdentity, "issuer-key", "subject", "network", "class", "ttl", "out")
	return c
}
