package streams_test

// Ports of mosaik's tests/streams/producer/when.rs (smoke,
// send_fails_if_offline), tests/streams/producer/limits.rs (online_when)
// and tests/streams/consumer/when.rs (smoke, online_when,
// online_when_default_is_immediate).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// semNoEdge is how long semNotYet watches a condition that must not fire.
// It only bounds how long the test looks for a wrong edge.
const semNoEdge = 150 * time.Millisecond

// The producer's conditions: Subscribed/Unsubscribed, MinimumOf(2) and its
// Unmet clone, edge-triggered Wait that re-arms, clones of a met condition
// firing at once, WithTags/WithPredicate, and Online/Offline, as consumers
// come and go (mosaik's producer when::smoke).
func TestSemantics_ProducerConditions_Smoke(t *testing.T) {
	t.Parallel()
	validator := catalog.IDFromString("validator")
	nodes := semNodes(t, nil, nil, nil, []string{"validator"})
	n1, n2, n3 := nodes[1], nodes[2], nodes[3]
	prod := mustProducer[string](t, nodes[0], "when-producer")

	sub := prod.Subscribed()
	two := sub.MinimumOf(2)
	notTwo := two.Unmet()
	unsub := prod.Unsubscribed()
	tagged := sub.WithTags(validator)
	isN2 := sub.WithPredicate(func(e *catalog.Entry) bool { return e.PeerID == n2.ID() })

	// No consumers: only the inverted conditions hold, and a fresh
	// condition that already holds fires at once.
	if sub.IsMet() || two.IsMet() || !notTwo.IsMet() || !unsub.IsMet() || prod.IsOnline() || prod.IsOnline() {
		t.Fatalf("no consumers: subscribed %v, two %v, not two %v, unsubscribed %v, online %v",
			sub.IsMet(), two.IsMet(), notTwo.IsMet(), unsub.IsMet(), prod.IsOnline())
	}
	semWait(t, notTwo, time.Second, "a fresh met MinimumOf(2).Unmet()")
	semWait(t, unsub, time.Second, "a fresh met Unsubscribed()")
	semNotYet(t, sub, semNoEdge, "Subscribed() with no consumer")
	if err := prod.WaitOffline(testCtx(t, time.Second)); err != nil {
		t.Fatalf("Offline with no consumer: %v", err)
	}

	c1 := mustConsumer[string](t, n1, "when-producer")
	semWait(t, sub, 10*time.Second, "the first consumer")
	if err := prod.WaitOnline(testCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Online after the first consumer: %v", err)
	}
	if !prod.IsOnline() || two.IsMet() || unsub.IsMet() || tagged.IsMet() || isN2.IsMet() {
		t.Fatalf("one untagged consumer: online %v, two %v, unsubscribed %v, tagged %v, isN2 %v",
			prod.IsOnline(), two.IsMet(), unsub.IsMet(), tagged.IsMet(), isN2.IsMet())
	}
	// unsub fired at the start; it now observes unmet, which re-arms it.
	semNotYet(t, unsub, semNoEdge, "Unsubscribed() with a consumer")
	// Unmet is idempotent, not a toggle.
	if sub.Unmet().Unmet().IsMet() {
		t.Error("Subscribed().Unmet().Unmet() holds while subscribed: Unmet toggled")
	}
	// Builders leave their receiver unchanged.
	if !sub.IsMet() {
		t.Error("Subscribed() changed by MinimumOf/Unmet/WithTags built from it")
	}

	c2 := mustConsumer[string](t, n2, "when-producer")
	semWait(t, two, 10*time.Second, "two consumers")
	if !isN2.IsMet() || tagged.IsMet() {
		t.Errorf("consumers on n1 and n2: isN2 %v, tagged %v; want true, false", isN2.IsMet(), tagged.IsMet())
	}
	// A clone of a met condition fires at once; the original has fired
	// and waits for the next edge.
	semWait(t, two.MinimumOf(2), time.Second, "a clone of a met MinimumOf(2)")
	semNotYet(t, two, semNoEdge, "MinimumOf(2) still met after it fired")
	// notTwo fired at the start; it now observes unmet, which re-arms it.
	semNotYet(t, notTwo, semNoEdge, "MinimumOf(2).Unmet() while two consumers are connected")

	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	semWait(t, notTwo, 10*time.Second, "MinimumOf(2).Unmet() after a consumer left")
	if isN2.IsMet() || !sub.IsMet() || !prod.IsOnline() {
		t.Errorf("after n2 left: isN2 %v, subscribed %v, online %v; want false, true, true", isN2.IsMet(), sub.IsMet(), prod.IsOnline())
	}
	// two observes unmet (re-arming it), then fires again on the next
	// second consumer, a tagged one.
	semNotYet(t, two, semNoEdge, "MinimumOf(2) with one consumer")
	c3 := mustConsumer[string](t, n3, "when-producer")
	semWait(t, two, 10*time.Second, "MinimumOf(2) re-armed, with consumers on n1 and n3")
	semWait(t, tagged, time.Second, "Subscribed().WithTags(validator)")
	semWait(t, tagged.MinimumOf(1).WithPredicate(func(e *catalog.Entry) bool { return e.PeerID == n3.ID() }),
		time.Second, "WithTags and WithPredicate ANDed")
	if tagged.MinimumOf(2).IsMet() {
		t.Error("WithTags(validator).MinimumOf(2) holds with one tagged consumer")
	}
	if tagged.WithPredicate(func(*catalog.Entry) bool { return false }).IsMet() {
		t.Error("a false predicate ANDed with WithTags holds")
	}

	_ = c1.Close()
	_ = c3.Close()
	if err := prod.WaitOffline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Offline after every consumer left: %v", err)
	}
	semWait(t, unsub, 5*time.Second, "Unsubscribed() after every consumer left")
	if prod.IsOnline() || sub.IsMet() {
		t.Errorf("no consumers: online %v, subscribed %v", prod.IsOnline(), sub.IsMet())
	}

	// Closing the producer ends pending waits with ErrClosed.
	done := make(chan error, 1)
	go func() { done <- sub.Wait(context.Background()) }()
	_ = prod.Close()
	select {
	case err := <-done:
		if !errors.Is(err, streams.ErrClosed) {
			t.Errorf("Wait across Close: %v, want ErrClosed", err)
		}
	case <-time.After(testutil.Scale(5 * time.Second)):
		t.Fatal("Wait did not return after Close")
	}
	if err := prod.WaitOnline(testCtx(t, time.Second)); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("Online on a closed offline producer: %v, want ErrClosed", err)
	}
}

