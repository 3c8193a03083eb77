// Package mosaik holds what every mosaik-go package shares: the errors a
// caller checks whichever package returned them. The runtime itself lives
// in node, catalog, streams, policy and (next) groups and collections.
package mosaik

import "errors"

// ErrClosed is wrapped by every package's closed error (catalog, discovery,
// streams, node, ...), so one check covers them all:
//
//	if errors.Is(err, mosaik.ErrClosed) { ... }
//
// A package's own sentinel (streams.ErrClosed, ...) still matches only
// that package's errors.
var ErrClosed = errors.New("closed")
