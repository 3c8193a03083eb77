package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

func newPeer(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// ticketFiles writes a libp2p-signed and a JWT ticket for holder in
// network "n", expiring at expires, and returns their paths by format.
func ticketFiles(t *testing.T, holder peer.ID, expires time.Time) map[string]string {
	t.Helper()
	dir := t.TempDir()
	issuer, _ := newPeer(t)
	st, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: holder, Network: catalog.IDFromString("n"), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := policy.EdDSASigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := policy.NewJWTBuilder(catalog.IDFromString("n"), sk).Issuer("ops").IssuedAt(expires.Add(-time.Hour)).ExpiresAt(expires).Build(holder)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{formatSigned: filepath.Join(dir, "signed.json"), formatJWT: filepath.Join(dir, "jwt.json")}
	if err := writeTicket(paths[formatSigned], formatSigned, st); err != nil {
		t.Fatal(err)
	}
	if err := writeTicket(paths[formatJWT], formatJWT, jt); err != nil {
		t.Fatal(err)
	}
	return paths
}

func inspect(t *testing.T, path string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"ticket", "inspect", path}, env(&out, &errOut, nil))
	return code, out.String(), errOut.String()
}

func TestTicketInspect_ValidAndExpired(t *testing.T) {
	_, holder := newPeer(t)
	jwtSub, err := policy.Subject(holder)
	if err != nil {
		t.Fatal(err)
	}
	nw := catalog.IDFromString("n").String()
	valid := ticketFiles(t, holder, time.Now().Add(time.Hour).Truncate(time.Second))
	expiredAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	expired := ticketFiles(t, holder, expiredAt)
	for _, format := range []string{formatSigned, formatJWT} {
		sub, cls, iss, sig := holder.String(), policy.SignedTicketClass.String(), "12D3KooW", "good"
		if format == formatJWT {
			sub, cls, iss, sig = jwtSub, policy.JWTClass.String(), "ops", "not checked"
		}
		code, out, errOut := inspect(t, valid[format])
		for _, want := range []string{"format      " + format, "subject     " + sub, "network     " + nw, "class       " + cls,
			"issuer      " + iss, "signature   " + sig, "valid now   yes"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s valid: output lacks %q:\n%s", format, want, out)
			}
		}
		if code != 0 || errOut != "" {
			t.Errorf("%s valid: exit %d, stderr %q", format, code, errOut)
		}
		code, out, errOut = inspect(t, expired[format])
		want := "valid now   no: expired at " + stamp(expiredAt)
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "expires     "+stamp(expiredAt)) || !strings.Contains(errOut, "expired") {
			t.Errorf("%s expired: exit %d, want 1 and %q; stdout:\n%s\nstderr: %s", format, code, want, out, errOut)
		}
	}
}

func TestTicketInspect_BadSignatureAndUnreadable(t *testing.T) {
	_, holder := newPeer(t)
	path := ticketFiles(t, holder, time.Now().Add(time.Hour))[formatSigned]
	tk, _, err := readTicketFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tk.Data[len(tk.Data)-1] ^= 1 // the envelope ends with its signature
	if err := writeTicket(path, formatSigned, tk); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := inspect(t, path); code != 1 || !strings.Contains(out, "valid now   no: bad signature") {
		t.Errorf("tampered ticket: exit %d, want 1 and a bad signature:\n%s", code, out)
	}
	if code, _, errOut := inspect(t, filepath.Join(t.TempDir(), "missing.json")); code != 2 || !strings.Contains(errOut, "missing.json") {
		t.Errorf("missing file: exit %d, want 2; stderr %q", code, errOut)
	}
}

func TestWarnTickets_WrongNetworkSubjectOrExpired(t *testing.T) {
	_, holder := newPeer(t)
	_, other := newPeer(t)
	nw := catalog.IDFromString("n")
	now := time.Now()
	for _, format := range []string{formatSigned, formatJWT} {
		path := ticketFiles(t, holder, now.Add(time.Hour))[format]
		tk, f, err := readTicketFile(path)
		if err != nil || f != format {
			t.Fatalf("readTicketFile = %q, %v; want format %q", f, err, format)
		}
		ti := inspectTicket(path, format, tk)
		for _, c := range []struct {
			name    string
			network catalog.NetworkID
			self    peer.ID
			now     time.Time
			want    string
		}{
			{"good", nw, holder, now, ""},
			{"network", catalog.IDFromString("other"), holder, now, "another network"},
			{"subject", nw, other, now, "another subject"},
			{"expired", nw, holder, now.Add(2 * time.Hour), "expired at"},
		} {
			var buf bytes.Buffer
			warnTickets(slog.New(slog.NewTextHandler(&buf, nil)), []ticketInfo{ti}, c.network, c.self, c.now)
			got := buf.String()
			switch {
			case c.want == "" && got != "":
				t.Errorf("%s %s: warned:\n%s", format, c.name, got)
			case c.want != "" && (!strings.Contains(got, "level=WARN") || !strings.Contains(got, c.want) ||
				!strings.Contains(got, "subject=") || !strings.Contains(got, "expires=") || !strings.Contains(got, path)):
				t.Errorf("%s %s: want one WARN with %q and the ticket's fields, got:\n%s", format, c.name, c.want, got)
			}
		}
	}
}

// A ticket without an expiry is not "valid now": every validator the node
// builds refuses it (policy.ErrTicketNoExpiry).
func TestTicketInspect_NeverExpiringIsAProblem(t *testing.T) {
	_, holder := newPeer(t)
	issuer, _ := newPeer(t)
	st, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: holder, Network: catalog.IDFromString("n")})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signed.json")
	if err := writeTicket(path, formatSigned, st); err != nil {
		t.Fatal(err)
	}
	code, out, _ := inspect(t, path)
	if code != 1 || !strings.Contains(out, "valid now   no: never expires") {
		t.Errorf("exit %d, want 1 and a never-expires problem:\n%s", code, out)
	}
}
