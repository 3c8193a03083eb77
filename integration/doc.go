// Package integration holds end-to-end tests that build cmd/mosaik-node
// and drive several processes on 127.0.0.1, as scripts and operators do.
package integration
