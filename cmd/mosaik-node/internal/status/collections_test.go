package status_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A node with a map: /api/collections, /api/groups and the page list it
// with its type, name, size, version, leader and sync state.
func TestServer_Collections(t *testing.T) {
	n := startNode(t)
	m, err := collections.NewMap[string, string](n, "orders", collections.WithGroupOptions(groups.WithParams(groups.TestParams())))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(20*time.Second))
	defer cancel()
	if err := m.When().Online(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := m.Extend(ctx, []collections.KV[string, string]{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}})
	if err != nil {
		t.Fatal(err)
	}
	h := status.New(n, nil).Handler()
	serve := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		return rec.Body.String()
	}
	var doc status.CollectionsDoc
	testutil.Eventually(t, 10*time.Second, func() bool {
		if err := json.Unmarshal([]byte(serve("/api/collections")), &doc); err != nil {
			t.Fatal(err)
		}
		return len(doc.Collections) == 1 && doc.Collections[0].Sync == "in sync"
	}, "the map is not listed in sync: %+v", &doc)
	c := doc.Collections[0]
	if c.Type != "map" || c.Name != "orders" || c.Size != 2 || c.Version < uint64(v) || c.Leader != n.ID().String() ||
		c.Role != "writer" || c.Raft != "leader" || c.GroupID != m.GroupID().String() {
		t.Fatalf("collection row %+v", c)
	}
	var gd status.GroupsDoc
	if err := json.Unmarshal([]byte(serve("/api/groups")), &gd); err != nil {
		t.Fatal(err)
	}
	if len(gd.Groups) != 1 || gd.Groups[0].Collection == nil || gd.Groups[0].Collection.Name != "orders" {
		t.Fatalf("/api/groups does not describe the collection: %+v", gd.Groups)
	}
	page := serve("/")
	for _, want := range []string{"Collections: 1", "<td>orders</td>", "in sync", "/api/collections"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
