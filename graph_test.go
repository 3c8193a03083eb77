package mosaik_test

import (
	"strings"
	"testing"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// The package graph of STYLE.md has no upward arrow: the shared framer and
// this package's errors sit at the bottom and import nothing of ours;
// streams and groups are siblings; collections builds on groups, never on
// node; nothing below node imports it. The pure core (catalog, policy) has
// its own, stricter import tests.
func TestImports_NoUpwardArrow(t *testing.T) {
	const m = "github.com/mosaik-go/mosaik"
	for _, tc := range []struct {
		pkg       string
		forbidden []string // packages (with their subpackages) pkg must not depend on; m+"/" is all of ours
	}{
		{m, []string{m + "/"}},
		{m + "/internal/framer", []string{m + "/"}},
		{m + "/streams", []string{m + "/groups", m + "/collections", m + "/node", m + "/catalog/discovery", m + "/cmd"}},
		{m + "/groups", []string{m + "/streams", m + "/collections", m + "/node", m + "/catalog/discovery", m + "/cmd"}},
		{m + "/collections", []string{m + "/node", m + "/streams", m + "/catalog/discovery", m + "/cmd"}},
		{m + "/catalog/discovery", []string{m + "/streams", m + "/groups", m + "/collections", m + "/node", m + "/cmd"}},
		{m + "/node", []string{m + "/collections", m + "/cmd"}},
	} {
		for _, d := range testutil.Deps(t, tc.pkg) {
			if d == tc.pkg || !strings.HasPrefix(d, m) {
				continue
			}
			for _, f := range tc.forbidden {
				if under(d, f) {
					t.Errorf("%s depends on %s", tc.pkg, d)
				}
			}
		}
	}
}

// under reports whether package d is f or below it; f ending in "/" names
// only what is below it.
func under(d, f string) bool {
	if strings.HasSuffix(f, "/") {
		return strings.HasPrefix(d, f)
	}
	return d == f || strings.HasPrefix(d, f+"/")
}
