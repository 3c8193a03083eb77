package catalog

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// admitClass is the ticket class of the test admission.
var admitClass = IDFromString("catalog-test/admission")

// testAdmission admits entries holding an admitClass ticket whose data is
// the expiry in Unix ms ("0": never); it counts its checks.
type testAdmission struct{ checks atomic.Int64 }

func (a *testAdmission) Check(e *Entry, now time.Time) (time.Time, error) {
	a.checks.Add(1)
	for _, d := range e.TicketsOf(admitClass) {
		text := string(d)
		if nbf, rest, ok := strings.Cut(text, ","); ok {
			ms, err := strconv.ParseInt(nbf, 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			if now.Before(time.UnixMilli(ms)) {
				return time.Time{}, errors.New("not valid yet")
			}
			text = rest
		}
		ms, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		if ms == 0 {
			return time.Time{}, nil
		}
		if exp := time.UnixMilli(ms); exp.After(now) {
			return exp, nil
		}
		return time.Time{}, errors.New("expired")
	}
	return time.Time{}, errors.New("no admission ticket")
}

func admitTicket(exp time.Time) func(*Entry) {
	return func(e *Entry) {
		ms := int64(0)
		if !exp.IsZero() {
			ms = exp.UnixMilli()
		}
		e.Tickets = append(e.Tickets, Ticket{Class: admitClass, Data: []byte(strconv.FormatInt(ms, 10))})
	}
}

func TestStore_Admission(t *testing.T) {
	s, _ := newTestStore(t)
	adm := &testAdmission{}
	s.SetAdmission(adm)
	a, b, c := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	drift := TestParams().MaxClockDrift
	tests := []struct {
		name string
		e    *SignedEntry
		want error
	}{
		{"no ticket", a.seal(t, testNetwork, ver(t0, t0), nil), ErrUnadmitted},
		{"expired ticket", b.seal(t, testNetwork, ver(t0, t0), admitTicket(t0.Add(-drift-time.Second))), ErrUnadmitted},
		{"valid ticket", c.seal(t, testNetwork, ver(t0, t0), admitTicket(time.Time{})), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Open (the gossip validator's path), Check and Merge agree.
			_, oerr := s.Open(tt.e.Bytes(), t0)
			cerr := s.Check(tt.e, t0)
			_, merr := s.Merge(tt.e, t0)
			for _, err := range []error{oerr, cerr, merr} {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Open, Check, Merge = %v, %v, %v; want %v", oerr, cerr, merr, tt.want)
				}
			}
			if tt.want != nil && (!IsRejected(merr) || Reason(merr) != "unadmitted") {
				t.Fatalf("refusal %v: rejected %v, reason %q; want rejected, unadmitted", merr, IsRejected(merr), Reason(merr))
			}
		})
	}
	if got := s.Snapshot().Len(); got != 1 {
		t.Fatalf("catalog holds %d peers, want 1", got)
	}
	// One verdict per (peer, version), however many paths bring it: a
	// refusal asks at now and at now ± MaxClockDrift (nearAdmission), an
	// admission at now alone.
	if got := adm.checks.Load(); got != 3+3+1 {
		t.Fatalf("admission checked %d times, want 7 (one verdict per entry version)", got)
	}
}

