package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun_KeygenThenID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--out", path}, &out, &errOut); err != nil {
		t.Fatalf("keygen: %v (%s)", err, errOut.String())
	}
	created := strings.TrimSpace(out.String())
	out.Reset()
	if err := run(context.Background(), []string{"id", "--key", path}, &out, &errOut); err != nil {
		t.Fatalf("id: %v", err)
	}
	if got := strings.TrimSpace(out.String()); got != created || !strings.HasPrefix(got, "12D3KooW") {
		t.Fatalf("id printed %q, keygen printed %q", got, created)
	}
}

func TestRun_Errors(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"keygen"}, {"run"}, {"id", "--key", "/does/not/exist"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
		if out.Len() != 0 {
			t.Errorf("%q: wrote %q to stdout; errors belong on stderr", args, out.String())
		}
	}
}
