package discovery_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// newHost starts a TCP-only libp2p host on 127.0.0.1 and closes it at the
// end of the test. Extra options come after the defaults.
func newHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(),
	}, opts...)...)
	if err != nil {
		t.Fatalf("libp2p.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// newPubSub starts gossipsub on h the way package node does
// (GossipSubOptions, so StrictNoSign and flood publish) with a 100 ms
// heartbeat, and stops it at the end of the test. Extra options come after
// the defaults.
func newPubSub(t testing.TB, h host.Host, opts ...pubsub.Option) *pubsub.PubSub {
	t.Helper()
	gp := pubsub.DefaultGossipSubParams()
	gp.HeartbeatInterval = 100 * time.Millisecond
	gp.HeartbeatInitialDelay = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, append(append(discovery.GossipSubOptions(),
		pubsub.WithGossipSubParams(gp),
		pubsub.WithLogger(testutil.Logger()),
	), opts...)...)
	if err != nil {
		cancel()
		t.Fatalf("NewGossipSub: %v", err)
	}
	t.Cleanup(cancel)
	return ps
}

// testNode is a host with gossipsub and a discovery service, all owned by
// the test and closed (service, pubsub, host) at its end.
type testNode struct {
	h   host.Host
	ps  *pubsub.PubSub
	svc *discovery.Service
}

type nodeConfig struct {
	params   discovery.Params
	noPubSub bool
	psOpts   []pubsub.Option
	svcOpts  []discovery.Option
}

type nodeOpt func(*nodeConfig)

// withParams edits the node's TestParams.
func withParams(f func(*discovery.Params)) nodeOpt { return func(c *nodeConfig) { f(&c.params) } }

// withoutPubSub starts no gossipsub (for DisableGossip).
func withoutPubSub() nodeOpt { return func(c *nodeConfig) { c.noPubSub = true } }

func withPubSubOpts(o ...pubsub.Option) nodeOpt {
	return func(c *nodeConfig) { c.psOpts = append(c.psOpts, o...) }
}

func withServiceOpts(o ...discovery.Option) nodeOpt {
	return func(c *nodeConfig) { c.svcOpts = append(c.svcOpts, o...) }
}

// newNode starts a discovery node of network nw on a fresh loopback host.
func newNode(t testing.TB, nw catalog.NetworkID, opts ...nodeOpt) *testNode {
	t.Helper()
	cfg := nodeConfig{params: discovery.TestParams()}
	for _, o := range opts {
		o(&cfg)
	}
	n := &testNode{h: newHost(t)}
	if !cfg.noPubSub {
		n.ps = newPubSub(t, n.h, cfg.psOpts...)
	}
	n.svc = startService(t, n.h, n.ps, nw, append([]discovery.Option{discovery.WithParams(cfg.params)}, cfg.svcOpts...)...)
	return n
}

// startService runs discovery.New with the test logger and closes the
// service at the end of the test.
func startService(t testing.TB, h host.Host, ps *pubsub.PubSub, nw catalog.NetworkID, opts ...discovery.Option) *discovery.Service {
	t.Helper()
	svc, err := discovery.New(h, ps, nw, append([]discovery.Option{
		discovery.WithParams(discovery.TestParams()), discovery.WithLogger(testutil.Logger()),
	}, opts...)...)
	if err != nil {
		t.Fatalf("discovery.New: %v", err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

func addrInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func connect(t testing.TB, from, to host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	if err := from.Connect(ctx, addrInfo(to)); err != nil {
		t.Fatalf("connect %s -> %s: %v", from.ID(), to.ID(), err)
	}
}

// knows reports whether svc's catalog holds p.
func knows(svc *discovery.Service, p peer.ID) bool {
	_, ok := svc.Catalog().Get(p)
	return ok
}

// hostKey is the private key of h's identity.
func hostKey(t testing.TB, h host.Host) crypto.PrivKey {
	t.Helper()
	k := h.Peerstore().PrivKey(h.ID())
	if k == nil {
		t.Fatal("host has no private key")
	}
	return k
}

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, id
}

// pbRecord is a libp2p record of any domain and payload type whose payload
// is a protobuf message: it lets a test seal what the catalog's own
// constructors refuse to (an entry of another peer, a forged departure).
type pbRecord struct {
	domain string
	codec  []byte
	msg    proto.Message
}

func (r *pbRecord) Domain() string                 { return r.domain }
func (r *pbRecord) Codec() []byte                  { return r.codec }
func (r *pbRecord) MarshalRecord() ([]byte, error) { return proto.Marshal(r.msg) }
func (r *pbRecord) UnmarshalRecord([]byte) error   { return errors.New("pbRecord is write-only") }

// seal signs m with sk into an envelope of the given domain and type.
func seal(t testing.TB, sk crypto.PrivKey, domain string, codec []byte, m proto.Message) []byte {
	t.Helper()
	env, err := record.Seal(&pbRecord{domain: domain, codec: codec, msg: m}, sk)
	if err != nil {
		t.Fatalf("record.Seal: %v", err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatalf("envelope marshal: %v", err)
	}
	return b
}

// entryPB builds a structurally valid wire entry.
func entryPB(id peer.ID, nw catalog.NetworkID, v catalog.Version, tags ...catalog.Tag) *pb.Entry {
	m := &pb.Entry{
		PeerId:   []byte(id),
		Network:  nw[:],
		Protocol: catalog.ProtocolVersion,
		Version:  &pb.Version{StartMs: v.StartMS, UpdateMs: v.UpdateMS},
	}
	for _, tg := range tags {
		m.Tags = append(m.Tags, tg[:])
	}
	return m
}

// sealEntry seals a valid entry of the key's own peer.
func sealEntry(t testing.TB, sk crypto.PrivKey, nw catalog.NetworkID, v catalog.Version, tags ...catalog.Tag) *catalog.SignedEntry {
	t.Helper()
	return sealEntryWith(t, sk, nw, v, func(e *catalog.Entry) { e.Tags = tags })
}

// sealEntryWith seals an entry of the key's own peer after edit.
func sealEntryWith(t testing.TB, sk crypto.PrivKey, nw catalog.NetworkID, v catalog.Version, edit func(*catalog.Entry)) *catalog.SignedEntry {
	t.Helper()
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	e := catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: v}
	edit(&e)
	se, err := catalog.Seal(e, sk)
	if err != nil {
		t.Fatalf("catalog.Seal: %v", err)
	}
	return se
}

func entryAnnouncement(t testing.TB, sealed []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: sealed}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func departureAnnouncement(t testing.TB, sealed []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Departure{Departure: sealed}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper rewrites the entry inside a sealed envelope with f and keeps the
// original signature, as a man in the middle would.
func tamper(t testing.TB, sealed []byte, f func(*pb.Entry)) []byte {
	t.Helper()
	var env recordpb.Envelope
	if err := proto.Unmarshal(sealed, &env); err != nil {
		t.Fatal(err)
	}
	var e pb.Entry
	if err := proto.Unmarshal(env.Payload, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	var err error
	if env.Payload, err = proto.Marshal(&e); err != nil {
		t.Fatal(err)
	}
	out, err := proto.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// openSync opens a raw catalog sync stream of network nw from h to p.
func openSync(t testing.TB, ctx context.Context, h host.Host, p peer.ID, nw catalog.NetworkID) network.Stream {
	t.Helper()
	st, err := h.NewStream(ctx, p, discovery.SyncProtocolV1(nw))
	if err != nil {
		t.Fatalf("open sync stream: %v", err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	return st
}

// rawSync runs one well-formed sync exchange (an empty request of network
// nw) over a raw stream and returns the response or the stream's error.
func rawSync(ctx context.Context, h host.Host, p peer.ID, nw catalog.NetworkID, maxSize int) (*pb.SyncResponse, error) {
	st, err := h.NewStream(ctx, p, discovery.SyncProtocolV1(nw))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := framer.WriteProto(st, &pb.SyncRequest{Network: nw[:]}); err != nil {
		_ = st.Reset()
		return nil, err
	}
	if err := st.CloseWrite(); err != nil {
		_ = st.Reset()
		return nil, err
	}
	var resp pb.SyncResponse
	if err := framer.ReadProto(bufio.NewReader(st), maxSize, &resp); err != nil {
		_ = st.Reset()
		return nil, err
	}
	return &resp, nil
}

// remoteReset reads st to the end. It returns the stream error when the
// remote reset the stream, and otherwise nil with whatever error the read
// ended with (nil for a clean end).
func remoteReset(st network.Stream) (*network.StreamError, error) {
	_, err := io.ReadAll(st)
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote {
		return se, err
	}
	return nil, err
}
