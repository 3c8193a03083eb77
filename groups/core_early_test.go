package groups

import (
	"fmt"
	"slices"
	"strings"
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

// SendPriority records as Send does: the order of the core's sends is
// what the tests check.
func (t orderTransport) SendPriority(p peer.ID, kind byte, body []byte) bool {
	return t.Send(p, kind, body)
}

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

// prioTransport records each raft message the core sends and whether it
// went with priority.
type prioTransport struct{ sent *[]string }

func (t prioTransport) record(prio bool, kind byte, body []byte) bool {
	var env pb.CoreRaft
	var m raftpb.Message
	if kind == kindRaft && proto.Unmarshal(body, &env) == nil && proto.Unmarshal(env.GetMessage(), &m) == nil {
		*t.sent = append(*t.sent, fmt.Sprintf("%s priority=%v", m.GetType(), prio))
	}
	return true
}
func (t prioTransport) Send(_ peer.ID, kind byte, body []byte) bool {
	return t.record(false, kind, body)
}
func (t prioTransport) SendPriority(_ peer.ID, kind byte, body []byte) bool {
	return t.record(true, kind, body)
}
func (prioTransport) Close() error { return nil }

// Appends keep their order; a heartbeat passes them only to a follower
// raft replicates to in its pipelined state: a probed follower's response
// would have the leader send its append again while the first is still
// on the way.
func TestCore_HeartbeatsPassAppendsOnlyToReplicatingFollowers(t *testing.T) {
	c := handCore(t, "a")
	for i := 0; i < c.p.ticks(c.p.BootstrapDelay) && c.state != raft.StateLeader; i++ {
		c.onTick()
		c.step(t)
	}
	if c.state != raft.StateLeader {
		t.Fatal("no leader")
	}
	b := raftID("b")
	c.byRaft[b] = "b"
	c.peers["b"] = &peerState{id: b, up: true}
	var sent, all []string
	c.tr = prioTransport{&sent}
	c.changeConf(raftpb.ConfChangeType_ConfChangeAddLearnerNode, b)
	for range 3 {
		c.step(t)
	}
	if !slices.Contains(c.conf.GetLearners(), b) {
		t.Fatalf("b is not a learner: %v", c.conf.GetLearners())
	}
	all = append(all, sent...)
	heartbeat := func() string {
		t.Helper()
		sent = nil
		for range c.p.ticks(c.p.Heartbeat) + 1 {
			c.onTick()
			c.step(t)
		}
		all = append(all, sent...)
		for _, s := range sent {
			if strings.HasPrefix(s, "MsgHeartbeat ") {
				return s
			}
		}
		t.Fatalf("no heartbeat in %v", sent)
		return ""
	}
	if got := heartbeat(); got != "MsgHeartbeat priority=false" {
		t.Fatalf("to a probed follower: %s", got)
	}
	_, li := c.lastPos()
	hs := c.rn.BasicStatus().HardState
	if err := c.rn.Step(&raftpb.Message{Type: raftpb.MessageType_MsgAppResp.Enum(), From: new(b), To: new(c.selfID),
		Term: new(hs.GetTerm()), Index: new(li)}); err != nil {
		t.Fatal(err)
	}
	c.step(t)
	if !c.replicating(b) {
		t.Fatal("b is not replicating after acknowledging the log")
	}
	if got := heartbeat(); got != "MsgHeartbeat priority=true" {
		t.Fatalf("to a replicating follower: %s", got)
	}
	if !slices.Contains(all, "MsgApp priority=false") || slices.Contains(all, "MsgApp priority=true") {
		t.Fatalf("appends: %v", all)
	}
}
