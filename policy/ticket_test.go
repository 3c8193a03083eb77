package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

var errFakeInvalid = errors.New("fake: invalid ticket")

// fakeValidator understands tickets "exp:<unix seconds>", "never" and
// anything else as invalid, and records what it was offered.
type fakeValidator struct {
	class   catalog.TicketClass
	offered []string
	holders []peer.ID
	nows    []time.Time
}

func (f *fakeValidator) Class() catalog.TicketClass { return f.class }

func (f *fakeValidator) Validate(data []byte, holder peer.ID, now time.Time) (time.Time, error) {
	f.offered = append(f.offered, string(data))
	f.holders = append(f.holders, holder)
	f.nows = append(f.nows, now)
	s := string(data)
	switch {
	case s == "never":
		return Never, nil
	case strings.HasPrefix(s, "exp:"):
		n, err := strconv.ParseInt(strings.TrimPrefix(s, "exp:"), 10, 64)
		if err != nil {
			return time.Time{}, errFakeInvalid
		}
		if exp := time.Unix(n, 0); exp.After(now) {
			return exp, nil
		}
		return time.Time{}, ErrTicketExpired
	}
	return time.Time{}, errFakeInvalid
}

var (
	classA = catalog.IDFromString("class-a")
	classB = catalog.IDFromString("class-b")
)

func expTicket(c catalog.TicketClass, d time.Duration) catalog.Ticket {
	return catalog.Ticket{Class: c, Data: []byte("exp:" + strconv.FormatInt(t0.Add(d).Unix(), 10))}
}

func ticketOf(c catalog.TicketClass, s string) catalog.Ticket {
	return catalog.Ticket{Class: c, Data: []byte(s)}
}

func TestValidateTicket(t *testing.T) {
	holder := newTestPeer(t)
	cases := []struct {
		name    string
		tickets []catalog.Ticket
		want    time.Time
		wantErr error // also checked: wraps ErrNoValidTicket
		offered int
	}{
		{name: "one valid", tickets: []catalog.Ticket{expTicket(classA, time.Hour)}, want: t0.Add(time.Hour), offered: 1},
		{name: "latest expiry wins", tickets: []catalog.Ticket{
			expTicket(classA, time.Hour), expTicket(classA, 3*time.Hour), expTicket(classA, 2*time.Hour),
		}, want: t0.Add(3 * time.Hour), offered: 3},
		{name: "never beats any time", tickets: []catalog.Ticket{
			expTicket(classA, time.Hour), ticketOf(classA, "never"), expTicket(classA, 100*time.Hour),
		}, want: Never, offered: 3},
		{name: "invalid ones are skipped", tickets: []catalog.Ticket{
			ticketOf(classA, "bad"), expTicket(classA, -time.Hour), expTicket(classA, time.Hour),
		}, want: t0.Add(time.Hour), offered: 3},
		{name: "other classes are ignored", tickets: []catalog.Ticket{
			expTicket(classB, 5*time.Hour), ticketOf(classB, "never"), expTicket(classA, time.Hour),
		}, want: t0.Add(time.Hour), offered: 1},
		{name: "none of the class", tickets: []catalog.Ticket{ticketOf(classB, "never")}, wantErr: ErrNoValidTicket, offered: 0},
		{name: "no tickets", wantErr: ErrNoValidTicket},
		{name: "all invalid: the last error is wrapped", tickets: []catalog.Ticket{
			ticketOf(classA, "bad"), expTicket(classA, 0),
		}, wantErr: ErrTicketExpired, offered: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeValidator{class: classA}
			e := &catalog.Entry{PeerID: holder.id, Tickets: tc.tickets}
			got, err := ValidateTicket(e, f, t0)
			if len(f.offered) != tc.offered {
				t.Errorf("offered %q, want %d tickets", f.offered, tc.offered)
			}
			for i := range f.offered {
				if f.holders[i] != holder.id || !f.nows[i].Equal(t0) {
					t.Errorf("offered with holder %s at %v", f.holders[i], f.nows[i])
				}
			}
			if tc.wantErr != nil {
				if !errors.Is(err, ErrNoValidTicket) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v wrapping %v", err, ErrNoValidTicket, tc.wantErr)
				}
				if !strings.Contains(err.Error(), classA.Short()) {
					t.Errorf("error %q does not name the class", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("expiry %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidateTickets(t *testing.T) {
	holder := newTestPeer(t)
	cases := []struct {
		name       string
		tickets    []catalog.Ticket
		validators []catalog.TicketClass
		want       time.Time
		wantErr    bool
	}{
		{name: "no validators, no requirement", want: Never},
		{name: "no validators ignore tickets", tickets: []catalog.Ticket{ticketOf(classA, "bad")}, want: Never},
		{name: "earliest expiry wins", tickets: []catalog.Ticket{
			expTicket(classA, 3*time.Hour), expTicket(classB, time.Hour),
		}, validators: []catalog.TicketClass{classA, classB}, want: t0.Add(time.Hour)},
		{name: "each validator's best, then the earliest", tickets: []catalog.Ticket{
			expTicket(classA, 3*time.Hour), expTicket(classA, 5*time.Hour), expTicket(classB, time.Hour), expTicket(classB, 4*time.Hour),
		}, validators: []catalog.TicketClass{classA, classB}, want: t0.Add(4 * time.Hour)},
		{name: "never and a time: the time", tickets: []catalog.Ticket{
			ticketOf(classA, "never"), expTicket(classB, 2*time.Hour),
		}, validators: []catalog.TicketClass{classA, classB}, want: t0.Add(2 * time.Hour)},
		{name: "all never", tickets: []catalog.Ticket{
			ticketOf(classA, "never"), ticketOf(classB, "never"),
		}, validators: []catalog.TicketClass{classA, classB}, want: Never},
		{name: "one missing fails all", tickets: []catalog.Ticket{
			ticketOf(classA, "never"),
		}, validators: []catalog.TicketClass{classA, classB}, wantErr: true},
		{name: "one invalid fails all", tickets: []catalog.Ticket{
			ticketOf(classA, "never"), ticketOf(classB, "bad"),
		}, validators: []catalog.TicketClass{classA, classB}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var vs []TicketValidator
			for _, c := range tc.validators {
				vs = append(vs, &fakeValidator{class: c})
			}
			e := &catalog.Entry{PeerID: holder.id, Tickets: tc.tickets}
			for name, check := range map[string]func() (time.Time, error){
				"ValidateTickets":   func() (time.Time, error) { return ValidateTickets(e, vs, t0) },
				"Requirement.Check": func() (time.Time, error) { return Require(vs...).Check(e, t0) },
			} {
				got, err := check()
				if tc.wantErr {
					if !errors.Is(err, ErrNoValidTicket) || !got.IsZero() {
						t.Errorf("%s = %v, %v; want ErrNoValidTicket", name, got, err)
					}
					continue
				}
				if err != nil || !got.Equal(tc.want) {
					t.Errorf("%s = %v, %v; want %v", name, got, err, tc.want)
				}
			}
		})
	}
}

func TestLater(t *testing.T) {
	a, b := t0, t0.Add(time.Second)
	for _, tc := range []struct {
		x, y time.Time
		want bool
	}{
		{b, a, true}, {a, b, false}, {a, a, false},
		{Never, a, true}, {a, Never, false}, {Never, Never, false},
	} {
		if got := later(tc.x, tc.y); got != tc.want {
			t.Errorf("later(%v, %v) = %v", tc.x, tc.y, got)
		}
	}
}
