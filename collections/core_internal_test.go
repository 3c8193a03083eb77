package collections

import (
	"bytes"
	"context"
	"errors"
	htmltemplate "html/template"
	"reflect"
	"strings"
	"testing"
	texttemplate "text/template"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
)

type testMap = machine[mapState[string, int]]

func newTestMap() *testMap {
	return newMachine(kind[mapState[string, int]](mapKind[string, int]{}), catalog.IDFromString("test"), "map", "test")
}

// entries returns the content in iteration order.
func entries(m *testMap) []mapItem[string, int] {
	var out []mapItem[string, int]
	m.load().state.Scan(func(it mapItem[string, int]) bool {
		out = append(out, it)
		return true
	})
	return out
}

func snapshotOf(t testing.TB, m *testMap) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// applyAt applies cmds as one run starting at log index first, passing
// each through the groups codec first, as the log does.
func applyAt(t testing.TB, m *testMap, first uint64, cmds ...command) {
	t.Helper()
	wire := make([]command, 0, len(cmds))
	for _, c := range cmds {
		b, err := groups.CBOR[command]{}.Encode(c)
		if err != nil {
			// An argument that is not well-formed CBOR never gets
			// through the codec; the kind must still survive it.
			wire = append(wire, c)
			continue
		}
		d, err := groups.CBOR[command]{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		wire = append(wire, d)
	}
	m.Apply(groups.ApplyContext{FirstIndex: first}, wire)
}

// Hand-crafted commands never panic the machine: each invalid one is a
// no-op, counted in Rejected, and the version still advances past it.
func TestMapKind_InvalidCommandsAreCountedNoOps(t *testing.T) {
	strA := []byte{0x61, 'a'}              // "a", canonical
	strALong := []byte{0x78, 0x01, 'a'}    // "a" with a 1-byte length: not canonical
	oneLong := []byte{0x18, 0x01}          // 1 as a 1-byte uint: not canonical
	intKey := []byte{0x01}                 // an int where a string key is due
	bad := []byte{0xff}                    // a break code: not a CBOR value
	trailing := []byte{0x61, 'a', 0x01}    // "a" followed by junk
	floatOne := []byte{0xf9, 0x3c, 0x00}   // 1.0 as a half float, for an int value
	indef := []byte{0x7f, 0x61, 'a', 0xff} // "a" as an indefinite-length string
	cases := []struct {
		name string
		cmd  command
	}{
		{"unknown op", command{Op: 99, A: strA, B: raw(t, 1)}},
		{"op zero", command{}},
		{"insert without key", command{Op: mapInsert, B: raw(t, 1)}},
		{"insert without value", command{Op: mapInsert, A: strA}},
		{"insert undecodable key", command{Op: mapInsert, A: bad, B: raw(t, 1)}},
		{"insert key of the wrong type", command{Op: mapInsert, A: intKey, B: raw(t, 1)}},
		{"insert non-canonical key", command{Op: mapInsert, A: strALong, B: raw(t, 1)}},
		{"insert indefinite-length key", command{Op: mapInsert, A: indef, B: raw(t, 1)}},
		{"insert key with trailing bytes", command{Op: mapInsert, A: trailing, B: raw(t, 1)}},
		{"insert non-canonical value", command{Op: mapInsert, A: strA, B: oneLong}},
		{"insert float value", command{Op: mapInsert, A: strA, B: floatOne}},
		{"remove without key", command{Op: mapRemove}},
		{"remove non-canonical key", command{Op: mapRemove, A: strALong}},
		{"cas without key", command{Op: mapCAS, N: 3, B: raw(t, 1), C: raw(t, 2)}},
		{"cas expected flag without expected", command{Op: mapCAS, A: strA, N: 1}},
		{"cas new flag without new", command{Op: mapCAS, A: strA, N: 2}},
		{"cas both flags without args", command{Op: mapCAS, A: strA, N: 3}},
		{"cas both flags, only expected", command{Op: mapCAS, A: strA, N: 3, B: raw(t, 7)}},
		{"cas undecodable new", command{Op: mapCAS, A: strA, N: 3, B: raw(t, 7), C: bad}},
		{"cas non-canonical new", command{Op: mapCAS, A: strA, N: 3, B: raw(t, 7), C: oneLong}},
		{"extend odd", command{Op: mapExtend, Many: []cbor.RawMessage{raw(t, "x"), raw(t, 1), raw(t, "y")}}},
		{"extend one bad pair", command{Op: mapExtend, Many: []cbor.RawMessage{raw(t, "x"), raw(t, 1), strALong, raw(t, 2)}}},
		{"remove many one bad key", command{Op: mapRemoveMany, Many: []cbor.RawMessage{strA, intKey}}},
	}
	m := newTestMap()
	applyAt(t, m, 1, command{Op: mapInsert, A: strA, B: raw(t, 7)})
	before := entries(m)
	for i, c := range cases {
		idx := uint64(2 + i)
		applyAt(t, m, idx, c.cmd)
		if got := m.rejected.Load(); got != uint64(i+1) {
			t.Fatalf("%s: rejected = %d, want %d", c.name, got, i+1)
		}
		if v := m.load().version; v != Version(idx) {
			t.Fatalf("%s: version %d, want %d", c.name, v, idx)
		}
		if c.cmd.Op == mapCAS && m.outcomes.get(idx) != invalid {
			t.Fatalf("%s: outcome %d, want invalid", c.name, m.outcomes.get(idx))
		}
	}
	if after := entries(m); !reflect.DeepEqual(before, after) {
		t.Fatalf("invalid commands changed the content: %v, then %v", before, after)
	}

	// The same commands in one run, on a second replica: same count.
	r := newTestMap()
	run := []command{{Op: mapInsert, A: strA, B: raw(t, 7)}}
	for _, c := range cases {
		run = append(run, c.cmd)
	}
	applyAt(t, r, 1, run...)
	if r.rejected.Load() != uint64(len(cases)) || !reflect.DeepEqual(entries(r), entries(m)) {
		t.Fatalf("one run: rejected %d, content %v; want %d, %v", r.rejected.Load(), entries(r), len(cases), entries(m))
	}
}

// Valid commands that change nothing (a CAS that does not match, removing
// an absent key, clearing an empty map) are not rejections.
func TestMapKind_ValidNoOpsAreNotRejected(t *testing.T) {
	m := newTestMap()
	applyAt(t, m, 1,
		command{Op: mapRemove, A: raw(t, "nope")},
		command{Op: mapClear},
		command{Op: mapCAS, A: raw(t, "k"), N: 1, B: raw(t, 1), C: raw(t, 2)}, // expects 1, absent
		command{Op: mapCAS, A: raw(t, "k")},                                   // expects absent, deletes: stays absent
		command{Op: mapCAS, A: raw(t, "k"), N: 2, C: raw(t, 5)},               // absent -> 5
		command{Op: mapCAS, A: raw(t, "k"), N: 2, C: raw(t, 6)},               // not absent
		command{Op: mapRemoveMany, Many: []cbor.RawMessage{raw(t, "x")}},
		command{Op: mapExtend},
	)
	if n := m.rejected.Load(); n != 0 {
		t.Fatalf("rejected %d valid commands", n)
	}
	want := []outcome{noop, noop, applied, noop}
	for i, w := range want {
		if got := m.outcomes.get(uint64(3 + i)); got != w {
			t.Fatalf("CAS at %d: outcome %d, want %d", 3+i, got, w)
		}
	}
	if got := entries(m); len(got) != 1 || got[0].k != "k" || got[0].v != 5 {
		t.Fatalf("content %v", got)
	}
}

// The command decoder (the groups CBOR codec with its limits) refuses a
// Many array whose header claims more elements than the limit, before
// allocating them.
func TestCommand_DecodeLimits(t *testing.T) {
	// [op=5, A, B, C, N, M, Many] with Many's header claiming 2^32 items.
	b := []byte{0x87, 0x05, 0x40, 0x40, 0x40, 0x00, 0x00, 0x9a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}
	if _, err := (groups.CBOR[command]{}).Decode(b); err == nil {
		t.Fatal("a Many of 2^32 elements decoded")
	}
	ok := command{Op: mapExtend, Many: []cbor.RawMessage{raw(t, "a"), raw(t, 1)}}
	enc, err := groups.CBOR[command]{}.Encode(ok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := groups.CBOR[command]{}.Decode(enc)
	if err != nil || !reflect.DeepEqual(got.Many, ok.Many) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// toarray ignores omitempty: absent arguments travel as CBOR null.
	if string(got.A) != "\xf6" {
		t.Fatalf("an absent argument decodes as %x, want f6 (null)", []byte(got.A))
	}
}

// FuzzCommandDecode decodes arbitrary bytes as a command with the
// collections' codec (the groups CBOR codec and its limits; what every
// replica does with a log entry) and applies the result: nothing may panic, a decoded command re-encodes (to a
// fixpoint), and two replicas applying it end identical.
func FuzzCommandDecode(f *testing.F) {
	for _, c := range []command{
		{Op: mapInsert, A: raw(f, "a"), B: raw(f, 1)},
		{Op: mapRemove, A: raw(f, "a")},
		{Op: mapClear},
		{Op: mapCAS, A: raw(f, "a"), N: 3, B: raw(f, 1), C: raw(f, 2)},
		{Op: mapCAS, A: raw(f, "b"), N: 2, C: raw(f, 2)},
		{Op: mapExtend, Many: []cbor.RawMessage{raw(f, "a"), raw(f, 1), raw(f, "b"), raw(f, 2)}},
		{Op: mapRemoveMany, Many: []cbor.RawMessage{raw(f, "a"), raw(f, "c")}},
		{Op: mapInsert, A: []byte{0x78, 0x01, 'a'}, B: raw(f, 1)},
	} {
		b, err := groups.CBOR[command]{}.Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x87, 0x05, 0x40, 0x40, 0x40, 0x00, 0x00, 0x9a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		codec := commandCodec{}
		c, err := codec.Decode(b)
		if err != nil {
			t.Fatalf("the collections codec refused an entry: %v", err)
		}
		if c.undecodable {
			m := newTestMap()
			m.Apply(groups.ApplyContext{FirstIndex: 1}, []command{c})
			if m.rejected.Load() != 1 || m.load().version != 1 {
				t.Fatal("an undecodable entry was not counted")
			}
			return
		}
		again, err := codec.Encode(c)
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		// Absent arguments decode as empty and re-encode as null, so
		// the re-encoding is a fixpoint rather than b itself.
		c2, err := codec.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if third, err := codec.Encode(c2); err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not a fixpoint: %x, then %x (%v)", again, third, err)
		}
		// Two replicas decode the log entry and apply it identically.
		c3, err := codec.Decode(b)
		if err != nil {
			t.Fatal("a second decode failed:", err)
		}
		seed := command{Op: mapExtend, Many: []cbor.RawMessage{raw(t, "a"), raw(t, 1), raw(t, "b"), raw(t, 2)}}
		x, y := newTestMap(), newTestMap()
		x.Apply(groups.ApplyContext{FirstIndex: 1}, []command{seed, c})
		y.Apply(groups.ApplyContext{FirstIndex: 1}, []command{seed, c3})
		if !bytes.Equal(snapshotOf(t, x), snapshotOf(t, y)) || x.rejected.Load() != y.rejected.Load() {
			t.Fatal("two replicas diverged on one command")
		}
		// Other key and value types see the same bytes differently.
		z := newMachine(kind[mapState[uint64, []byte]](mapKind[uint64, []byte]{}), catalog.IDFromString("z"), "map", "z")
		z.Apply(groups.ApplyContext{FirstIndex: 1}, []command{c})
	})
}

