package mosaik_test

import (
	"errors"
	"fmt"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/streams"
)

// One check tells "closed" apart, whichever package said it; the package's
// own sentinel narrows it down.
func Example_errClosed() {
	for _, err := range []error{
		fmt.Errorf("send: %w", streams.ErrClosed),
		fmt.Errorf("merge: %w", catalog.ErrClosed),
	} {
		fmt.Println(errors.Is(err, mosaik.ErrClosed), errors.Is(err, streams.ErrClosed))
	}
	// Output:
	// true true
	// true false
}
