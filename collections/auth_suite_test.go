package collections_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
)

// jwtIssuer is one of mosaik's JWT test setups: HS256 over H(secret).
type jwtIssuer struct {
	sk  policy.JWTSigningKey
	iss string
	v   *policy.JWT
}

func newJWTIssuer(t testing.TB, secret, iss string) jwtIssuer {
	t.Helper()
	h := sha256.Sum256([]byte(secret))
	sk, err := policy.HS256SigningKey(h[:])
	if err != nil {
		t.Fatal(err)
	}
	nw := catalog.IDFromString(testNetwork)
	return jwtIssuer{sk: sk, iss: iss, v: policy.NewJWT(nw, sk.VerifyingKey()).AllowIssuer(iss)}
}

func (j jwtIssuer) ticket(t testing.TB, holder peer.ID) catalog.Ticket {
	t.Helper()
	tk, err := policy.NewJWTBuilder(catalog.IDFromString(testNetwork), j.sk).Issuer(j.iss).ExpiresAt(time.Now().Add(time.Hour)).Build(holder)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// ticketedNode starts a node whose first entry holds a ticket of each
// issuer.
func ticketedNode(t testing.TB, opts []node.Option, issuers ...jwtIssuer) *node.Node {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	var tks []catalog.Ticket
	for _, j := range issuers {
		tks = append(tks, j.ticket(t, id))
	}
	return startNode(t, append(opts, node.WithIdentity(k), node.WithEntry(func(e *catalog.Entry) {
		e.Tickets = append(e.Tickets, tks...)
	}))...)
}

// authSetup is mosaik's auth.rs setup: n0 and n1 hold tickets of a and
// b, n2 only of b; n2's bond refusals are counted by group in metrics.
type authSetup struct {
	t          *testing.T
	name       string
	n0, n1, n2 *node.Node
	a, b       jwtIssuer
	metrics    *sdkmetric.ManualReader
}

// refused returns the NotAllowed bond refusals n2 counted for group.
func (s authSetup) refused(group catalog.ID) int64 {
	var rm metricdata.ResourceMetrics
	if err := s.metrics.Collect(context.Background(), &rm); err != nil {
		s.t.Fatal(err)
	}
	want := []attribute.KeyValue{attribute.String("group", group.Short()), attribute.Int("code", int(groups.CodeNotAllowed))}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "mosaik.groups.bonds.refusals" || !ok {
				continue
			}
		points:
			for _, p := range sum.DataPoints {
				for _, kv := range want {
					if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue points
					}
				}
				total += p.Value
			}
		}
	}
	return total
}

// shutOut asserts what a reader without a valid ticket sees: nothing for
// 3 s (as in mosaik), and its refusal at the bond counted in its metrics
// for the group (its log says "bond attempt failed" at Debug).
func (s authSetup) shutOut(r interface {
	Len() int
	Version() collections.Version
	GroupID() catalog.ID
}) {
	s.t.Helper()
	testutil.Never(s.t, 3*time.Second, 50*time.Millisecond, func() string {
		if r.Len() != 0 || r.Version() != 0 {
			return "the reader without a ticket received data"
		}
		return ""
	})
	testutil.Eventually(s.t, 10*time.Second, func() bool { return s.refused(r.GroupID()) > 0 },
		"no NotAllowed refusal counted at the reader without a ticket")
}

// TestAuthTickets ports tests/collections/auth.rs for Map and
// PriorityQueue, on three shared nodes.
func TestAuthTickets(t *testing.T) {
	a := newJWTIssuer(t, "mosaik.test.jwt.secret", "mosaik.test.jwt.issuer")
	b := newJWTIssuer(t, "mosaik.test.jwt.secret.b", "mosaik.test.jwt.issuer.b")
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	n0 := ticketedNode(t, nil, a, b)
	boot := node.WithBootstrapPeers(n0.AddrInfo())
	n1 := ticketedNode(t, []node.Option{boot}, a, b)
	n2 := ticketedNode(t, []node.Option{boot, node.WithMeterProvider(mp)}, b)
	runCases(t, 6, authCases, func(t *testing.T) authSetup {
		return authSetup{t: t, name: freshName(t), n0: n0, n1: n1, n2: n2, a: a, b: b, metrics: reader}
	})
}