// The consumer's conditions, as producers come and go (mosaik's consumer
// when::smoke). The consumer stays online throughout: its default online
// condition is MinimumOf(0).
func TestSemantics_ConsumerConditions_Smoke(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil, []string{"validator"}, nil)
	n1, n2, n3 := nodes[1], nodes[2], nodes[3]
	cons := mustConsumer[string](t, nodes[0], "when-consumer", streams.WithBackoff(semFastBackoff))
	sub := cons.Subscribed()
	two := sub.MinimumOf(2)
	notTwo := two.Unmet()
	unsub := cons.Unsubscribed()
	tagged := sub.WithTags(catalog.IDFromString("validator"))

	if sub.IsMet() || two.IsMet() || !notTwo.IsMet() || !unsub.IsMet() || !cons.IsOnline() {
		t.Fatalf("no producers: subscribed %v, two %v, not two %v, unsubscribed %v, online %v",
			sub.IsMet(), two.IsMet(), notTwo.IsMet(), unsub.IsMet(), cons.IsOnline())
	}
	semWait(t, notTwo, time.Second, "a fresh met MinimumOf(2).Unmet()")
	semWait(t, unsub.Unmet().Unmet().MinimumOf(1), time.Second, "a clone of Unsubscribed()")
	semNotYet(t, sub, semNoEdge, "Subscribed() with no producer")

	p1 := mustProducer[string](t, n1, "when-consumer")
	semWait(t, sub, 10*time.Second, "the first producer")
	if two.IsMet() || unsub.IsMet() || tagged.IsMet() {
		t.Fatalf("one producer: two %v, unsubscribed %v, tagged %v", two.IsMet(), unsub.IsMet(), tagged.IsMet())
	}
	p2 := mustProducer[string](t, n2, "when-consumer")
	semWait(t, two, 10*time.Second, "two producers")
	semWait(t, tagged, time.Second, "Subscribed().WithTags(validator) with the tagged producer")
	semWait(t, two.MinimumOf(2), time.Second, "a clone of a met MinimumOf(2)")
	semNotYet(t, two, semNoEdge, "MinimumOf(2) still met after it fired")
	semNotYet(t, notTwo, semNoEdge, "MinimumOf(2).Unmet() while two producers are connected")

	_ = p2.Close()
	semWait(t, notTwo, 10*time.Second, "MinimumOf(2).Unmet() after a producer left")
	testutil.Eventually(t, 5*time.Second, func() bool { return !tagged.IsMet() }, "the tagged producer left but WithTags still holds")
	semNotYet(t, two, semNoEdge, "MinimumOf(2) with one producer")
	p3 := mustProducer[string](t, n3, "when-consumer")
	semWait(t, two, 10*time.Second, "MinimumOf(2) re-armed, with producers on n1 and n3")
	if !cons.IsOnline() {
		t.Error("the consumer went offline; its default online condition is MinimumOf(0)")
	}
	_ = p1.Close()
	_ = p3.Close()
	semWait(t, unsub, 10*time.Second, "Unsubscribed() after every producer left")
	if !cons.IsOnline() {
		t.Error("the consumer went offline with no producers; its default online condition is MinimumOf(0)")
	}
}

