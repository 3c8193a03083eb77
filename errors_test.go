package mosaik_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/streams"
)

// Every library package's closed error wraps mosaik.ErrClosed, wrapped
// again or not, while staying its own package's sentinel: one check answers
// "is it closed" whichever package said it.
func TestErrClosed_EveryPackageWrapsIt(t *testing.T) {
	for name, err := range map[string]error{
		"catalog.ErrClosed":         catalog.ErrClosed,
		"discovery.ErrClosed":       discovery.ErrClosed,
		"streams.ErrClosed":         streams.ErrClosed,
		"groups.ErrTerminated":      groups.ErrTerminated,
		"collections.ErrTerminated": collections.ErrTerminated,
	} {
		if !errors.Is(err, mosaik.ErrClosed) {
			t.Errorf("%s = %q does not wrap mosaik.ErrClosed", name, err)
		}
		if wrapped := fmt.Errorf("op: %w", err); !errors.Is(wrapped, mosaik.ErrClosed) || !errors.Is(wrapped, err) {
			t.Errorf("%s wrapped again: not matched by mosaik.ErrClosed or by itself", name)
		}
		if errors.Is(mosaik.ErrClosed, err) {
			t.Errorf("mosaik.ErrClosed matches %s: the package sentinel no longer narrows", name)
		}
	}
}
