package collections

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// raw encodes v canonically or fails the test.
func raw(t testing.TB, v any) cbor.RawMessage {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stateBytes is s's snapshot body, to compare states.
func stateBytes[S any](t testing.TB, k kind[S], s S) string {
	t.Helper()
	var buf bytes.Buffer
	if err := k.encode(s, detcbor.NewEncoder(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// applyAll runs cmds through a machine, one command per Apply run (as a
// lightly loaded group does), and returns the outcomes and the machine.
func applyAll[S any](k kind[S], cmds ...command) ([]outcome, *machine[S]) {
	m := newMachine(k, signature("test", "t"), "test", "t")
	var outs []outcome
	for i := range cmds {
		// As on the wire: an absent argument arrives as CBOR null.
		wire, err := detcbor.Marshal(cmds[i])
		if err != nil {
			panic(err)
		}
		cmds[i] = command{}
		if err := detcbor.Unmarshal(wire, &cmds[i]); err != nil {
			panic(err)
		}
		before := m.rejected.Load()
		s, o := k.apply(k.clone(m.load().state), &cmds[i])
		_ = s
		m.Apply(groups.ApplyContext{FirstIndex: uint64(i + 1)}, cmds[i:i+1])
		if m.rejected.Load() != before && o != invalid {
			panic("machine and kind disagree")
		}
		outs = append(outs, o)
	}
	return outs, m
}

// roundTrip snapshots m and restores the snapshot into a fresh machine.
func roundTrip[S any](t testing.TB, k kind[S], m *machine[S]) *machine[S] {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	m2 := newMachine(k, m.sig, m.tag, m.name)
	if err := m2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if a, b := stateBytes(t, k, m.load().state), stateBytes(t, k, m2.load().state); a != b {
		t.Fatalf("snapshot round trip changed the state")
	}
	if m2.load().version != m.load().version {
		t.Fatalf("snapshot round trip changed the version")
	}
	return m2
}

// fuzzKind is the body of each kind's fuzz target. data is read three
// ways: as a snapshot to restore; as a CBOR list of commands; and as a
// byte program that gen turns into commands, 4 bytes each. Nothing may panic; every
// published state must stay unchanged by later commands (the copy on
// write discipline readers rely on); a restored or built state must
// survive a snapshot round trip.
func fuzzKind[S any](t *testing.T, k kind[S], data []byte, gen func(b []byte) command) {
	m := newMachine(k, signature("test", "t"), "test", "t")
	if err := m.Restore(bytes.NewReader(data)); err == nil {
		roundTrip(t, k, m)
	}
	var cmds []command
	if detcbor.Unmarshal(data, &cmds) != nil || len(cmds) > 64 {
		cmds = cmds[:0]
		for b := data; len(b) > 0 && len(cmds) < 256; {
			var op [4]byte // gen gets 4 bytes, zero-padded
			n := copy(op[:], b)
			cmds = append(cmds, gen(op[:]))
			b = b[n:]
		}
	}
	type held struct {
		s   S
		enc string
	}
	var hist []held
	s := k.empty()
	// Apply runs of 1, 2, 3, 1, ... commands, each on one clone, as
	// machine.Apply does with a batch of committed entries.
	for i, run := 0, 1; i < len(cmds); i, run = i+run, run%3+1 {
		hist = append(hist, held{s, stateBytes(t, k, s)})
		if len(hist) > 8 {
			hist = hist[1:]
		}
		next := k.clone(s)
		for j := i; j < min(i+run, len(cmds)); j++ {
			next, _ = k.apply(next, &cmds[j])
		}
		s = next
		for _, h := range hist {
			if stateBytes(t, k, h.s) != h.enc {
				t.Fatalf("the run from command %d (op %d) changed an earlier state", i, cmds[i].Op)
			}
		}
	}
	m = newMachine(k, signature("test", "t"), "test", "t")
	m.publish(&published[S]{state: s, version: 1, size: k.size(s)})
	roundTrip(t, k, m)
}

// genArg picks a small canonical value from b, or a broken one.
func genArg(b byte) cbor.RawMessage {
	if b == 0xff {
		return cbor.RawMessage{0x18, 0x01} // non-canonical 1
	}
	v, _ := detcbor.Marshal(uint64(b % 16))
	return v
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
