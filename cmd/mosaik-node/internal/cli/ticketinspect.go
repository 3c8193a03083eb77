package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// ticketInfo is what can be told of a ticket without a validator's
// configuration: its fields, and the faults anyone can see.
type ticketInfo struct {
	path, format string
	fileClass    catalog.TicketClass // the class the file (and so the entry) carries it under
	issuer       string
	subject      string
	subjectPeer  peer.ID // libp2p-signed only
	network      catalog.NetworkID
	class        catalog.TicketClass
	hasNetwork   bool
	hasClass     bool
	issued       time.Time
	notBefore    time.Time
	expires      time.Time
	signature    string // how the signature was judged
	broken       error  // undecodable or a bad signature: no field holds
}

// inspectTicket decodes a ticket of the given format. A libp2p-signed
// ticket carries its issuer's public key, so its signature is checked; a
// JWT's needs the issuer's key or secret, which only a validator has.
func inspectTicket(path, format string, t catalog.Ticket) ticketInfo {
	ti := ticketInfo{path: path, format: format, fileClass: t.Class}
	if format == formatJWT {
		ti.inspectJWT(t.Data)
		return ti
	}
	st, err := policy.OpenSignedTicket(t.Data)
	if err != nil {
		ti.broken = err
		ti.signature = "not checked: the ticket does not decode"
		if errors.Is(err, policy.ErrTicketSignature) {
			ti.signature = "bad"
		}
		return ti
	}
	ti.signature = "good (checked against the issuer key in the ticket)"
	ti.issuer, ti.subject, ti.subjectPeer = st.Issuer.String(), st.Subject.String(), st.Subject
	ti.network, ti.class, ti.hasNetwork, ti.hasClass = st.Network, st.Class, true, true
	ti.notBefore, ti.expires = st.NotBefore, st.Expires
	return ti
}

func (ti *ticketInfo) inspectJWT(data []byte) {
	ti.signature = "not checked: a JWT's signature needs the issuer's key, which only the validating peer has"
	if len(data) > policy.MaxJWTSize {
		ti.broken = fmt.Errorf("%w: %d bytes > %d", policy.ErrTicketMalformed, len(data), policy.MaxJWTSize)
		return
	}
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser(jwt.WithJSONNumber()).ParseUnverified(string(data), claims)
	if err != nil {
		ti.broken = fmt.Errorf("%w: %v", policy.ErrTicketMalformed, err)
		return
	}
	if alg, ok := tok.Header["alg"].(string); ok {
		ti.signature += " (alg " + alg + ")"
	}
	ti.issuer, _ = claims["iss"].(string)
	ti.subject, _ = claims["sub"].(string)
	if s, ok := claims[policy.JWTNetworkClaim].(string); ok && s != "" {
		ti.network, ti.hasNetwork = catalog.IDFromString(s), true
	}
	if s, ok := claims[policy.JWTClassClaim].(string); ok && s != "" {
		ti.class, ti.hasClass = catalog.IDFromString(s), true
	}
	ti.issued, ti.notBefore, ti.expires = jwtDate(claims["iat"]), jwtDate(claims["nbf"]), jwtDate(claims["exp"])
	for _, name := range []string{"iat", "nbf", "exp"} {
		if v, ok := claims[name]; ok && jwtDate(v).IsZero() {
			// Not "never expires": the validator refuses it as malformed.
			ti.broken = fmt.Errorf("%w: %s is not a NumericDate: %v", policy.ErrTicketMalformed, name, v)
			return
		}
	}
}

