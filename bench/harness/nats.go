package harness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS core: nats-server embedded in this process on 127.0.0.1 (random
// port, no logging, default limits), one nats.go connection for the
// publisher and one per subscriber, asynchronous subscriptions (the
// callback runs on the subscription's own goroutine). In flow rows the
// client's pending limits are lifted (-1), in the overload row they stay
// at the defaults (500 000 messages / 64 MiB) unless the variant pins them
// to 2048 messages, the bound mosaik keeps per consumer (producer queue
// 1024 + consumer buffer 1024).

const natsSubject = "mosaik.bench"

type natsSystem struct{ pending int } // pending: message limit in the overload row (0: default)

func (n natsSystem) name() string {
	if n.pending > 0 {
		return fmt.Sprintf("nats-%dk", n.pending/1024)
	}
	return "nats"
}

type natsSession struct {
	srv     *server.Server
	pub     *nats.Conn
	conns   []*nats.Conn
	subs    []*nats.Subscription
	started chan struct{}
	deliver func(int, []byte)
	slow    atomic.Int64 // ErrSlowConsumer callbacks
	once    sync.Once
}

func startNATS() (*server.Server, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats-server: not ready after 10 s")
	}
	return srv, nil
}

func (n natsSystem) open(_ context.Context, o openOpts) (_ session, err error) {
	srv, err := startNATS()
	if err != nil {
		return nil, err
	}
	s := &natsSession{srv: srv, started: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	if s.pub, err = nats.Connect(srv.ClientURL(), nats.Name("pub")); err != nil {
		return nil, err
	}
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			s.slow.Add(1)
		}
	})
	for i := range o.subs {
		c, err := nats.Connect(srv.ClientURL(), nats.Name(fmt.Sprintf("sub-%d", i)), onErr)
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, c)
		sub, err := c.Subscribe(natsSubject, func(m *nats.Msg) {
			<-s.started
			s.deliver(i, m.Data)
		})
		if err != nil {
			return nil, err
		}
		switch {
		case o.mode == modeFlow:
			err = sub.SetPendingLimits(-1, -1)
		case n.pending > 0:
			err = sub.SetPendingLimits(n.pending, -1)
		}
		if err != nil {
			return nil, err
		}
		s.subs = append(s.subs, sub)
		if err := c.Flush(); err != nil { // the server has the subscription
			return nil, err
		}
	}
	return s, nil
}

func (s *natsSession) start(deliver func(int, []byte)) {
	s.deliver = deliver
	close(s.started)
}

func (s *natsSession) send(_ context.Context, p []byte) error { return s.pub.Publish(natsSubject, p) }

func (s *natsSession) signals() []signal {
	var dropped int64
	for _, sub := range s.subs {
		if d, err := sub.Dropped(); err == nil {
			dropped += int64(d)
		}
	}
	return []signal{{"ErrSlowConsumer callbacks", s.slow.Load(), true, true}, {"Subscription.Dropped", dropped, true, true}}
}

func (s *natsSession) close() error {
	s.once.Do(func() {
		select {
		case <-s.started:
		default:
			s.deliver = func(int, []byte) {}
			close(s.started)
		}
		for _, c := range s.conns {
			c.Close()
		}
		if s.pub != nil {
			s.pub.Close()
		}
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	})
	return nil
}

// firstDatum: the subscriber's connection is open; each operation
// subscribes to a fresh subject while the publisher publishes to it every
// ~50 µs (core NATS has no signal that a subscriber is present, so a
// publisher that must reach the first subscriber repeats); the time runs
// from Subscribe to the first message.
func (n natsSystem) firstDatum(ctx context.Context, ops int, sample func(time.Duration)) error {
	srv, err := startNATS()
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	pub, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer pub.Close()
	sc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer sc.Close()
	payload := make([]byte, 64)
	for k := range ops {
		subj := fmt.Sprintf("mosaik.first.%d", k)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = pub.Publish(subj, payload)
				time.Sleep(50 * time.Microsecond) // the republishing interval
			}
		}()
		start := time.Now()
		sub, err := sc.SubscribeSync(subj)
		if err == nil {
			var d time.Duration
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			} else {
				d = 30 * time.Second
			}
			if _, err = sub.NextMsg(d); err == nil {
				sample(time.Since(start))
			}
			_ = sub.Unsubscribe()
		}
		close(stop)
		wg.Wait()
		if err != nil {
			return err
		}
	}
	return nil
}
