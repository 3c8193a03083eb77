package node_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
)

// TestEvictionTickets_ValidTicketOutlastsJunk: with WithEvictionTickets, a
// full catalog evicts a newer peer whose ticket is made up (or of a class
// no validator knows) before an older one holding an issuer-signed
// ticket, and before that one it evicts a peer holding none. Without the
// option no ticket counts, so the newest peer goes first whatever it
// holds.
func TestEvictionTickets_ValidTicketOutlastsJunk(t *testing.T) {
	const name = "node-test/evict-tickets"
	nw := catalog.IDFromString(name)
	issuer, issuerID := newIdentity(t)
	validator := policy.NewSignedTicketValidator(nw, issuerID)
	params := discovery.TestParams()
	params.Catalog.MaxPeers = 2
	params.Catalog.EvictMinAge = 0
	params.DisableGossip, params.DisableSync = true, true

	seal := func(t *testing.T, k crypto.PrivKey, id peer.ID, tickets ...catalog.Ticket) *catalog.SignedEntry {
		t.Helper()
		se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion,
			Version: catalog.NewVersion(time.Now()), Tickets: tickets}, k)
		if err != nil {
			t.Fatal(err)
		}
		return se
	}
	issued := func(t *testing.T, id peer.ID) catalog.Ticket {
		t.Helper()
		tk, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: id, Network: nw, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	for _, tc := range []struct {
		name      string
		opts      []node.Option
		wantValid bool // whether the valid-ticket holder survives
	}{
		{"with the option", []node.Option{node.WithEvictionTickets(validator)}, true},
		{"without it", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, name, append([]node.Option{node.WithDiscoveryParams(params), node.WithoutDHT()}, tc.opts...)...)
			kValid, idValid := newIdentity(t)
			kJunk, idJunk := newIdentity(t)
			kNew, idNew := newIdentity(t)
			junkTicket := issued(t, idJunk)
			junkTicket.Data = append([]byte(nil), junkTicket.Data...)
			junkTicket.Data[len(junkTicket.Data)-1] ^= 1 // the issuer's signature no longer verifies
			junk := seal(t, kJunk, idJunk, junkTicket)
			valid := seal(t, kValid, idValid, issued(t, idValid))
			store := n.Discovery().Store()
			// Arrival order junk, valid, new: the catalog (2 peers) is full
			// when the third arrives, and eviction picks the newest peer not
			// vouched for.
			now := time.Now()
			for i, se := range []*catalog.SignedEntry{junk, valid, seal(t, kNew, idNew)} {
				if _, err := store.Merge(se, now.Add(time.Duration(i)*time.Millisecond)); err != nil {
					t.Fatalf("merge %s: %v", se.Entry.PeerID, err)
				}
			}
			_, validHeld := n.Catalog().Get(idValid)
			_, junkHeld := n.Catalog().Get(idJunk)
			if _, ok := n.Catalog().Get(idNew); !ok {
				t.Fatal("the new peer did not enter the full catalog")
			}
			if validHeld != tc.wantValid || junkHeld == tc.wantValid {
				t.Fatalf("held: valid-ticket peer %v, junk-ticket peer %v; want %v, %v", validHeld, junkHeld, tc.wantValid, !tc.wantValid)
			}
		})
	}
}
