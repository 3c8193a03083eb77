package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A fake network for fetchSnapshot: each holder is a function answering
// chunk requests; honest ones serve a snapshotCache through the wire
// encoding, the others misbehave in one way each.
type fakeHolder func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error)

type fakeNet struct {
	mu       sync.Mutex
	holders  map[peer.ID]fakeHolder
	requests map[peer.ID]int
	// inPlace: a chunk of the asked size is copied into dst and returned
	// there, as bondNet reads it (snapshotPlacingNet).
	inPlace bool
}

func newFakeNet() *fakeNet {
	return &fakeNet{holders: make(map[peer.ID]fakeHolder), requests: make(map[peer.ID]int)}
}

func (n *fakeNet) add(name string, h fakeHolder) peer.ID {
	id := peer.ID(name)
	n.holders[id] = h
	return id
}

func (n *fakeNet) count(id peer.ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requests[id]
}

func (n *fakeNet) fetch(ctx context.Context, p peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
	n.mu.Lock()
	n.requests[p]++
	h, inPlace := n.holders[p], n.inPlace
	n.mu.Unlock()
	if h == nil {
		return snapshotChunk{}, errors.New("no route to peer")
	}
	c, err := h(ctx, req)
	if err == nil && inPlace && dst != nil && len(c.Data) == len(dst) {
		copy(dst, c.Data)
		c.Data = dst
	}
	return c, err
}

// fixture is a snapshot, its descriptor and a cache holding it.
type fixture struct {
	data  []byte
	desc  snapshotDescriptor
	cache *snapshotCache
}

func newFixture(size int) fixture {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	a := snapshotAnchor{Index: 1000, Term: 4}
	c := newSnapshotCache(0, 0)
	c.put(a, data, time.Now())
	return fixture{data: data, desc: describeSnapshot(a, "test/v1", data), cache: c}
}

// honest serves the fixture through the encoded wire messages.
func (f fixture) honest() fakeHolder {
	return func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		return decodeSnapshotChunkReply(f.cache.serveEncoded(encodeSnapshotChunkRequest(req), time.Now()))
	}
}

// mutate serves honestly, then changes the chunk.
func (f fixture) mutate(m func(*snapshotChunk)) fakeHolder {
	h := f.honest()
	return func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		c, err := h(ctx, req)
		if err == nil {
			c.Data = append([]byte(nil), c.Data...)
			m(&c)
		}
		return c, err
	}
}

// vanishing serves n chunks, then its stream resets.
func (f fixture) vanishing(n int32) fakeHolder {
	h := f.honest()
	var served atomic.Int32
	return func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		if served.Add(1) > n {
			return snapshotChunk{}, errors.New("stream reset")
		}
		return h(ctx, req)
	}
}

// hanging never answers: it returns only when ctx ends.
func hanging(ctx context.Context, _ snapshotChunkRequest) (snapshotChunk, error) {
	<-ctx.Done()
	return snapshotChunk{}, ctx.Err()
}

func garbage(context.Context, snapshotChunkRequest) (snapshotChunk, error) {
	return decodeSnapshotChunkReply([]byte{0x0a, 0x05, 0xff})
}

func refusing(_ context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
	return decodeSnapshotChunkReply(encodeSnapshotRefusal(snapshotUnknownAnchor, "no snapshot at "+req.Anchor.String()))
}

func testFetchParams() snapshotFetchParams {
	p := defaultSnapshotFetchParams()
	// Honest fakes answer in microseconds, but a loaded machine under
	// -race stalled them past 150 ms.
	p.ChunkTimeout = testutil.Scale(600 * time.Millisecond)
	p.ChunkBytes = 4 << 10
	return p
}

// fetchBound is the most a transfer with n holders may take: each holder
// can cost at most one chunk timeout, plus slack for a loaded machine.
func fetchBound(p snapshotFetchParams, n int) time.Duration {
	return time.Duration(n+1)*p.ChunkTimeout + testutil.Scale(2*time.Second)
}

