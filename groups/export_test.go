package groups

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// Exports for the tests of package groups_test, which run groups on
// services built by node (the internal tests cannot import node: it
// imports groups).

// CounterGroup is a group of the counter machine.
type CounterGroup = Group[int64, struct{}, int64]

// JoinCounter joins the counter group with TestParams (closed at test end).
func JoinCounter(t testing.TB, s *Service, opts ...Option) *CounterGroup {
	t.Helper()
	return joinCounter(t, s, opts...)
}

// WeakSum is the counter's value on this node (a weak query).
func WeakSum(t testing.TB, g *CounterGroup) int64 {
	t.Helper()
	return weak(t, g)
}

// Voters is the number of voters in the configuration g's node knows.
func Voters[C, Q, R any](g *Group[C, Q, R]) int { return voters(g) }

// SettledVoters is g's number of voters once its configuration is not
// joint, else -1 (see settledVoters).
func SettledVoters[C, Q, R any](g *Group[C, Q, R]) int { return settledVoters(g) }

// RunLinearizableIsolatedLeader runs the porcupine check of the kv machine
// on svcs while partition isolates the leader, until heal.
func RunLinearizableIsolatedLeader(t *testing.T, svcs []*Service, partition func(leader, rest []peer.ID), heal func()) {
	c := newLinclusterOn(t, svcs)
	c.runIsolatedLeader(t, partition, heal, faultPhase)
}

// StoredLog opens the WAL store of group id under a data dir and returns
// its last index and the committed index of its hard state.
func StoredLog(dir string, id catalog.ID) (last, commit uint64, err error) {
	s, err := openGroupWAL(dir, id, walOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	last, err = s.LastIndex()
	if err != nil {
		return 0, 0, err
	}
	hs, _, err := s.InitialState()
	return last, hs.GetCommit(), err
}

// StorePath is where WithDataDir keeps group id.
func StorePath(dir string, id catalog.ID) string { return walFilePath(dir, id) }
