package groups

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

type nullTransport struct{}

func (nullTransport) Send(peer.ID, byte, []byte) bool         { return true }
func (nullTransport) SendPriority(peer.ID, byte, []byte) bool { return true }
func (nullTransport) Close() error                            { return nil }

// FuzzCoreFrame feeds arbitrary core frames from a bonded member into a
// bootstrapped core, driven by hand (no goroutine): no input may panic the
// process.
func FuzzCoreFrame(f *testing.F) {
	hb, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(raftID("b")), To: new(raftID("a")), Term: new(uint64(5))})
	seed, _ := proto.Marshal(&pb.CoreRaft{Epoch: 1, Message: hb})
	f.Add(byte(0), seed)
	st, _ := proto.Marshal(&pb.CoreStatus{Epoch: 2, IsLeader: true, LastTerm: 9, LastIndex: 9})
	f.Add(byte(1), st)
	fw, _ := proto.Marshal(&pb.CoreForward{Origin: raftID("b"), Seq: 1, Commands: [][]byte{{1}}})
	f.Add(byte(2), fw)
	f.Add(byte(3), []byte{0x08, 0x01})
	sf, _ := proto.Marshal(&pb.CoreSnapshotFailed{Anchor: &pb.CoreAnchor{Index: 9, Term: 2}, Reason: "no holder left"})
	f.Add(byte(5), sf)
	sa, _ := proto.Marshal(&pb.CoreStatus{Epoch: 1, Snapshots: []*pb.CoreAnchor{{Index: 9, Term: 2}}, Fetching: 9})
	f.Add(byte(1), sa)
	sh, _ := proto.Marshal(&pb.CoreStatus{Epoch: 1, Applied: 900, Snapshots: []*pb.CoreAnchor{{Index: 900, Term: 2, Hash: make([]byte, 32), Size: 1 << 20}, {Index: 800, Term: 2, Hash: []byte{1}}}})
	f.Add(byte(1), sh)
	f.Add(byte(4), []byte{0xff})
	lv, _ := proto.Marshal(&pb.CoreLeave{Epoch: 1})
	f.Add(byte(6), lv)
	f.Add(byte(7), lv)
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		s := &Service{self: "a"}
		cfg := defaultConfig()
		cfg.params = TestParams()
		cfg.tick = make(chan time.Time)
		c, err := newGroupCore(s, [32]byte{1}, cfg, &typedMachine[int64, struct{}, int64]{sm: &counter{}, codec: CBOR[int64]{}, log: s.logger()})
		if err != nil {
			t.Fatal(err)
		}
		c.tr = nullTransport{}
		c.bootstrap()
		c.epoch = 1
		if err := c.processReady(); err != nil {
			t.Fatal(err)
		}
		c.conf = c.rn.ApplyConfChange(&raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: new(raftID("b"))})
		c.onBond(bondEvent{p: "b", up: true, role: RoleWriter})
		c.onFrame(frame{from: "b", kind: firstCoreFrame + kind%8, body: body})
		_ = c.processReady() // a group-ending error is allowed, a panic is not
		c.failAll(ErrTerminated)
	})
}
