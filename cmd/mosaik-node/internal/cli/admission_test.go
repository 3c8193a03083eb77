package cli

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestNodeFlags_Admission: --admission-issuer closes the network, and a
// node starts only with its --admission-ticket.
func TestNodeFlags_Admission(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	issuer, holder := filepath.Join(dir, "issuer.key"), filepath.Join(dir, "holder.key")
	for _, k := range []string{issuer, holder} {
		if code := Main(context.Background(), []string{"keygen", "--out", k}, env(&out, &errOut, nil)); code != 0 {
			t.Fatal(errOut.String())
		}
	}
	holderID := strings.Fields(out.String())[1]
	issuerID, err := keyfile.PeerID(issuer)
	if err != nil {
		t.Fatal(err)
	}
	tk := filepath.Join(dir, "admission.json")
	args := []string{"ticket", "issue", "--issuer-key", issuer, "--subject", holderID, "--network", "closed", "--ttl", "1h", "--out", tk}
	if code := Main(context.Background(), args, env(&out, &errOut, nil)); code != 0 {
		t.Fatalf("ticket issue: %s", errOut.String())
	}
	start := func(tickets ...string) (*node.Node, error) {
		f := nodeFlags{network: "closed", key: holder, listen: listFlag{"/ip4/127.0.0.1/tcp/0"}, profile: "fast",
			admissionIssuers: listFlag{issuerID.String()}, admissionTickets: tickets}
		opts, err := f.options(testutil.Logger())
		if err != nil {
			return nil, err
		}
		return node.New(f.network, append(opts, node.WithoutDHT())...)
	}
	if n, err := start(); err == nil || !errors.Is(err, discovery.ErrNotAdmitted) {
		if n != nil {
			_ = n.Close()
		}
		t.Fatalf("without --admission-ticket: %v, want discovery.ErrNotAdmitted", err)
	}
	n, err := start(tk)
	if err != nil {
		t.Fatalf("with --admission-ticket: %v", err)
	}
	_ = n.Close()
}

// TestNodeFlags_EvictionIssuer: --eviction-issuer adds the eviction
// ticket check (node.WithEvictionTickets) and leaves the network open: a
// node without any ticket starts.
func TestNodeFlags_EvictionIssuer(t *testing.T) {
	issuer := filepath.Join(t.TempDir(), "issuer.key")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"keygen", "--out", issuer}, env(&out, &errOut, nil)); code != 0 {
		t.Fatal(errOut.String())
	}
	issuerID, err := keyfile.PeerID(issuer)
	if err != nil {
		t.Fatal(err)
	}
	f := nodeFlags{network: "open", listen: listFlag{"/ip4/127.0.0.1/tcp/0"}, profile: "fast"}
	plain, err := f.options(testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	f.evictionIssuers = listFlag{issuerID.String(), issuerID.String()}
	opts, err := f.options(testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != len(plain)+1 {
		t.Fatalf("--eviction-issuer gave %d options, want %d (one WithEvictionTickets)", len(opts), len(plain)+1)
	}
	n, err := node.New(f.network, append(opts, node.WithoutDHT())...)
	if err != nil {
		t.Fatalf("an open network with --eviction-issuer: %v", err)
	}
	_ = n.Close()
}