// A consumer is online at construction, with no producer at all (mosaik's
// online_when_default_is_immediate).
func TestSemantics_ConsumerOnlineByDefault(t *testing.T) {
	t.Parallel()
	n := startNode(t, node.WithoutDHT())
	cons := mustConsumer[string](t, n, "online-default")
	if !cons.IsOnline() || !cons.IsOnline() {
		t.Fatal("a fresh consumer is offline")
	}
	if err := cons.WaitOnline(testCtx(t, time.Second)); err != nil {
		t.Fatalf("Online: %v", err)
	}
	if cons.Subscribed().IsMet() {
		t.Error("Subscribed() holds with no producer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), semNoEdge)
	defer cancel()
	if err := cons.WaitOffline(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Offline on an online consumer returned %v, want it to block", err)
	}
}

// WithOnlineCondition on a consumer: MinimumOf(2).WithTags(t1, t2) is offline
// with one matching producer (and with a producer that has only t1),
// online with two, offline again when one leaves (mosaik's consumer
// when::online_when).
func TestSemantics_ConsumerOnlineCondition(t *testing.T) {
	t.Parallel()
	t1, t2 := catalog.IDFromString("t1"), catalog.IDFromString("t2")
	nodes := semNodes(t, nil, []string{"t1", "t2"}, []string{"t1"}, []string{"t1", "t2"})
	cons := mustConsumer[string](t, nodes[0], "online-when-consumer",
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(2).WithTags(t1, t2) }))
	if cons.IsOnline() {
		t.Fatal("online with no producer")
	}
	if err := cons.WaitOffline(testCtx(t, time.Second)); err != nil {
		t.Fatalf("Offline: %v", err)
	}
	mustProducer[string](t, nodes[1], "online-when-consumer")
	mustProducer[string](t, nodes[2], "online-when-consumer")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return semConnected(cons.Producers(), nodes[1].ID()) && semConnected(cons.Producers(), nodes[2].ID())
	}, "the consumer did not subscribe to the first two producers: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	if cons.IsOnline() {
		t.Fatal("online with one producer tagged t1+t2 and one tagged t1")
	}
	p3 := mustProducer[string](t, nodes[3], "online-when-consumer")
	if err := cons.WaitOnline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Online with two producers tagged t1+t2: %v", err)
	}
	_ = p3.Close()
	if err := cons.WaitOffline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Offline after a t1+t2 producer left: %v", err)
	}
}

// WithOnlineCondition on producers (mosaik's limits::online_when): MinimumOf(2)
// needs two consumers, the default one, and
// WithTags(validator).MinimumOf(2) ignores untagged consumers, goes online
// with the second validator and offline when a validator leaves.
func TestSemantics_ProducerOnlineCondition_Tags(t *testing.T) {
	t.Parallel()
	validator := catalog.IDFromString("validator")
	nodes := semNodes(t, nil, nil, nil, []string{"validator"}, []string{"validator"})
	n0, u1, u2, v1, v2 := nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]
	two := mustProducer[string](t, n0, "ow-two",
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(2) }))
	def := mustProducer[string](t, n0, "ow-default")
	vals := mustProducer[string](t, n0, "ow-validators",
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.WithTags(validator).MinimumOf(2) }))
	check := func(stage string, wantTwo, wantDef, wantVals bool) {
		t.Helper()
		if two.IsOnline() != wantTwo || def.IsOnline() != wantDef || vals.IsOnline() != wantVals {
			t.Fatalf("%s: online MinimumOf(2) %v, default %v, validators %v; want %v, %v, %v", stage,
				two.IsOnline(), def.IsOnline(), vals.IsOnline(), wantTwo, wantDef, wantVals)
		}
	}
	connectedTo := func(p *streams.Producer[string], ns ...int) func() bool {
		return func() bool {
			for _, i := range ns {
				if !semConnected(p.Consumers(), nodes[i].ID()) {
					return false
				}
			}
			return true
		}
	}
	check("no consumers", false, false, false)

	for _, s := range []string{"ow-two", "ow-default", "ow-validators"} {
		mustConsumer[string](t, u1, s)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return connectedTo(two, 1)() && connectedTo(def, 1)() && connectedTo(vals, 1)()
	}, "the first untagged consumer did not subscribe")
	check("one untagged consumer", false, true, false)

	mustConsumer[string](t, u2, "ow-two")
	mustConsumer[string](t, u2, "ow-validators")
	testutil.Eventually(t, 10*time.Second, func() bool { return connectedTo(two, 1, 2)() && connectedTo(vals, 1, 2)() },
		"the second untagged consumer did not subscribe")
	check("two untagged consumers", true, true, false)

	mustConsumer[string](t, v1, "ow-validators")
	testutil.Eventually(t, 10*time.Second, connectedTo(vals, 1, 2, 3), "the first validator did not subscribe")
	check("two untagged consumers and one validator", true, true, false)

	last := mustConsumer[string](t, v2, "ow-validators")
	if err := vals.WaitOnline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("validators producer: Online with two validators: %v", err)
	}
	check("two validators", true, true, true)

	_ = last.Close()
	if err := vals.WaitOffline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("validators producer: Offline after a validator left: %v", err)
	}
	if err := vals.TrySend("x"); !errors.Is(err, streams.ErrOffline) {
		t.Errorf("TrySend on the offline validators producer: %v, want ErrOffline", err)
	}
}