// FuzzMapSnapshotRestore restores arbitrary bytes into a map: it never
// panics, and whatever it accepts snapshots to bytes that restore to the
// same content and snapshot again identically.
func FuzzMapSnapshotRestore(f *testing.F) {
	m := newTestMap()
	f.Add(snapshotOf(f, m))
	applyAt(f, m, 1, command{Op: mapExtend, Many: []cbor.RawMessage{raw(f, "a"), raw(f, 1), raw(f, "bb"), raw(f, -2), raw(f, "c"), raw(f, 3)}})
	good := snapshotOf(f, m)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add([]byte{0x83, 0x63, 'm', 'a', 'p', 0x01, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	// Out of order: "bb" before "a".
	f.Add(append(append([]byte{0x83, 0x63, 'm', 'a', 'p', 0x01, 0x02}, 0x82, 0x62, 'b', 'b', 0x01), 0x82, 0x61, 'a', 0x01))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newTestMap()
		if err := r.Restore(bytes.NewReader(data)); err != nil {
			return
		}
		snap := snapshotOf(t, r)
		r2 := newTestMap()
		if err := r2.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatalf("a snapshot of an accepted state does not restore: %v", err)
		}
		if !reflect.DeepEqual(entries(r), entries(r2)) || r.load().version != r2.load().version || r2.load().size != len(entries(r2)) {
			t.Fatalf("round trip changed the state: %v at %d, then %v at %d", entries(r), r.load().version, entries(r2), r2.load().version)
		}
		if again := snapshotOf(t, r2); !bytes.Equal(snap, again) {
			t.Fatalf("snapshot is not a fixpoint:\n%x\n%x", snap, again)
		}
	})
}

