package flock

import (
	"errors"
	"path/filepath"
	"testing"
)

// A held lock refuses a second holder at once, and is free again once
// its file is closed.
func TestLock_BusyThenFree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(path); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Lock while held: %v, want ErrBusy", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Lock(path)
	if err != nil {
		t.Fatalf("Lock after the holder closed: %v", err)
	}
	_ = b.Close()
	if _, err := Lock(filepath.Join(t.TempDir(), "missing", "lock")); err == nil {
		t.Fatal("Lock in a missing directory succeeded")
	}
}
