package groups

import (
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// orderLog records, in one sequence, the raft messages a core sends and
// the saves of its store.
type orderLog struct{ events []string }

type orderTransport struct{ log *orderLog }

func (t orderTransport) Send(_ peer.ID, kind byte, body []byte) bool {
	var env pb.CoreRaft
	var m raftpb.Message
	if kind != kindRaft || proto.Unmarshal(body, &env) != nil || proto.Unmarshal(env.GetMessage(), &m) != nil {
		t.log.events = append(t.log.events, fmt.Sprintf("frame %#x", kind))
		return true
	}
	t.log.events = append(t.log.events, m.GetType().String())
	return true
}

func (orderTransport) Close() error { return nil }

type orderStore struct {
	logStore
	log *orderLog
}

func (s orderStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	s.log.events = append(s.log.events, "save")
	return s.logStore.Save(hs, snap, ents)
}

// A leader sends its appends before it saves the same Ready, so its fsync
// and its followers' overlap; votes, heartbeats and responses go after the
// save, and so does everything when the Ready changes the term or vote,
// or when the node does not lead.
func TestCore_LeaderSendsAppendsBeforeSaving(t *testing.T) {
	const term, vote = 3, 1
	app := &raftpb.Message{Type: raftpb.MessageType_MsgApp.Enum(), To: new(uint64(2)), Term: new(uint64(term))}
	hb := &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), To: new(uint64(2)), Term: new(uint64(term))}
	resp := &raftpb.Message{Type: raftpb.MessageType_MsgAppResp.Enum(), To: new(uint64(2)), Term: new(uint64(term))}
	ents := []*raftpb.Entry{{Term: new(uint64(term)), Index: new(uint64(1)), Data: []byte{0x01}}}
	hs := func(t, v uint64) *raftpb.HardState {
		return &raftpb.HardState{Term: new(t), Vote: new(v), Commit: new(uint64(0))}
	}
	for _, tc := range []struct {
		name  string
		state raft.StateType
		saved hardVote
		rd    raft.Ready
		want  []string
	}{
		{"leader, term and vote on disk", raft.StateLeader, hardVote{term, vote, true},
			raft.Ready{Entries: ents, Messages: []*raftpb.Message{hb, app, resp}},
			[]string{"MsgApp", "save", "MsgHeartbeat", "MsgAppResp"}},
		{"leader, only the commit index changed", raft.StateLeader, hardVote{term, vote, true},
			raft.Ready{HardState: hs(term, vote), Entries: ents, Messages: []*raftpb.Message{app}},
			[]string{"MsgApp", "save"}},
		{"leader, new term", raft.StateLeader, hardVote{term - 1, vote, true},
			raft.Ready{HardState: hs(term, vote), Entries: ents, Messages: []*raftpb.Message{app}},
			[]string{"save", "MsgApp"}},
		{"leader, nothing saved yet", raft.StateLeader, hardVote{},
			raft.Ready{HardState: hs(term, vote), Entries: ents, Messages: []*raftpb.Message{app}},
			[]string{"save", "MsgApp"}},
		{"leader, no entries", raft.StateLeader, hardVote{term, vote, true},
			raft.Ready{Messages: []*raftpb.Message{app}},
			[]string{"save", "MsgApp"}},
		{"follower", raft.StateFollower, hardVote{term, vote, true},
			raft.Ready{Entries: ents, Messages: []*raftpb.Message{resp}},
			[]string{"save", "MsgAppResp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := handCore(t, "a")
			log := &orderLog{}
			c.tr = orderTransport{log}
			c.store = orderStore{newMemStore(), log}
			c.byRaft[2] = "b"
			c.peers["b"] = &peerState{id: 2, up: true}
			c.state, c.saved = tc.state, tc.saved
			if err := c.saveAndSend(tc.rd); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(log.events, tc.want) {
				t.Fatalf("order %v, want %v", log.events, tc.want)
			}
			if !raft.IsEmptyHardState(tc.rd.HardState) && (c.saved != hardVote{term, vote, true}) {
				t.Fatalf("saved %+v after saving term %d vote %d", c.saved, term, vote)
			}
		})
	}
}
