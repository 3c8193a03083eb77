package keyfile_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
)

func TestCreate_WritesA0600Ed25519Key(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	id, err := keyfile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	k, err := keyfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := peer.IDFromPrivateKey(k); got != id {
		t.Errorf("loaded key is %s, created %s", got, id)
	}
	if _, err := keyfile.Create(path); err == nil {
		t.Error("Create overwrote an existing key file")
	}
}

func TestLoadOrCreate_IsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	a, err := keyfile.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keyfile.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equals(b) {
		t.Error("LoadOrCreate returned a different key the second time")
	}
}

func TestLoad_RefusesOtherKeysAndGarbage(t *testing.T) {
	dir := t.TempDir()
	sk, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := crypto.MarshalPrivateKey(sk)
	cases := map[string][]byte{
		"secp256k1": b,
		"garbage":   []byte("not a key"),
		"huge":      make([]byte, 1<<20),
	}
	for name, data := range cases {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := keyfile.Load(path); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
	if _, err := keyfile.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// TestCreate_AtomicAndExclusive: Create leaves only the key file in its
// directory, and never replaces an existing file.
func TestCreate_AtomicAndExclusive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	if _, err := keyfile.Create(path); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "node.key" {
		t.Fatalf("directory holds %v, want only node.key (a temporary file was left)", ents)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a failed Create changed the existing key")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a failed Create left %v", ents)
	}
	if _, err := keyfile.Create(filepath.Join(dir, "missing-dir", "k")); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

// TestLoad_Permissions: a key readable by group or others loads with a
// warning, or is refused under WithStrictPerms; a 0600 key is silent.
func TestLoad_Permissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix permission bits; Load does not judge them there")
	}
	path := filepath.Join(t.TempDir(), "node.key")
	if _, err := keyfile.Create(path); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := keyfile.Load(path, keyfile.WithLogger(log), keyfile.WithStrictPerms()); err != nil || logs.Len() != 0 {
		t.Fatalf("0600 key: err %v, log %q", err, logs.String())
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		logs.Reset()
		if _, err := keyfile.Load(path, keyfile.WithLogger(log)); err != nil {
			t.Fatalf("%04o without strict: %v", mode, err)
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), path) {
			t.Errorf("%04o: no warning naming the file: %q", mode, logs.String())
		}
		_, err := keyfile.Load(path, keyfile.WithLogger(log), keyfile.WithStrictPerms())
		if !errors.Is(err, keyfile.ErrInsecurePerms) {
			t.Errorf("%04o with strict: %v, want ErrInsecurePerms", mode, err)
		}
		if _, err := keyfile.PeerID(path, keyfile.WithStrictPerms()); !errors.Is(err, keyfile.ErrInsecurePerms) {
			t.Errorf("%04o: PeerID with strict: %v", mode, err)
		}
		if _, err := keyfile.LoadOrCreate(path, keyfile.WithStrictPerms()); !errors.Is(err, keyfile.ErrInsecurePerms) {
			t.Errorf("%04o: LoadOrCreate with strict: %v", mode, err)
		}
	}
}

func TestLoadOrCreate_LogsCreatedIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.key")
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	k, err := keyfile.LoadOrCreate(path, keyfile.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "level=INFO") || !strings.Contains(out, "created a new identity") ||
		!strings.Contains(out, path) || !strings.Contains(out, id.String()) {
		t.Fatalf("want one INFO line naming %s and %s, got:\n%s", path, id, out)
	}
	buf.Reset()
	if _, err := keyfile.LoadOrCreate(path, keyfile.WithLogger(log)); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("loading an existing key logged:\n%s", buf.String())
	}
}

func TestLoad_CorruptNamesFileAndFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corrupt.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := keyfile.LoadOrCreate(path)
	if !errors.Is(err, keyfile.ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "ed25519") {
		t.Fatalf("LoadOrCreate(corrupt) = %v; want ErrCorrupt naming the file and the format", err)
	}
}
