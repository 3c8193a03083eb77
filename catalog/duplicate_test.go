package catalog

import (
	"errors"
	"testing"
	"time"
)

func TestStore_CheckLocalCopy(t *testing.T) {
	s, l := newTestStore(t)
	first := l.Current().Bytes()
	now := t0.Add(time.Second)
	se, err := l.Refresh(now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocal(se); err != nil {
		t.Fatal(err)
	}
	later, err := NewLocal(l.key, testNetwork, t0.Add(2*time.Second), nil) // a second process, started later
	if err != nil {
		t.Fatal(err)
	}
	earlier, err := NewLocal(l.key, testNetwork, t0.Add(-time.Minute), nil) // an earlier run of ours
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewLocal(newTestPeer(t).key, testNetwork, t0.Add(2*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	future, err := NewLocal(l.key, testNetwork, now.Add(TestParams().MaxClockDrift+time.Minute), nil) // dated beyond the drift
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), later.Current().Bytes()...)
	forged[len(forged)-1] ^= 1
	tests := []struct {
		name   string
		data   []byte
		dup    bool
		err    error
		checks uint64 // signatures verified
	}{
		{name: "our current entry", data: se.Bytes()},
		{name: "our older version", data: first},
		{name: "an earlier run", data: earlier.Current().Bytes()},
		{name: "another process, newer", data: later.Current().Bytes(), dup: true, checks: 1},
		{name: "a forged newer copy", data: forged, err: ErrBadSignature, checks: 1},
		{name: "a newer copy from beyond the drift", data: future.Current().Bytes(), err: ErrClockDrift},
		{name: "another peer", data: other.Current().Bytes()},
		{name: "garbage", data: []byte("not an entry"), err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.SignatureChecks()
			err := s.CheckLocalCopy(tt.data, now)
			if got := s.SignatureChecks() - before; got != tt.checks {
				t.Fatalf("%d signatures verified, want %d", got, tt.checks)
			}
			if tt.err != nil && !IsRejected(err) {
				t.Fatalf("%v is not a rejection", err)
			}
			var de *DuplicateIdentityError
			switch {
			case tt.dup:
				if !errors.As(err, &de) || !errors.Is(err, ErrDuplicateIdentity) {
					t.Fatalf("want a DuplicateIdentityError, got %v", err)
				}
				if de.Peer != l.Current().Entry.PeerID || de.Ours != se.Entry.Version || de.Theirs != later.Current().Entry.Version {
					t.Fatalf("error fields: %+v", de)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("want %v, got %v", tt.err, err)
				}
			case err != nil:
				t.Fatalf("want nil, got %v", err)
			}
		})
	}
	// The path that reaches CheckLocalCopy: Open refuses the entry as local.
	if _, err := s.Open(later.Current().Bytes(), now); !errors.Is(err, ErrLocal) {
		t.Fatalf("Open of the other process's entry: want ErrLocal, got %v", err)
	}
}
