package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream R3: three nats-server nodes embedded in this process,
// clustered over loopback routes, with a KV bucket of 3 replicas; every
// put is synchronous (it returns once the stream leader has the write
// acknowledged by a quorum). Clients connect to server 1. Memory storage
// is compared with in-memory groups, file storage with durable groups.
// This is the setup of ../shared/reference/anchors.md §1g.
//
// JetStream's file store does not fsync each write by default (it syncs
// every 2 minutes), while a groups data dir fsyncs every Ready before it
// acknowledges. syncAlways (nats-server's sync_interval: always) makes
// JetStream fsync each write too: the like-for-like durable baseline.
type jetstreamSystem struct{ file, syncAlways bool }

// jetstreamFsync is the fsync-per-write baseline, measured on the
// sequential rows only: it is the durable latency target's baseline, and
// no target judges durable throughput.
type jetstreamFsync struct{ jetstreamSystem }

func (jetstreamFsync) sequentialOnly() {}

func (j jetstreamSystem) name() string {
	switch {
	case j.file && j.syncAlways:
		return "jetstream-r3-file-sync"
	case j.file:
		return "jetstream-r3-file"
	}
	return "jetstream-r3-mem"
}

type jetstreamStore struct {
	servers []*server.Server
	conns   []*nats.Conn
	kvs     []jetstream.KeyValue // one per client connection
	dir     string
}

// freePorts reserves n loopback ports and releases them for the servers'
// cluster listeners (routes need to know every port up front).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (j jetstreamSystem) open(ctx context.Context, clients int) (_ replicated, err error) {
	s := &jetstreamStore{}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "mosaik-bench-js-"); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("js-%d", i+1),
			Host:       "127.0.0.1", Port: server.RANDOM_PORT,
			NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: fmt.Sprintf("%s/%d", s.dir, i+1),
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: p},
			Routes:  routes,
		}
		if j.syncAlways {
			opts.SyncAlways = true
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			return nil, fmt.Errorf("nats-server %d: %w", i+1, err)
		}
		go srv.Start()
		s.servers = append(s.servers, srv)
	}
	for i, srv := range s.servers {
		if !srv.ReadyForConnections(20 * time.Second) {
			return nil, fmt.Errorf("nats-server %d: not ready after 20 s", i+1)
		}
	}
	storage := jetstream.MemoryStorage
	if j.file {
		storage = jetstream.FileStorage
	}
	// The bucket can be created only once the JetStream meta group has a
	// leader; retry until then.
	conns := max(1, min(clients, 8))
	for i := range conns {
		nc, err := nats.Connect(s.servers[0].ClientURL(), nats.Name(fmt.Sprintf("client-%d", i)))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, nc)
	}
	js, err := jetstream.New(s.conns[0])
	if err != nil {
		return nil, err
	}
	cfg := jetstream.KeyValueConfig{Bucket: "bench", Replicas: 3, Storage: storage, History: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.CreateKeyValue(cctx, cfg)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("create KV bucket: %w", err)
		}
		time.Sleep(200 * time.Millisecond) // waiting for the meta leader: poll interval
	}
	for _, nc := range s.conns {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		kv, err := js.KeyValue(ctx, "bench")
		if err != nil {
			return nil, err
		}
		s.kvs = append(s.kvs, kv)
	}
	return s, nil
}

func (s *jetstreamStore) put(ctx context.Context, client int, key string, val []byte) error {
	_, err := s.kvs[client%len(s.kvs)].Put(ctx, key, val)
	return err
}

func (s *jetstreamStore) close() error {
	for _, nc := range s.conns {
		nc.Close()
	}
	for _, srv := range s.servers {
		srv.Shutdown()
	}
	for _, srv := range s.servers {
		srv.WaitForShutdown()
	}
	var err error
	if s.dir != "" {
		err = os.RemoveAll(s.dir)
	}
	return errors.Join(err)
}