// A snapshot round-trips: the restored replica holds the same entries in
// the same order at the same version, and refuses other kinds' snapshots.
func TestMapKind_SnapshotRoundTrip(t *testing.T) {
	m := newTestMap()
	var many []cbor.RawMessage
	for i := range 500 {
		many = append(many, raw(t, string(rune('a'+i%26))+string(rune('0'+i/26))), raw(t, i))
	}
	applyAt(t, m, 3, command{Op: mapExtend, Many: many}, command{Op: mapRemove, A: raw(t, "a0")})
	snap := snapshotOf(t, m)
	r := newTestMap()
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(entries(m), entries(r)) || r.load().version != 4 || r.load().size != 499 {
		t.Fatalf("restored %d entries at %d", r.load().size, r.load().version)
	}
	other := newMachine(kind[mapState[string, int]](mapKind[string, int]{}), catalog.IDFromString("test"), "set", "test")
	if err := other.Restore(bytes.NewReader(snap)); err == nil {
		t.Fatal("a set restored a map's snapshot")
	}
	if err := r.Restore(bytes.NewReader(nil)); err != nil || r.load().size != 0 || r.load().version != 0 {
		t.Fatalf("empty snapshot: %v, %d entries at %d", err, r.load().size, r.load().version)
	}
}

// A mutation error says MayApply whenever the command may be in the log:
// the caller's context ended or the group ended while it was in flight
// (the outcome is unknown), besides the groups errors that say so.
func TestMutationError_MayApply(t *testing.T) {
	c := &core[mapState[string, int]]{name: "m"}
	for _, tc := range []struct {
		err  error
		may  bool
		want error
	}{
		{context.DeadlineExceeded, true, context.DeadlineExceeded},
		{context.Canceled, true, context.Canceled},
		{groups.ErrTerminated, true, ErrTerminated},
		{groups.ErrNotApplied, false, ErrNotApplied},
		{&groups.OfflineError[command]{Reason: "no leader"}, false, ErrOffline},
		{&groups.OfflineError[command]{MayApply: true, Reason: "forward timeout"}, true, ErrOffline},
	} {
		err := wrapErr(c, "insert", 7, tc.err)
		var me *MutationError[int]
		if !errors.As(err, &me) || me.MayApply != tc.may || me.Arg != 7 || !errors.Is(err, tc.want) {
			t.Errorf("%v: %#v, want MayApply %v matching %v", tc.err, err, tc.may, tc.want)
		}
	}
}

