package groups

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The chunk counts of a transfer name each holder that answered and sum
// to the chunks of the snapshot: two honest holders share a transfer, a
// holder that hangs serves nothing and does not appear.
func TestServedChunks_CountsEachHolder(t *testing.T) {
	const size = 100_000 // 25 chunks of 4 KiB
	f, n, p := newFixture(size), newFakeNet(), testFetchParams()
	holders := []peer.ID{n.add("hang", hanging), n.add("first", f.honest()), n.add("second", f.honest())}
	var served servedChunks
	var out bytes.Buffer
	if err := fetchSnapshot(context.Background(), f.desc, holders, served.wrap(n.fetch), &out, p); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !bytes.Equal(out.Bytes(), f.data) {
		t.Fatal("assembled bytes differ from the snapshot")
	}
	total := 0
	for id, k := range served.n {
		if id == "hang" {
			t.Errorf("the hanging holder is counted with %d chunks", k)
		}
		total += k
	}
	if want := (size + int(p.ChunkBytes) - 1) / int(p.ChunkBytes); total != want {
		t.Errorf("counted %d chunks in all (%v), the snapshot has %d", total, served.n, want)
	}
	if served.n["first"] == 0 || served.n["second"] == 0 {
		t.Errorf("both honest holders should serve: %v", served.n)
	}
	// Each holder by its short ID text, in ID order.
	want := []string{peer.ID("first").ShortString() + "=" + strconv.Itoa(served.n["first"]), peer.ID("second").ShortString() + "=" + strconv.Itoa(served.n["second"])}
	if peer.ID("second") < peer.ID("first") {
		want[0], want[1] = want[1], want[0]
	}
	if s := served.String(); s != strings.Join(want, " ") {
		t.Errorf("String() = %q, want %q", s, strings.Join(want, " "))
	}
	if v := served.LogValue().String(); v != served.String() {
		t.Errorf("LogValue() = %q, String() = %q", v, served.String())
	}
	var none *servedChunks
	if none.String() != "" || none.LogValue().String() != "" {
		t.Error("a nil count prints something")
	}
}
