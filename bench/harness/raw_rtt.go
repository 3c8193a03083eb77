package harness

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// rawRTT is the physical floor of the groups latency row: a 64 B request
// and a 64 B response over one libp2p stream between two hosts of
// newHost (written and read directly, no framing, no buffering). A raft
// commit on the leader needs at least this: one append to a follower and
// its acknowledgement.
type rawRTT struct{}

const rawRTTProto protocol.ID = "/mosaik-bench/raw-rtt/1.0.0"

func (rawRTT) name() string    { return "raw-rtt" }
func (rawRTT) sequentialOnly() {}

type rawRTTStore struct {
	hosts    []host.Host
	st       network.Stream
	buf      []byte
	handlers tracker
	once     sync.Once
}

func (rawRTT) open(ctx context.Context, _ int) (_ replicated, err error) {
	hs, err := newHosts(2)
	if err != nil {
		return nil, err
	}
	s := &rawRTTStore{hosts: hs}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	hs[1].SetStreamHandler(rawRTTProto, func(st network.Stream) {
		if !s.handlers.enter() {
			_ = st.Reset()
			return
		}
		defer s.handlers.leave()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(st, buf); err != nil {
				_ = st.Reset()
				return
			}
			if _, err := st.Write(buf); err != nil {
				_ = st.Reset()
				return
			}
		}
	})
	if err := connectStar(ctx, hs); err != nil {
		return nil, err
	}
	if s.st, err = hs[0].NewStream(ctx, hs[1].ID(), rawRTTProto); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *rawRTTStore) put(_ context.Context, _ int, _ string, val []byte) error {
	if len(val) != 64 {
		return errors.New("raw-rtt: 64 B values only")
	}
	if _, err := s.st.Write(val); err != nil {
		return err
	}
	if s.buf == nil {
		s.buf = make([]byte, 64)
	}
	_, err := io.ReadFull(s.st, s.buf)
	return err
}

func (s *rawRTTStore) close() error {
	var err error
	s.once.Do(func() {
		if s.st != nil {
			_ = s.st.Reset()
		}
		s.hosts[1].RemoveStreamHandler(rawRTTProto)
		err = closeHosts(s.hosts) // resets the handler's stream
		s.handlers.shutdown()
	})
	return err
}