// encode refuses what the replicas would reject: a command that decodes
// as invalid on every replica would still commit, and its caller would
// see a version as if it had applied.
func TestEncode_RefusesWhatReplicasReject(t *testing.T) {
	if _, err := encode("\xff"); err == nil {
		t.Fatal("a string that is not UTF-8 encoded")
	}
	b, err := encode("ok")
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMap()
	applyAt(t, m, 1, command{Op: mapInsert, A: b, B: raw(t, 1)})
	// The bytes a plain marshal gives are what the replicas reject.
	plain := cbor.RawMessage{0x61, 0xff}
	applyAt(t, m, 2, command{Op: mapInsert, A: plain, B: raw(t, 1)})
	if m.rejected.Load() != 1 || m.load().size != 1 {
		t.Fatalf("rejected %d, size %d", m.rejected.Load(), m.load().size)
	}
	// And Insert hands the argument back, sending nothing.
	mp := &Map[string, int]{MapReader[string, int]{handle[mapState[string, int]]{&core[mapState[string, int]]{name: "m"}}}}
	_, err = mp.Insert(context.Background(), "\xff", 1)
	var me *MutationError[KV[string, int]]
	if !errors.As(err, &me) || !errors.Is(err, ErrEncoding) || me.Arg.Key != "\xff" || me.MayApply {
		t.Fatalf("Insert of a non-UTF-8 key: %v", err)
	}
}

