//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsClient is an HTTP client whose connections are made inside network
// namespace ns, so the test (in the root namespace) can read the status
// API of a process that listens only there. Nothing is routed between the
// namespaces: each socket is created in the target namespace.
func nsClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// This goroutine's thread switches namespace and never
			// unlocks: the runtime ends a locked thread with its
			// goroutine, so no other goroutine ever runs in ns.
			runtime.LockOSThread()
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				ch <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// localHTTP reads the status API of processes in the test's namespace.
var localHTTP = &http.Client{Timeout: 5 * time.Second}

// peerIDOf returns the peer ID at the end of a /p2p/ multiaddr.
func peerIDOf(addr string) string { return addr[strings.LastIndex(addr, "/")+1:] }

// getJSON fetches url into v with client c.
func getJSON(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// statusOf reads one process's status API inside its namespace.
type statusOf struct {
	t    *testing.T
	name string
	c    *http.Client
	base string // http://ip:port
}

// catalogPeers returns the remote peer IDs in the process's catalog, or
// nil when the API does not answer.
func (s *statusOf) catalogPeers() map[string]bool {
	var doc struct {
		Peers []struct {
			PeerID string `json:"peer_id"`
		} `json:"peers"`
	}
	if err := getJSON(s.c, s.base+"/api/catalog", &doc); err != nil {
		s.t.Logf("%s: %v", s.name, err)
		return nil
	}
	out := map[string]bool{}
	for _, p := range doc.Peers {
		out[p.PeerID] = true
	}
	return out
}

// streamsDoc is the part of /api/streams the tests read.
type streamsDoc struct {
	Producers []handleDoc `json:"producers"`
	Consumers []handleDoc `json:"consumers"`
}

type handleDoc struct {
	Totals struct {
		Datums, Gaps, Reconnects uint64
	} `json:"totals"`
	Replay *struct {
		Datums            int
		Replayed, Expired uint64
	} `json:"replay"`
	Channels []struct {
		PeerID string `json:"peer_id"`
		State  string `json:"state"`
		Gaps   uint64 `json:"gaps"`
		Error  string `json:"error"`
	} `json:"channels"`
}

func (s *statusOf) streams() (streamsDoc, bool) {
	var doc streamsDoc
	if err := getJSON(s.c, s.base+"/api/streams", &doc); err != nil {
		s.t.Logf("%s: %v", s.name, err)
		return doc, false
	}
	return doc, true
}

// connected returns the peers the handle's channels hold in state
// Connected.
func (h handleDoc) connected() map[string]bool {
	out := map[string]bool{}
	for _, ch := range h.Channels {
		if ch.State == "Connected" {
			out[ch.PeerID] = true
		}
	}
	return out
}
