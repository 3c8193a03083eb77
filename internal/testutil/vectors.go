package testutil

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// updateVectors rewrites the test vectors instead of checking them:
// go test -run TestVectors ./... -update-vectors (in the packages that
// define vectors).
var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors instead of comparing")

// Vector is one wire test vector: the bytes of a message and its decoded
// fields, for implementations in other languages (PROTOCOL.md section 23).
type Vector struct {
	Description string         `json:"description"`
	Section     string         `json:"section"` // of PROTOCOL.md
	Hex         string         `json:"hex"`
	Fields      map[string]any `json:"fields"`
}

// CheckVector compares v, with wire bytes b, to the file name under dir
// (testdata/vectors at the module root), or writes it with
// -update-vectors. A vector that differs from its file fails the test.
func CheckVector(t testing.TB, dir, name string, b []byte, v Vector) {
	t.Helper()
	v.Hex = hex.EncodeToString(b)
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	got = append(got, '\n')
	path := filepath.Join(dir, name+".json")
	if *updateVectors {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("vector %s: %v (run with -update-vectors to create it)", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("vector %s differs from %s: the wire changed (if on purpose, rerun with -update-vectors and bump the version concerned)\n got: %s\nwant: %s",
			name, path, got, want)
	}
}