// A log entry that is no command at all is a counted no-op that moves the
// version, like any invalid command, instead of vanishing in the group.
func TestCommandCodec_UndecodableEntryIsRejected(t *testing.T) {
	good, err := commandCodec{}.Encode(command{Op: mapInsert, A: raw(t, "a"), B: raw(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMap()
	var run []command
	for _, b := range [][]byte{good, {0xff}, {0x81, 0x01, 0x02}, good[:len(good)-1]} {
		c, err := commandCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		run = append(run, c)
	}
	m.Apply(groups.ApplyContext{FirstIndex: 5}, run)
	if m.rejected.Load() != 3 || m.load().version != 8 || m.load().size != 1 {
		t.Fatalf("rejected %d, version %d, size %d; want 3, 8, 1", m.rejected.Load(), m.load().version, m.load().size)
	}
	// The mark never travels.
	b, err := commandCodec{}.Encode(command{Op: mapClear, undecodable: true})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := (commandCodec{}).Decode(b); c.undecodable || c.Op != mapClear {
		t.Fatalf("decoded %+v", c)
	}
}

// A restore forgets the compare-and-exchange outcomes kept by log index:
// after a discarded log is replaced (a lost merge's reset, a snapshot from
// the winning cluster), its indexes hold other commands, and an outcome
// kept from before would answer a caller about someone else's command.
func TestMapKind_RestoreForgetsOutcomes(t *testing.T) {
	m := newTestMap()
	applyAt(t, m, 7, command{Op: mapCAS, N: 2, A: raw(t, "k"), C: raw(t, 1)})
	if got := m.outcomes.get(7); got != applied {
		t.Fatalf("outcome at 7 is %d before the restore, want applied", got)
	}
	snap := snapshotOf(t, newTestMap())
	if err := m.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if got := m.outcomes.get(7); got != 0 {
		t.Fatalf("outcome at 7 is %d after the restore, want none kept", got)
	}
}

// time.Time keys and values keep their nanoseconds: two instants half a
// second apart are two keys, and each value reads back as written (the
// encoding wrote whole seconds before, so the keys collided and the value
// read back was another instant).
func TestMapKind_TimeKeysKeepTheirFraction(t *testing.T) {
	m := newMachine(kind[mapState[time.Time, time.Time]](mapKind[time.Time, time.Time]{}), catalog.IDFromString("t"), "map", "t")
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	k1, k2 := base.Add(100*time.Millisecond), base.Add(600*time.Millisecond)
	var cmds []command
	for _, k := range []time.Time{k1, k2} {
		a, err := encode(k)
		if err != nil {
			t.Fatal(err)
		}
		b, err := encode(k.Add(time.Nanosecond))
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, command{Op: mapInsert, A: a, B: b})
	}
	m.Apply(groups.ApplyContext{FirstIndex: 1}, cmds)
	st := m.load()
	if st.size != 2 {
		t.Fatalf("%d keys after inserting two instants half a second apart, want 2", st.size)
	}
	var got []mapItem[time.Time, time.Time]
	st.state.Scan(func(it mapItem[time.Time, time.Time]) bool { got = append(got, it); return true })
	for i, k := range []time.Time{k1, k2} {
		if i >= len(got) || !got[i].k.Equal(k) || !got[i].v.Equal(k.Add(time.Nanosecond)) {
			t.Fatalf("items %+v, want %v ↦ %v at %d", got, k, k.Add(time.Nanosecond), i)
		}
	}
}

// Type parts qualify every named type by its package path, also inside
// slices, arrays, maps and pointers (Go's spelling qualifies by package
// name, so text/template's and html/template's Template were one part);
// types of predeclared types only keep Go's spelling.
func TestTypeTag_QualifiesNamedTypesByPath(t *testing.T) {
	for got, want := range map[string]string{
		typeTag[string]():                       "string",
		typeTag[[]byte]():                       "[]uint8",
		typeTag[map[string]int]():               "map[string]int",
		typeTag[[4]*int]():                      "[4]*int",
		typeTag[texttemplate.Template]():        "text/template.Template",
		typeTag[[]*texttemplate.Template]():     "[]*text/template.Template",
		typeTag[map[string]htmltemplate.HTML](): "map[string]html/template.HTML",
	} {
		if got != want {
			t.Errorf("type part %q, want %q", got, want)
		}
	}
	if typeTag[[]*texttemplate.Template]() == typeTag[[]*htmltemplate.Template]() {
		t.Error("[]*text/template.Template and []*html/template.Template share a type part")
	}
}

// A type that holds a time.Time anywhere has its part marked with the
// time encoding, so replicas of the whole-seconds encoding (older builds)
// and of the RFC 3339 one are two groups rather than one whose replicas
// refuse each other's commands.
func TestTypeTag_MarksTypesHoldingTimes(t *testing.T) {
	type event struct {
		Name string
		At   *time.Time
	}
	type node struct {
		Next *node
		Tags map[string][]int
	}
	for got, want := range map[string]bool{
		typeTag[time.Time]():            true,
		typeTag[[]time.Time]():          true,
		typeTag[map[time.Time]string](): true,
		typeTag[event]():                true,
		typeTag[map[string][]*event]():  true,
		typeTag[node]():                 false, // recursive, no time
		typeTag[string]():               false,
		typeTag[map[string]int]():       false,
	} {
		if strings.HasSuffix(got, timePartSuffix) != want {
			t.Errorf("type part %q: marked %v, want %v", got, !want, want)
		}
	}
}