func TestFetchSnapshot_Holders(t *testing.T) {
	const size = 100_000 // 25 chunks of 4 KiB
	tests := []struct {
		name    string
		holders func(f fixture, n *fakeNet) []peer.ID
		wantErr error
		// wantInErr are substrings the error must name (each holder's
		// failure).
		wantInErr []string
	}{
		{"one honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("honest", f.honest())}
		}, nil, nil},
		{"timeout then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("hang", hanging), n.add("honest", f.honest())}
		}, nil, nil},
		{"wrong anchor then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("anchor", f.mutate(func(c *snapshotChunk) { c.Anchor.Term++ })), n.add("honest", f.honest())}
		}, nil, nil},
		{"wrong offset then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("offset", f.mutate(func(c *snapshotChunk) { c.Offset += 4096 })), n.add("honest", f.honest())}
		}, nil, nil},
		{"oversize then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("oversize", f.mutate(func(c *snapshotChunk) { c.Data = append(c.Data, 0) })), n.add("honest", f.honest())}
		}, nil, nil},
		{"short then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("short", f.mutate(func(c *snapshotChunk) { c.Data = c.Data[:len(c.Data)-1] })), n.add("honest", f.honest())}
		}, nil, nil},
		{"wrong total then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("total", f.mutate(func(c *snapshotChunk) { c.TotalSize++ })), n.add("honest", f.honest())}
		}, nil, nil},
		{"wrong last flag then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("last", f.mutate(func(c *snapshotChunk) { c.Last = !c.Last })), n.add("honest", f.honest())}
		}, nil, nil},
		{"garbage then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("garbage", garbage), n.add("honest", f.honest())}
		}, nil, nil},
		{"refusal then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("refuse", refusing), n.add("honest", f.honest())}
		}, nil, nil},
		{"vanishes mid-transfer then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("vanish", f.vanishing(7)), n.add("honest", f.honest())}
		}, nil, nil},
		{"honest one vanishes, another finishes", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("vanish", f.vanishing(3)), n.add("hang", hanging), n.add("honest", f.honest())}
		}, nil, nil},
		{"other bytes at the anchor then honest", func(f fixture, n *fakeNet) []peer.ID {
			other := newSnapshotCache(0, 0)
			other.put(f.desc.Anchor, bytes.Repeat([]byte{1}, len(f.data)), time.Now())
			serve := func(_ context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
				return decodeSnapshotChunkReply(other.serveEncoded(encodeSnapshotChunkRequest(req), time.Now()))
			}
			return []peer.ID{n.add("otherbytes", serve), n.add("honest", f.honest())}
		}, nil, nil},
		{"unknown peer then honest", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{peer.ID("gone"), n.add("honest", f.honest())}
		}, nil, nil},
		{"every holder fails", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("hang", hanging), n.add("garbage", garbage), n.add("refuse", refusing), n.add("vanish", f.vanishing(5))}
		}, errSnapshotNoHolder, []string{"no answer within", "malformed snapshot message", "unknown anchor", "stream reset"}},
		{"no holders", func(fixture, *fakeNet) []peer.ID { return nil }, errSnapshotNoHolder, []string{"no holders"}},
		{"consistent but wrong bytes", func(f fixture, n *fakeNet) []peer.ID {
			return []peer.ID{n.add("liar", f.mutate(func(c *snapshotChunk) {
				if len(c.Data) > 0 {
					c.Data[0] ^= 1
				}
			}))}
		}, errSnapshotHash, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, p := newFixture(size), newFakeNet(), testFetchParams()
			holders := tt.holders(f, n)
			var out bytes.Buffer
			start := time.Now()
			err := fetchSnapshot(context.Background(), f.desc, holders, n.fetch, &out, p)
			if took := time.Since(start); took > fetchBound(p, len(holders)) {
				t.Errorf("transfer took %v, over its bound %v", took, fetchBound(p, len(holders)))
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				// A holder is dropped at its first failure: it sees at
				// most the requests in flight to it then (vanishing
				// ones serve a few first).
				for id := range n.holders {
					limit := p.PerHolder
					if strings.HasPrefix(string(id), "vanish") || id == "honest" {
						continue
					}
					if got := n.count(id); got > limit {
						t.Errorf("holder %s got %d requests after failing, want at most %d", id, got, limit)
					}
				}
				if !bytes.Equal(out.Bytes(), f.data) {
					t.Fatalf("assembled %d bytes that differ from the %d of the snapshot", out.Len(), len(f.data))
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("fetch: %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// TestFetchSnapshot_LeaderLast checks the preference order: with two other
// holders able to fill the window, the leader (listed last) serves
// nothing; once they fail, it serves the rest.
func TestFetchSnapshot_LeaderLast(t *testing.T) {
	f, n, p := newFixture(100_000), newFakeNet(), testFetchParams()
	holders := []peer.ID{n.add("a", f.honest()), n.add("b", f.honest()), n.add("leader", f.honest())}
	var out bytes.Buffer
	if err := fetchSnapshot(context.Background(), f.desc, holders, n.fetch, &out, p); err != nil {
		t.Fatal(err)
	}
	if n.count("leader") != 0 || n.count("a")+n.count("b") != 25 {
		t.Fatalf("requests: a %d, b %d, leader %d; want the leader spared", n.count("a"), n.count("b"), n.count("leader"))
	}

	n = newFakeNet()
	holders = []peer.ID{n.add("a", f.vanishing(2)), n.add("b", f.vanishing(2)), n.add("leader", f.honest())}
	out.Reset()
	if err := fetchSnapshot(context.Background(), f.desc, holders, n.fetch, &out, p); err != nil || !bytes.Equal(out.Bytes(), f.data) {
		t.Fatalf("after the others vanished: %v", err)
	}
	if n.count("leader") < 21 {
		t.Fatalf("leader served %d requests, want the 21 the others left", n.count("leader"))
	}
}

// TestFetchSnapshot_IgnoresCtx checks that a fetch function that does not
// return at its deadline does not stall the transfer: the chunk moves on
// to the next holder at ChunkTimeout.
func TestFetchSnapshot_IgnoresCtx(t *testing.T) {
	f, n, p := newFixture(20_000), newFakeNet(), testFetchParams()
	release := make(chan struct{})
	var stuck atomic.Int32
	deaf := func(context.Context, snapshotChunkRequest) (snapshotChunk, error) {
		stuck.Add(1)
		defer stuck.Add(-1)
		<-release
		return snapshotChunk{}, errors.New("too late")
	}
	holders := []peer.ID{n.add("deaf", deaf), n.add("honest", f.honest())}
	var out bytes.Buffer
	start := time.Now()
	err := fetchSnapshot(context.Background(), f.desc, holders, n.fetch, &out, p)
	took := time.Since(start)
	close(release)
	testutil.Eventually(t, 5*time.Second, func() bool { return stuck.Load() == 0 }, "deaf fetches still running")
	if err != nil || !bytes.Equal(out.Bytes(), f.data) {
		t.Fatalf("fetch: %v", err)
	}
	if took > fetchBound(p, len(holders)) {
		t.Fatalf("transfer took %v, over its bound %v", took, fetchBound(p, len(holders)))
	}
}

func TestFetchSnapshot_EdgeCases(t *testing.T) {
	p := testFetchParams()
	t.Run("empty snapshot", func(t *testing.T) {
		f, n := newFixture(0), newFakeNet()
		var out bytes.Buffer
		if err := fetchSnapshot(context.Background(), f.desc, []peer.ID{n.add("h", f.honest())}, n.fetch, &out, p); err != nil || out.Len() != 0 {
			t.Fatalf("fetch: %v, %d bytes", err, out.Len())
		}
	})
	t.Run("size not a multiple of the chunk", func(t *testing.T) {
		f, n := newFixture(4<<10*3+1), newFakeNet()
		var out bytes.Buffer
		if err := fetchSnapshot(context.Background(), f.desc, []peer.ID{n.add("h", f.honest())}, n.fetch, &out, p); err != nil || !bytes.Equal(out.Bytes(), f.data) {
			t.Fatalf("fetch: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		f, n := newFixture(100_000), newFakeNet()
		ctx, cancel := context.WithCancel(context.Background())
		hang := func(c context.Context, r snapshotChunkRequest) (snapshotChunk, error) {
			cancel()
			return hanging(c, r)
		}
		err := fetchSnapshot(ctx, f.desc, []peer.ID{n.add("h", hang)}, n.fetch, &bytes.Buffer{}, p)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("fetch: %v, want context.Canceled", err)
		}
	})
	t.Run("writer fails", func(t *testing.T) {
		f, n := newFixture(100_000), newFakeNet()
		err := fetchSnapshot(context.Background(), f.desc, []peer.ID{n.add("h", f.honest())}, n.fetch, failWriter{}, p)
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("fetch: %v, want the writer's error", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		f, n := newFixture(10), newFakeNet()
		q := p
		q.MaxTotal = 9
		err := fetchSnapshot(context.Background(), f.desc, []peer.ID{n.add("h", f.honest())}, n.fetch, &bytes.Buffer{}, q)
		if !errors.Is(err, errSnapshotParams) || n.count("h") != 0 {
			t.Fatalf("fetch: %v after %d requests, want errSnapshotParams before any", err, n.count("h"))
		}
	})
	t.Run("bad params", func(t *testing.T) {
		f := newFixture(10)
		for _, q := range []snapshotFetchParams{{}, {ChunkTimeout: 1, ChunkBytes: snapshotMaxChunk + 1, Window: 1, PerHolder: 1}} {
			if err := fetchSnapshot(context.Background(), f.desc, nil, nil, &bytes.Buffer{}, q); !errors.Is(err, errSnapshotParams) {
				t.Fatalf("params %+v: %v", q, err)
			}
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

// A holder that joins a transfer late with the same bytes (hash and size)
// at another anchor, as members that snapshot again at a configuration
// change do, is asked for them at its own anchor. Asked at the
// descriptor's anchor it would refuse ("no snapshot at"), and with the
// first holder gone the transfer would fail.
func TestFetchSnapshot_LateHolderAtOtherAnchor(t *testing.T) {
	f, n, p := newFixture(100_000), newFakeNet(), testFetchParams()
	other := snapshotAnchor{Index: f.desc.Anchor.Index + 7, Term: f.desc.Anchor.Term}
	c := newSnapshotCache(0, 0)
	c.put(other, f.data, time.Now())
	a := n.add("a", f.vanishing(3))
	b := n.add("b", func(_ context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		return decodeSnapshotChunkReply(c.serveEncoded(encodeSnapshotChunkRequest(req), time.Now()))
	})
	more := make(chan holderAt, 1)
	more <- holderAt{id: b, anchor: other}
	var out bytes.Buffer
	if err := fetchSnapshotMore(context.Background(), f.desc, []peer.ID{a}, more, nil, n.fetch, &out, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), f.data) {
		t.Fatal("assembled bytes differ")
	}
	if n.count(b) == 0 {
		t.Fatal("the late holder served nothing")
	}
}

// The busy holder (the leader) is given one chunk at a time while another
// holder is usable, and all of them once it is the only one left.
func TestFetchSnapshot_BusyHolderServesLast(t *testing.T) {
	f, n, p := newFixture(100_000), newFakeNet(), testFetchParams() // 25 chunks
	var inflight, most atomic.Int32
	honest := f.honest()
	leader := n.add("leader", func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		k := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if k <= m || most.CompareAndSwap(m, k) {
				break
			}
		}
		return honest(ctx, req)
	})
	other := n.add("other", honest)
	busy := func(id peer.ID) bool { return id == leader }
	var out bytes.Buffer
	// The leader listed first, as the holder whose status started the
	// transfer is.
	if err := fetchSnapshotMore(context.Background(), f.desc, []peer.ID{leader, other}, nil, busy, n.fetch, &out, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), f.data) {
		t.Fatal("assembled bytes differ")
	}
	if most.Load() > 1 || n.count(other) <= n.count(leader) {
		t.Fatalf("the leader had up to %d chunks in flight and served %d of 25 (the other %d); want at most 1 at a time and fewer", most.Load(), n.count(leader), n.count(other))
	}

	// Alone, the leader serves PerHolder chunks at a time.
	n2, out2 := newFakeNet(), bytes.Buffer{}
	inflight.Store(0)
	most.Store(0)
	lone := n2.add("leader", n.holders[leader])
	if err := fetchSnapshotMore(context.Background(), f.desc, []peer.ID{lone}, nil, busy, n2.fetch, &out2, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out2.Bytes(), f.data) || n2.count(lone) != 25 {
		t.Fatalf("alone, the leader served %d of 25 chunks", n2.count(lone))
	}
}
