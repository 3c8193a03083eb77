package streams

import (
	"errors"
	"testing"
)

func TestSequencer_Gaps(t *testing.T) {
	type step struct {
		seq   uint64
		cause GapCause // 0: no gap
		miss  uint64
	}
	for _, tc := range []struct {
		name  string
		epoch uint64
		prev  position
		known bool
		steps []step
	}{
		{"first subscription", 7, position{}, false, []step{{5, 0, 0}, {6, 0, 0}, {9, GapDropped, 2}}},
		{"resubscribe same epoch", 7, position{epoch: 7, last: 4}, true, []step{{8, GapReconnect, 3}, {9, 0, 0}}},
		{"resubscribe no loss", 7, position{epoch: 7, last: 4}, true, []step{{5, 0, 0}}},
		{"restart after clean close", 8, position{epoch: 7, last: 4, clean: true}, true, []step{{1, 0, 0}}},
		{"restart after crash", 8, position{epoch: 7, last: 4}, true, []step{{1, GapRestart, 0}}},
		{"restart with datums missed", 8, position{epoch: 7, last: 4, clean: true}, true, []step{{3, GapRestart, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newSequencer(tc.epoch, tc.prev, tc.known)
			for _, s := range tc.steps {
				gap, err := q.next(s.seq)
				if err != nil {
					t.Fatalf("seq %d: %v", s.seq, err)
				}
				switch {
				case s.cause == 0 && gap != nil:
					t.Fatalf("seq %d: unexpected gap %+v", s.seq, gap)
				case s.cause != 0 && (gap == nil || gap.Cause != s.cause || gap.Missed != s.miss):
					t.Fatalf("seq %d: gap %+v, want cause %v missed %d", s.seq, gap, s.cause, s.miss)
				}
			}
			if pos, ok := q.position(); !ok || pos.last != tc.steps[len(tc.steps)-1].seq {
				t.Fatalf("position %+v %v", pos, ok)
			}
		})
	}
	q := newSequencer(1, position{epoch: 1, last: 10}, true)
	for _, bad := range []uint64{0, 10} {
		if _, err := q.next(bad); !errors.Is(err, errProtocol) {
			t.Errorf("seq %d after 10: %v, want errProtocol", bad, err)
		}
	}
}