// authMap opens the setup's map on n0 (writer), n1 and n2 (readers) with
// opts, and waits until n0 and n1 are online.
func authMap[K, V any](s authSetup, def collections.MapDefinition[K, V]) (*collections.Map[K, V], *collections.MapReader[K, V], *collections.MapReader[K, V]) {
	s.t.Helper()
	w, err := def.Writer(s.n0)
	if err != nil {
		s.t.Fatal(err)
	}
	closeAtEnd(s.t, w)
	var rs [2]*collections.MapReader[K, V]
	for i, n := range []*node.Node{s.n1, s.n2} {
		if rs[i], err = def.Reader(n); err != nil {
			s.t.Fatal(err)
		}
		closeAtEnd(s.t, rs[i])
	}
	online(s.t, w, rs[0])
	return w, rs[0], rs[1]
}

var authCases = []netCase[authSetup]{
	// mosaik: tests/collections/auth.rs map_auth_tickets
	{"MapAuthTickets", func(t *testing.T, s authSetup) {
		w, r1, r2 := authMap(s, collections.MapDef[uint64, uint64](s.name, fast, collections.WithRequireTicket(s.a.v)))
		v := doer(t)(w.Insert(subCtx(t), 1, 100))
		reach(t, v, r1)
		if got, ok := r1.Get(1); !ok || got != 100 {
			t.Fatalf("reader: %d %v", got, ok)
		}
		s.shutOut(r2)
	}},
	// mosaik: tests/collections/auth.rs priority_queue_auth_tickets
	{"PriorityQueueAuthTickets", func(t *testing.T, s authSetup) {
		def := collections.PriorityQueueDef[uint64, uint64, uint64](s.name, fast, collections.WithRequireTicket(s.a.v))
		w, err := def.Writer(s.n0)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, w)
		r1, err := def.Reader(s.n1)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, r1)
		r2, err := def.Reader(s.n2)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, r2)
		online(t, w, r1)
		v := doer(t)(w.Insert(subCtx(t), 10, 1, 100))
		reach(t, v, r1)
		if got, ok := r1.Get(1); !ok || got != 100 {
			t.Fatalf("reader: %d %v", got, ok)
		}
		s.shutOut(r2)
	}},
	// mosaik: tests/collections/auth.rs different_auths_produce_different_group_ids
	{"DifferentAuthsProduceDifferentGroupIds", func(t *testing.T, s authSetup) {
		seen := map[catalog.ID]bool{}
		for _, opts := range [][]collections.Option{{collections.WithRequireTicket(s.a.v)}, {collections.WithRequireTicket(s.b.v)}, nil} {
			m, err := collections.NewMapReader[uint64, uint64](s.n0, s.name, append(opts, fast)...)
			if err != nil {
				t.Fatal(err)
			}
			seen[m.GroupID()] = true
			_ = m.Close()
		}
		if len(seen) != 3 {
			t.Fatalf("%d group ids for three auth configurations", len(seen))
		}
	}},
	// mosaik: tests/collections/auth.rs collection_macro_with_require_ticket
	// (a definition value, Go's stand-in for the macro)
	{"CollectionMacroWithRequireTicket", func(t *testing.T, s authSetup) {
		w, r1, r2 := authMap(s, collections.MapDef[string, string](s.name, fast, collections.WithRequireTicket(s.a.v)))
		v := doer(t)(w.Insert(subCtx(t), "k", "v"))
		reach(t, v, r1)
		if got, ok := r1.Get("k"); !ok || got != "v" {
			t.Fatalf("reader: %q %v", got, ok)
		}
		s.shutOut(r2)
	}},
	// mosaik: tests/collections/auth.rs collection_macro_with_multiple_tickets:
	// n2 holds a ticket of b only.
	{"CollectionMacroWithMultipleTickets", func(t *testing.T, s authSetup) {
		w, r1, r2 := authMap(s, collections.MapDef[string, string](s.name, fast,
			collections.WithRequireTicket(s.a.v), collections.WithRequireTicket(s.b.v)))
		v := doer(t)(w.Insert(subCtx(t), "k", "v"))
		reach(t, v, r1)
		if got, ok := r1.Get("k"); !ok || got != "v" {
			t.Fatalf("reader: %q %v", got, ok)
		}
		s.shutOut(r2)
	}},
	// mosaik: tests/collections/auth.rs macros_different_validators_group_ids:
	// on a node without their tickets, two writers of one name with
	// different validators each come online alone, in different groups.
	{"MacrosDifferentValidatorsGroupIds", func(t *testing.T, s authSetup) {
		var ids []catalog.ID
		for _, v := range []*policy.JWT{s.a.v, s.b.v} {
			w, err := collections.MapDef[string, string](s.name, fast, collections.WithRequireTicket(v)).Writer(s.n2)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, w)
			online(t, w)
			ids = append(ids, w.GroupID())
		}
		if ids[0] == ids[1] {
			t.Fatal("different validators, one group id")
		}
	}},
}
