package groups

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestSnapshotWire_MsgSnapRoundTrip runs the path of a MsgSnap: the
// leader's store snapshot goes out as a descriptor, the follower fetches
// the bytes from the leader's cache and gets the leader's snapshot back.
func TestSnapshotWire_MsgSnapRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("state machine bytes "), 5000)
	orig := &raftpb.Snapshot{
		Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(77)), Term: new(uint64(5)), ConfState: confState(1, 2, 3)},
		Data:     data,
	}
	keep := proto.Clone(orig)
	cache := newSnapshotCache(0, 0)
	wire, desc, err := snapshotToWire(orig, "kv/v1", cache, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(orig, keep) {
		t.Fatal("snapshotToWire modified the store's snapshot")
	}
	if len(wire.Data) > snapshotDescriptorCap || desc.TotalSize != uint64(len(data)) || !cache.holds(desc.Anchor, time.Now()) {
		t.Fatalf("wire snapshot: %d bytes of data, descriptor %+v", len(wire.Data), desc)
	}

	n := newFakeNet()
	leader := n.add("leader", fixture{cache: cache}.honest())
	p := testFetchParams()
	got, err := snapshotFromWire(context.Background(), wire, "kv/v1", []peer.ID{leader}, n.fetch, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.snap, orig) || got.hash != desc.Hash || got.staged != nil {
		t.Fatal("the follower's snapshot differs from the leader's")
	}

	for name, tc := range map[string]struct {
		mut     func(*raftpb.Snapshot)
		machine string
		want    error
	}{
		"other machine": {func(*raftpb.Snapshot) {}, "chat/v1", errSnapshotDescriptor},
		"other index":   {func(s *raftpb.Snapshot) { s.Metadata.Index = new(uint64(78)) }, "kv/v1", errSnapshotDescriptor},
		"other term":    {func(s *raftpb.Snapshot) { s.Metadata.Term = new(uint64(6)) }, "kv/v1", errSnapshotDescriptor},
		"raw state":     {func(s *raftpb.Snapshot) { s.Data = data }, "kv/v1", errSnapshotDescriptor},
	} {
		s := proto.Clone(wire).(*raftpb.Snapshot)
		tc.mut(s)
		if _, err := snapshotFromWire(context.Background(), s, tc.machine, []peer.ID{leader}, n.fetch, p, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, _, err := snapshotToWire(&raftpb.Snapshot{}, "kv/v1", cache, time.Now()); !errors.Is(err, errSnapshotParams) {
		t.Errorf("empty snapshot to wire: %v", err)
	}
}
