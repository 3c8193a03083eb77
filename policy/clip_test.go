package policy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/record"
)

// Errors quote at most maxQuoted bytes of what a ticket's sender chose:
// they are logged, cached in verdict caches and used as log-once keys, and
// a ticket is up to 8 KiB. A 4 KiB payload type or a 7 KiB alg made errors
// of 15 and 17 KB.
func TestErrors_QuoteTicketBytesClipped(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	alg := strings.Repeat("A", 6000)
	token := b64([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + b64([]byte(`{}`)) + ".c2ln"
	v := NewJWT(testNetwork, mustKey(t)(HS256Key(testSecret[:])))
	_, err := v.Validate([]byte(token), newTestPeer(t).id, t0)
	if !errors.Is(err, ErrTicketAlgorithm) {
		t.Fatalf("a 6 000-byte alg: %v, want ErrTicketAlgorithm", err)
	}
	if n := len(err.Error()); n > 400 {
		t.Errorf("a 6 000-byte alg made a %d-byte error", n)
	}

	p := newTestPeer(t)
	env, err := record.Seal(longCodec{bytes.Repeat([]byte("x"), 3000)}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenSignedTicket(data)
	if !errors.Is(err, ErrTicketMalformed) {
		t.Fatalf("a 3 000-byte payload type: %v, want ErrTicketMalformed", err)
	}
	if n := len(err.Error()); n > 400 {
		t.Errorf("a 3 000-byte payload type made a %d-byte error", n)
	}
	if got := clipAll([]string{alg, "b", "c", "d", "e"}); len(got) > 400 || !strings.Contains(got, "(5 in all)") {
		t.Errorf("clipAll: %d bytes: %.100s", len(got), got)
	}
}

// longCodec is a record with a payload type of its choosing.
type longCodec struct{ codec []byte }

func (r longCodec) Domain() string                 { return SignedTicketDomain }
func (r longCodec) Codec() []byte                  { return r.codec }
func (r longCodec) MarshalRecord() ([]byte, error) { return []byte("x"), nil }
func (r longCodec) UnmarshalRecord(b []byte) error { return nil }
