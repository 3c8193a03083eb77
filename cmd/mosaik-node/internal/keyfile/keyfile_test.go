package keyfile_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
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