// TestStore_AdmissionEnds: an entry is purged the instant its admission
// ends, well before it would go stale.
func TestStore_AdmissionEnds(t *testing.T) {
	p := TestParams()
	p.PurgeAfter = time.Minute
	s, _ := newTestStoreWith(t, p)
	s.SetAdmission(&testAdmission{})
	a, b := newTestPeer(t), newTestPeer(t)
	ends := t0.Add(10 * time.Second)
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, t0), admitTicket(ends)), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(b.seal(t, testNetwork, ver(t0, t0), admitTicket(time.Time{})), t0); err != nil {
		t.Fatal(err)
	}
	if next, ok := s.NextExpiry(); !ok || !next.Equal(ends) {
		t.Fatalf("NextExpiry = %v, %v; want %v", next, ok, ends)
	}
	if gone := s.Purge(ends.Add(-time.Millisecond)); len(gone) != 0 {
		t.Fatalf("purged %d before the admission ended", len(gone))
	}
	gone := s.Purge(ends)
	if len(gone) != 1 || gone[0].Entry.PeerID != a.id {
		t.Fatalf("purged %v at the end of a's admission, want a alone", gone)
	}
	if _, ok := s.Snapshot().Get(b.id); !ok {
		t.Fatal("b, admitted for good, was purged")
	}
	// A heartbeat of a with the same, now ended, ticket is refused:
	// ignored while the end is within the clock drift, rejected after.
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, ends), admitTicket(ends)), ends); !errors.Is(err, ErrAdmissionWindow) {
		t.Fatalf("heartbeat as the admission ended: %v, want ErrAdmissionWindow", err)
	}
	late := ends.Add(p.MaxClockDrift + time.Second)
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, late), admitTicket(ends)), late); !errors.Is(err, ErrUnadmitted) {
		t.Fatalf("heartbeat after the admission ended: %v, want ErrUnadmitted", err)
	}
	// The open catalog takes it again.
	s.SetAdmission(nil)
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, ends.Add(time.Second)), nil), ends.Add(time.Second)); err != nil {
		t.Fatalf("open catalog: %v", err)
	}
}

// admitFunc is an Admission from a function.
type admitFunc func(e *Entry, now time.Time) (time.Time, error)

func (f admitFunc) Check(e *Entry, now time.Time) (time.Time, error) { return f(e, now) }

// A verdict of an admission check that SetAdmission replaced while it ran
// is not kept for the new check: the next judgement of the same entry
// version asks the new one. (It was cached, and answered for the new
// check.)
func TestStore_AdmissionVerdictOfAReplacedCheckIsNotKept(t *testing.T) {
	s, _ := newTestStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once // a refusal also asks at now ± MaxClockDrift
	s.SetAdmission(admitFunc(func(*Entry, time.Time) (time.Time, error) {
		once.Do(func() { close(entered) })
		<-release
		return time.Time{}, errors.New("refused by the old check")
	}))
	e := newTestPeer(t).seal(t, testNetwork, ver(t0, t0), nil)
	done := make(chan error, 1)
	go func() { _, err := s.admit(e, t0); done <- err }()
	<-entered
	s.SetAdmission(admitFunc(func(*Entry, time.Time) (time.Time, error) { return time.Time{}, nil }))
	close(release)
	if err := <-done; !errors.Is(err, ErrUnadmitted) {
		t.Fatalf("the judgement under way: %v, want the old check's refusal", err)
	}
	if _, err := s.admit(e, t0); err != nil {
		t.Fatalf("judged again after SetAdmission: %v, want the new check's admission", err)
	}
}

// A refusal is judged again after admitRetry: it may hold only for a while
// (a ticket not valid yet: its issuer's clock is ahead of ours). Kept for
// the whole entry version, it refused that version network-wide until the
// peer's next heartbeat. An admission stays cached.
func TestStore_AdmissionRefusalIsJudgedAgain(t *testing.T) {
	p := TestParams()
	p.MaxClockDrift = time.Minute
	s, _ := newTestStoreWith(t, p)
	from := t0.Add(time.Second)
	var checks atomic.Int64
	s.SetAdmission(admitFunc(func(_ *Entry, now time.Time) (time.Time, error) {
		checks.Add(1)
		if now.Before(from) {
			return time.Time{}, errors.New("ticket not valid yet")
		}
		return time.Time{}, nil
	}))
	a := newTestPeer(t)
	e := a.seal(t, testNetwork, ver(t0, t0), nil)
	if _, err := s.Merge(e, t0); !errors.Is(err, ErrAdmissionWindow) {
		t.Fatalf("before the ticket is valid: %v, want ErrAdmissionWindow (valid within the drift)", err)
	}
	first := checks.Load()
	if err := s.Check(e, t0.Add(admitRetry/2)); !errors.Is(err, ErrAdmissionWindow) {
		t.Fatalf("within admitRetry: %v, want the kept refusal", err)
	}
	if n := checks.Load(); n != first {
		t.Fatalf("%d checks within admitRetry, want none (the refusal kept)", n-first)
	}
	if _, err := s.Merge(e, t0.Add(5*time.Second)); err != nil {
		t.Fatalf("the same version once the ticket is valid: %v", err)
	}
	b := newTestPeer(t).seal(t, testNetwork, ver(t0, t0.Add(5*time.Second)), nil)
	n := checks.Load()
	for _, at := range []time.Duration{5 * time.Second, 5*time.Second + admitRetry + admitRetry/2} {
		if err := s.Check(b, t0.Add(at)); err != nil {
			t.Fatalf("an admitted entry: %v", err)
		}
	}
	if got := checks.Load() - n; got != 1 {
		t.Errorf("an admitted version was judged %d times, want once (kept)", got)
	}
}

