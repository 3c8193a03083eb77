package cli

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// FuzzParseConfig feeds arbitrary TOML and YAML documents to the config
// parser: it must never panic, and whatever it accepts has keys in flag
// form (no underscores).
func FuzzParseConfig(f *testing.F) {
	f.Add(true, []byte("network = \"x\"\ntags = \"a,b\"\nlisten = [\"/ip4/127.0.0.1/tcp/1\"]\n"))
	f.Add(false, []byte("network: x\nlog_level: debug\nbootstrap:\n  - /ip4/1.2.3.4/tcp/1/p2p/12D3KooW\n"))
	f.Add(true, []byte("[table]\nkey = 1\n"))
	f.Add(false, []byte("&a [*a, *a, *a]"))
	f.Add(false, []byte("{{{{"))
	f.Fuzz(func(t *testing.T, toml bool, data []byte) {
		ext := ".yaml"
		if toml {
			ext = ".toml"
		}
		if len(data) > maxConfigSize {
			return // loadConfig refuses these before parsing
		}
		m, err := parseConfig(ext, data)
		if err != nil {
			return
		}
		for k := range m {
			for _, c := range k {
				if c == '_' {
					t.Fatalf("key %q kept an underscore", k)
				}
			}
		}
	})
}

// FuzzInspectTicket feeds arbitrary ticket data, in both formats, to
// ticket inspect and the startup check: they must never panic, and a
// ticket that does not decode is never called valid.
func FuzzInspectTicket(f *testing.F) {
	f.Add(false, []byte("\x0a\x24\x08\x01\x12\x20"))
	f.Add(true, []byte("eyJhbGciOiJFZERTQSJ9.eyJleHAiOjF9.AA"))
	f.Add(true, []byte("a.b.c"))
	f.Fuzz(func(t *testing.T, isJWT bool, data []byte) {
		format := formatSigned
		if isJWT {
			format = formatJWT
		}
		ti := inspectTicket("f", format, catalog.Ticket{Class: policy.SignedTicketClass, Data: data})
		var out bytes.Buffer
		probs := ti.write(&out, time.Now(), catalog.IDFromString("n"), true)
		if ti.broken != nil && len(probs) == 0 {
			t.Fatalf("an undecodable ticket is valid:\n%s", out.String())
		}
		warnTickets(slog.New(slog.NewTextHandler(io.Discard, nil)), []ticketInfo{ti}, catalog.IDFromString("n"), "", time.Now())
	})
}
