package harness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// gossipsub: go-libp2p-pubsub on hosts of newHost, connected as a star
// (every subscriber host to the publisher host only, like mosaik's data
// path), default GossipSubParams and message signing (StrictSign), with
// flood publishing on (off by default in v0.19) so that the publisher
// sends every message straight to all N subscribers instead of to its
// D = 6 mesh peers only. In flow rows the subscription buffer, the
// per-peer outbound queue and the validation queue are raised from 32 to
// gossipRaised, so that the credit window cannot make them drop.

const (
	gossipTopic  = "mosaik-bench"
	gossipRaised = 2048
)

// gossipsubSystem: defaults tells the overload row to keep the default
// queues (32).
type gossipsubSystem struct{ defaults bool }

func (g gossipsubSystem) name() string {
	if g.defaults {
		return "gossipsub-default"
	}
	return "gossipsub"
}

type gossipSession struct {
	hosts  []host.Host
	topics []*pubsub.Topic
	subs   []*pubsub.Subscription
	drops  *dropTracer
	ctx    context.Context // receive loops
	cancel context.CancelFunc
	psStop context.CancelFunc // the routers' lifetime
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// dropTracer counts what gossipsub drops, for the record only: the
// application sees none of it on the Subscription API.
type dropTracer struct {
	undeliverable, droppedRPC, throttled atomic.Int64
}

func (*dropTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*dropTracer) OnClosedOutboundStream(peer.ID)                       {}
func (*dropTracer) Join(string)                                          {}
func (*dropTracer) Leave(string)                                         {}
func (*dropTracer) Graft(peer.ID, string)                                {}
func (*dropTracer) Prune(peer.ID, string)                                {}
func (*dropTracer) ValidateMessage(*pubsub.Message)                      {}
func (*dropTracer) DeliverMessage(*pubsub.Message)                       {}
func (*dropTracer) DuplicateMessage(*pubsub.Message)                     {}
func (*dropTracer) ThrottlePeer(peer.ID)                                 {}
func (*dropTracer) RecvRPC(*pubsub.RPC)                                  {}
func (*dropTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*dropTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (t *dropTracer) DropRPC(*pubsub.RPC, peer.ID)                       { t.droppedRPC.Add(1) }
func (t *dropTracer) UndeliverableMessage(*pubsub.Message)               { t.undeliverable.Add(1) }
func (t *dropTracer) RejectMessage(_ *pubsub.Message, reason string) {
	if reason == pubsub.RejectValidationThrottled || reason == pubsub.RejectValidationQueueFull {
		t.throttled.Add(1)
	}
}

func (g gossipsubSystem) routerOpts(tr *dropTracer, o openOpts) ([]pubsub.Option, []pubsub.SubOpt) {
	opts := []pubsub.Option{pubsub.WithFloodPublish(true), pubsub.WithLogger(quiet), pubsub.WithRawTracer(tr)}
	var sopts []pubsub.SubOpt
	if !(g.defaults && o.mode == modeOverload) {
		opts = append(opts, pubsub.WithPeerOutboundQueueSize(gossipRaised), pubsub.WithValidateQueueSize(gossipRaised))
		sopts = append(sopts, pubsub.WithBufferSize(gossipRaised))
	}
	return opts, sopts
}

func (g gossipsubSystem) open(ctx context.Context, o openOpts) (_ session, err error) {
	hs, err := newHosts(1 + o.subs)
	if err != nil {
		return nil, err
	}
	s := &gossipSession{hosts: hs, drops: &dropTracer{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	psCtx, psStop := context.WithCancel(context.Background())
	s.psStop = psStop
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	opts, sopts := g.routerOpts(s.drops, o)
	for i, h := range hs {
		ps, err := pubsub.NewGossipSub(psCtx, h, opts...)
		if err != nil {
			return nil, fmt.Errorf("gossipsub: %w", err)
		}
		t, err := ps.Join(gossipTopic)
		if err != nil {
			return nil, err
		}
		s.topics = append(s.topics, t)
		if i > 0 {
			sub, err := t.Subscribe(sopts...)
			if err != nil {
				return nil, err
			}
			s.subs = append(s.subs, sub)
		}
	}
	if err := connectStar(ctx, hs); err != nil {
		return nil, err
	}
	// Ready when the publisher knows every subscriber in the topic.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(s.topics[0].ListPeers()) < o.subs {
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("gossipsub: %d of %d subscribers known: %w", len(s.topics[0].ListPeers()), o.subs, wctx.Err())
		case <-time.After(2 * time.Millisecond): // polling the publisher's topic peers
		}
	}
	return s, nil
}

func (s *gossipSession) start(deliver func(int, []byte)) {
	for i, sub := range s.subs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				m, err := sub.Next(s.ctx)
				if err != nil {
					return
				}
				deliver(i, m.Data)
			}
		}()
	}
}

