package catalog

import (
	"sync"
	"testing"
	"time"
)

func TestRTTTable_FirstSample(t *testing.T) {
	tab := NewRTTTable()
	p := newTestPeer(t).id
	if _, ok := tab.Get(p); ok {
		t.Fatal("an unknown peer has an RTT")
	}
	if _, ok := tab.Stats(p); ok {
		t.Fatal("an unknown peer has stats")
	}
	tab.Record(p, 100*time.Millisecond, t0)
	st, ok := tab.Stats(p)
	if !ok || st.SRTT != 100*time.Millisecond || st.RTTVar != 50*time.Millisecond || st.Samples != 1 || !st.Last.Equal(t0) {
		t.Fatalf("after the first sample: %+v, %v; want SRTT=R, RTTVar=R/2", st, ok)
	}
	if rtt, ok := tab.Get(p); !ok || rtt != 100*time.Millisecond {
		t.Fatalf("Get = %v, %v", rtt, ok)
	}
}

func TestRTTTable_SecondSample(t *testing.T) {
	// RFC 6298 2.3 with alpha = 1/8, beta = 1/4, RTTVAR from the old SRTT:
	// RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5 ms; SRTT = 7/8*100 + 1/8*200 = 112.5 ms.
	tab := NewRTTTable()
	p := newTestPeer(t).id
	tab.Record(p, 100*time.Millisecond, t0)
	tab.Record(p, 200*time.Millisecond, t0.Add(time.Second))
	st, _ := tab.Stats(p)
	if st.SRTT != 112500*time.Microsecond || st.RTTVar != 62500*time.Microsecond || st.Samples != 2 || !st.Last.Equal(t0.Add(time.Second)) {
		t.Fatalf("after two samples: %+v", st)
	}
}

func TestRTTTable_Converges(t *testing.T) {
	tab := NewRTTTable()
	p := newTestPeer(t).id
	tab.Record(p, 100*time.Millisecond, t0)
	for i := range 50 {
		tab.Record(p, 200*time.Millisecond, t0.Add(time.Duration(i+1)*time.Second))
	}
	rtt, _ := tab.Get(p)
	if rtt <= 195*time.Millisecond || rtt > 200*time.Millisecond {
		t.Fatalf("SRTT after 50 samples of 200 ms from 100 ms = %v, want within (195 ms, 200 ms]", rtt)
	}
	st, _ := tab.Stats(p)
	if st.Samples != 51 || st.RTTVar >= 5*time.Millisecond {
		t.Fatalf("stats = %+v: the variation must have decayed", st)
	}
}

func TestRTTTable_IgnoresNonPositive(t *testing.T) {
	tab := NewRTTTable()
	p := newTestPeer(t).id
	tab.Record(p, 0, t0)
	tab.Record(p, -time.Second, t0)
	if _, ok := tab.Get(p); ok {
		t.Fatal("non-positive samples were recorded")
	}
	tab.Record(p, time.Millisecond, t0)
	tab.Record(p, 0, t0.Add(time.Second))
	if st, _ := tab.Stats(p); st.Samples != 1 || !st.Last.Equal(t0) {
		t.Fatalf("a zero sample changed the state: %+v", st)
	}
}

func TestRTTTable_Remove(t *testing.T) {
	tab := NewRTTTable()
	p, q := newTestPeer(t).id, newTestPeer(t).id
	tab.Record(p, 10*time.Millisecond, t0)
	tab.Record(q, 20*time.Millisecond, t0)
	tab.Remove(p)
	tab.Remove(newTestPeer(t).id) // unknown: no effect
	if _, ok := tab.Get(p); ok {
		t.Fatal("Remove did not forget the peer")
	}
	if rtt, ok := tab.Get(q); !ok || rtt != 20*time.Millisecond {
		t.Fatal("Remove forgot another peer")
	}
	// After Remove the next sample starts afresh.
	tab.Record(p, 40*time.Millisecond, t0)
	if st, _ := tab.Stats(p); st.SRTT != 40*time.Millisecond || st.RTTVar != 20*time.Millisecond || st.Samples != 1 {
		t.Fatalf("after Remove: %+v", st)
	}
}

func TestPeerInfo_RTTBelow(t *testing.T) {
	tests := []struct {
		name  string
		info  PeerInfo
		limit time.Duration
		want  bool
	}{
		{"unknown is optimistic", PeerInfo{}, time.Nanosecond, true},
		{"unknown even for zero", PeerInfo{}, 0, true},
		{"150 below 200", PeerInfo{RTT: 150 * time.Millisecond, RTTKnown: true}, 200 * time.Millisecond, true},
		{"150 not below 100", PeerInfo{RTT: 150 * time.Millisecond, RTTKnown: true}, 100 * time.Millisecond, false},
		{"equal is not below", PeerInfo{RTT: 150 * time.Millisecond, RTTKnown: true}, 150 * time.Millisecond, false},
		{"just below", PeerInfo{RTT: 150*time.Millisecond - 1, RTTKnown: true}, 150 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.info.RTTBelow(tt.limit); got != tt.want {
				t.Fatalf("RTTBelow(%v) = %v, want %v", tt.limit, got, tt.want)
			}
		})
	}
}

func TestRTTTable_Info(t *testing.T) {
	tab := NewRTTTable()
	p := newTestPeer(t)
	e := p.seal(t, testNetwork, NewVersion(t0), nil)
	info := tab.Info(e)
	if info.Entry != e || info.RTTKnown || !info.RTTBelow(time.Nanosecond) {
		t.Fatalf("Info of an unmeasured peer = %+v", info)
	}
	tab.Record(p.id, 30*time.Millisecond, t0)
	info = tab.Info(e)
	if info.Entry != e || !info.RTTKnown || info.RTT != 30*time.Millisecond || info.RTTBelow(30*time.Millisecond) || !info.RTTBelow(31*time.Millisecond) {
		t.Fatalf("Info of a measured peer = %+v", info)
	}
}

func TestRTTTable_Concurrent(t *testing.T) {
	tab := NewRTTTable()
	p := newTestPeer(t).id
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				tab.Record(p, time.Duration(1+i+j)*time.Millisecond, t0)
				_, _ = tab.Get(p)
				_, _ = tab.Stats(p)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tab.Remove(p)
		}
	})
	wg.Wait()
	tab.Record(p, time.Millisecond, t0)
	if _, ok := tab.Get(p); !ok {
		t.Fatal("table unusable after concurrent use")
	}
}