// Sending while offline: TrySend fails with ErrOffline and Send blocks
// until a consumer arrives; after the consumer leaves the producer is
// offline again; Close ends a blocked Send and later sends with ErrClosed
// (mosaik's send_fails_if_offline).
func TestSemantics_SendFailsIfOffline(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	n0, n1 := nodes[0], nodes[1]
	prod, err := streams.NewProducer[string](n0.Streams(), "offline-send")
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if prod.IsOnline() {
		t.Fatal("online with no consumer")
	}
	if err := prod.TrySend("early"); !errors.Is(err, streams.ErrOffline) {
		t.Fatalf("TrySend with no consumer: %v, want ErrOffline", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), semNoEdge)
	if err := prod.Send(ctx, "early"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with no consumer returned %v, want it to block until its context ends", err)
	}
	cancel()

	sent := make(chan error, 1)
	go func() { sent <- prod.Send(testCtx(t, 30*time.Second), "first") }()
	select {
	case err := <-sent:
		t.Fatalf("Send returned %v with no consumer", err)
	default:
	}
	cons := mustConsumer[string](t, n1, "offline-send")
	var sendErr error
	testutil.Eventually(t, 10*time.Second, func() bool {
		select {
		case sendErr = <-sent:
			return true
		default:
			return false
		}
	}, "the blocked Send did not return after a consumer subscribed")
	if sendErr != nil {
		t.Fatalf("blocked Send: %v", sendErr)
	}
	if v := semRecv(t, cons, 5*time.Second); v != "first" {
		t.Fatalf("got %q, want first", v)
	}
	if err := prod.TrySend("second"); err != nil {
		t.Fatalf("TrySend while online: %v", err)
	}
	if v := semRecv(t, cons, 5*time.Second); v != "second" {
		t.Fatalf("got %q, want second", v)
	}
	// Each lists the other.
	if ps := semConnectedPeers(prod.Consumers()); len(ps) != 1 || ps[0] != n1.ID() {
		t.Errorf("producer's consumers: %v, want [%s]", ps, n1.ID())
	}
	if ps := semConnectedPeers(cons.Producers()); len(ps) != 1 || ps[0] != n0.ID() {
		t.Errorf("consumer's producers: %v, want [%s]", ps, n0.ID())
	}

	_ = cons.Close()
	if err := prod.WaitOffline(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Offline after the consumer left: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(prod.Consumers()) == 0 },
		"the producer still lists %+v", testutil.Lazy(func() any { return prod.Consumers() }))
	if err := prod.TrySend("third"); !errors.Is(err, streams.ErrOffline) {
		t.Errorf("TrySend after the consumer left: %v, want ErrOffline", err)
	}

	blocked := make(chan error, 1)
	go func() { blocked <- prod.Send(context.Background(), "never") }()
	_ = prod.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, streams.ErrClosed) {
			t.Errorf("Send blocked across Close: %v, want ErrClosed", err)
		}
	case <-time.After(testutil.Scale(5 * time.Second)):
		t.Fatal("a Send blocked while offline did not return after Close")
	}
	if err := prod.TrySend("late"); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("TrySend after Close: %v, want ErrClosed", err)
	}
	if err := prod.Send(testCtx(t, time.Second), "late"); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}