func (s *gossipSession) send(ctx context.Context, p []byte) error { return s.topics[0].Publish(ctx, p) }

// signals: gossipsub gives its application no loss signal; what a
// RawTracer sees is listed for the record (not visible).
func (s *gossipSession) signals() []signal {
	return []signal{
		{"RawTracer UndeliverableMessage", s.drops.undeliverable.Load(), true, false},
		{"RawTracer DropRPC", s.drops.droppedRPC.Load(), true, false},
		{"RawTracer throttled", s.drops.throttled.Load(), true, false},
	}
}

func (s *gossipSession) close() error {
	s.once.Do(func() {
		for _, sub := range s.subs {
			sub.Cancel()
		}
		s.cancel()
		s.wg.Wait()
		var errs []error
		for _, t := range s.topics {
			errs = append(errs, t.Close())
		}
		s.psStop()
		errs = append(errs, closeHosts(s.hosts))
		s.err = errors.Join(errs...)
	})
	return s.err
}

// firstDatum: the publisher has joined the topic and is connected to the
// subscriber host. Each operation subscribes; the publisher publishes as
// soon as it sees the subscriber join the topic (a topic event, the
// equivalent of mosaik's "wait until online"); the time runs from
// Subscribe to the first message. Between operations the subscription is
// cancelled and the publisher sees the peer leave (untimed).
func (g gossipsubSystem) firstDatum(ctx context.Context, ops int, sample func(time.Duration)) error {
	ss, err := g.open(ctx, openOpts{subs: 1})
	if err != nil {
		return err
	}
	s := ss.(*gossipSession)
	defer func() { _ = s.close() }()
	s.subs[0].Cancel()
	s.subs = nil
	ev, err := s.topics[0].EventHandler()
	if err != nil {
		return err
	}
	defer ev.Cancel()
	waitEvent := func(want pubsub.EventType) error {
		for {
			e, err := ev.NextPeerEvent(ctx)
			if err != nil {
				return err
			}
			if e.Type == want {
				return nil
			}
		}
	}
	if len(s.topics[0].ListPeers()) > 0 {
		if err := waitEvent(pubsub.PeerLeave); err != nil {
			return err
		}
	}
	_, sopts := g.routerOpts(s.drops, openOpts{})
	payload := make([]byte, 64)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(ops)*30*time.Second)
	defer cancel() // ends a publisher still waiting for a PeerJoin after a failure
	for range ops {
		pub := make(chan error, 1)
		go func() {
			if err := waitEvent(pubsub.PeerJoin); err != nil {
				pub <- err
				return
			}
			pub <- s.topics[0].Publish(ctx, payload)
		}()
		start := time.Now()
		sub, err := s.topics[1].Subscribe(sopts...)
		if err != nil {
			return err
		}
		_, err = sub.Next(ctx)
		if err == nil {
			sample(time.Since(start))
		}
		sub.Cancel()
		if perr := <-pub; err == nil {
			err = perr
		}
		if err != nil {
			return err
		}
		if err := waitEvent(pubsub.PeerLeave); err != nil {
			return err
		}
	}
	return nil
}