// TestStore_AdmissionNearTheClockIsIgnored: an entry whose admission
// starts or ended within MaxClockDrift of now is refused but not rejected
// (ErrAdmissionWindow): a relay whose clock is that far from ours may have
// taken it honestly, and a rejection would cost it gossip's penalty.
// Beyond the drift the refusal is a rejection (ErrUnadmitted).
func TestStore_AdmissionNearTheClockIsIgnored(t *testing.T) {
	s, _ := newTestStore(t)
	s.SetAdmission(&testAdmission{})
	drift := TestParams().MaxClockDrift
	window := func(nbf, exp time.Time) func(*Entry) {
		return func(e *Entry) {
			e.Tickets = append(e.Tickets, Ticket{Class: admitClass, Data: []byte(strconv.FormatInt(nbf.UnixMilli(), 10) + "," + strconv.FormatInt(exp.UnixMilli(), 10))})
		}
	}
	far := t0.Add(time.Hour)
	tests := []struct {
		name   string
		ticket func(*Entry)
		want   error
	}{
		{"ended a second ago", admitTicket(t0.Add(-time.Second)), ErrAdmissionWindow},
		{"ended beyond the drift", admitTicket(t0.Add(-drift - time.Second)), ErrUnadmitted},
		{"starts in a second", window(t0.Add(time.Second), far), ErrAdmissionWindow},
		{"starts beyond the drift", window(t0.Add(drift+time.Second), far), ErrUnadmitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestPeer(t).seal(t, testNetwork, ver(t0, t0), tt.ticket)
			_, oerr := s.Open(e.Bytes(), t0)
			_, merr := s.Merge(e, t0)
			for _, err := range []error{oerr, merr} {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Open, Merge = %v, %v; want %v", oerr, merr, tt.want)
				}
			}
			if rejected := tt.want == ErrUnadmitted; IsRejected(merr) != rejected {
				t.Fatalf("%v: rejected %v, want %v", merr, IsRejected(merr), rejected)
			}
			if tt.want == ErrAdmissionWindow && Reason(merr) != "admission_window" {
				t.Fatalf("Reason = %q, want admission_window", Reason(merr))
			}
		})
	}
	// A cached admission whose end passes: within the drift ignored,
	// beyond it rejected.
	ends := t0.Add(time.Second)
	at := t0.Add(3 * time.Second) // an update time not too far ahead at t0, fresh at the end
	e := newTestPeer(t).seal(t, testNetwork, ver(t0, at), admitTicket(ends))
	if err := s.Check(e, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(e, ends.Add(time.Second)); !errors.Is(err, ErrAdmissionWindow) {
		t.Fatalf("a second after its admission ended: %v, want ErrAdmissionWindow", err)
	}
	if err := s.Check(e, ends.Add(drift+time.Millisecond)); !errors.Is(err, ErrUnadmitted) {
		t.Fatalf("beyond the drift after its admission ended: %v, want ErrUnadmitted", err)
	}
}