// jwtDate reads a NumericDate claim; the zero time when absent or not a
// number (the validator refuses the latter as malformed).
func jwtDate(v any) time.Time {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}
	}
	if i, err := n.Int64(); err == nil {
		return time.Unix(i, 0)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// problems lists why the ticket is not valid at now, whoever holds it.
func (ti ticketInfo) problems(now time.Time) []string {
	if ti.broken != nil {
		if errors.Is(ti.broken, policy.ErrTicketSignature) {
			return []string{"bad signature: " + ti.broken.Error()}
		}
		return []string{"malformed: " + ti.broken.Error()}
	}
	var out []string
	if !ti.hasNetwork {
		out = append(out, fmt.Sprintf("not bound to a network (no %s claim)", policy.JWTNetworkClaim))
	}
	if ti.hasClass && ti.class != ti.fileClass {
		out = append(out, fmt.Sprintf("another class: the file carries it as %s, the ticket is for %s", ti.fileClass, ti.class))
	}
	if !ti.notBefore.IsZero() && ti.notBefore.After(now) {
		out = append(out, "not yet valid: from "+stamp(ti.notBefore))
	}
	if ti.format == formatJWT && !ti.issued.IsZero() && ti.issued.After(now) {
		out = append(out, "not yet valid: issued in the future at "+stamp(ti.issued))
	}
	switch {
	case ti.expires.IsZero():
		// Every validator the node builds refuses a ticket without an
		// expiry (policy.ErrTicketNoExpiry).
		out = append(out, "never expires: validators refuse a ticket without an expiry")
	case !ti.expires.After(now):
		out = append(out, "expired at "+stamp(ti.expires))
	}
	return out
}

// problemsFor adds what makes the ticket useless to the node self in
// network: another network or another subject.
func (ti ticketInfo) problemsFor(now time.Time, network catalog.NetworkID, self peer.ID) []string {
	out := ti.problems(now)
	if ti.broken != nil {
		return out
	}
	if ti.hasNetwork && ti.network != network {
		out = append(out, fmt.Sprintf("another network: %s, this node's is %s", ti.network, network))
	}
	switch ti.format {
	case formatJWT:
		if want, err := policy.Subject(self); err == nil && ti.subject != want {
			out = append(out, fmt.Sprintf("another subject: %q, this node's is %q (%s)", ti.subject, want, self))
		}
	default:
		if ti.subjectPeer != self {
			out = append(out, fmt.Sprintf("another subject: %s, this node is %s", ti.subjectPeer, self))
		}
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fields are the ticket's fields as key/value pairs, for the inspect
// output and the startup warning alike.
func (ti ticketInfo) fields() [][2]string {
	f := [][2]string{{"file", ti.path}, {"format", ti.format}}
	if ti.broken == nil {
		nw, cl := "-", "-"
		if ti.hasNetwork {
			nw = ti.network.String()
		}
		if ti.hasClass {
			cl = ti.class.String()
			switch ti.class {
			case policy.SignedTicketClass:
				cl += " (the default libp2p-signed class)"
			case policy.JWTClass:
				cl += " (the default JWT class)"
			}
		}
		issued := stamp(ti.issued)
		if ti.format == formatSigned {
			issued = "not recorded in libp2p-signed tickets"
		}
		expires := stamp(ti.expires)
		if ti.expires.IsZero() {
			expires = "never (validators refuse it unless they allow non-expiring tickets)"
		}
		f = append(f, [][2]string{{"issuer", ti.issuer}, {"subject", ti.subject}, {"network", nw}, {"class", cl},
			{"issued", issued}, {"not_before", stamp(ti.notBefore)}, {"expires", expires}}...)
	}
	return append(f, [2]string{"signature", ti.signature})
}

func (ti ticketInfo) write(w io.Writer, now time.Time, network catalog.NetworkID, hasNetwork bool) []string {
	for _, kv := range ti.fields() {
		fmt.Fprintf(w, "%-11s %s\n", kv[0], kv[1])
	}
	probs := ti.problems(now)
	if hasNetwork && ti.broken == nil && ti.hasNetwork && ti.network != network {
		probs = append(probs, fmt.Sprintf("another network: want %s", network))
	}
	if len(probs) == 0 {
		fmt.Fprintln(w, "valid now   yes")
	} else {
		fmt.Fprintln(w, "valid now   no: "+strings.Join(probs, "; "))
	}
	return probs
}

// warnTickets reports at WARN, with its fields, every ticket the node is
// about to carry that other peers will refuse. The node still carries it:
// a clock or a validator may disagree, and the operator decides.
func warnTickets(log *slog.Logger, tickets []ticketInfo, network catalog.NetworkID, self peer.ID, now time.Time) {
	for _, ti := range tickets {
		probs := ti.problemsFor(now, network, self)
		if len(probs) == 0 {
			continue
		}
		attrs := []any{"problems", strings.Join(probs, "; ")}
		for _, kv := range ti.fields() {
			attrs = append(attrs, kv[0], kv[1])
		}
		log.Warn("ticket is not valid for this node; carrying it anyway", attrs...)
	}
}

func ticketInspectCmd(env Env) *cobra.Command {
	var network string
	c := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a ticket file's fields and whether it is valid now",
		Long: `Print a ticket file's format, issuer, subject, network, class and
times, and whether it is valid now. Exits 0 when valid, 1 when not
(expired, not yet valid, bad signature, malformed, another network with
--network), 2 for an unreadable file.`,
		Example: `  mosaik-node ticket inspect holder.ticket
  mosaik-node ticket inspect --network orders-net holder.ticket`,
		Args: exactArgs("ticket inspect", "FILE"),
		RunE: func(_ *cobra.Command, pos []string) error {
			t, format, err := readTicketFile(pos[0])
			if err != nil {
				return usageError{err}
			}
			ti := inspectTicket(pos[0], format, t)
			if probs := ti.write(env.Stdout, time.Now(), catalog.IDFromString(network), network != ""); len(probs) > 0 {
				return fmt.Errorf("ticket %s is not valid now: %s", pos[0], strings.Join(probs, "; "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&network, "network", "", "also check the ticket is for this network")
	inGroup(c.Flags(), groupNetwork, "network")
	return c
}
