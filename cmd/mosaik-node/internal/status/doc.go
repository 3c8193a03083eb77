// Package status is the reference node's observation surface, served by
// mosaik-node --http: a live HTML page of the node, its catalog,
// its streams, its groups and collections, the same data as JSON, a health check and a Prometheus
// scrape endpoint.
//
// The usual sequence:
//
//	m, err := status.NewMetrics()                  // one registry for everything
//	n, err := node.New("my-app",
//		node.WithMeterProvider(m.MeterProvider()),  // mosaik's OTel instruments
//		node.WithPrometheusRegisterer(m.Registerer())) // go-libp2p's collectors
//	err = status.New(n, m).Serve(ctx, "127.0.0.1:8080") // until ctx ends
//
// Endpoints (GET or HEAD):
//
//	/             HTML; an inline script fetches the page every 2 s
//	              (WithRefresh) and swaps the new content in, without a
//	              reload, and shows a banner when the node stops answering;
//	              without scripts the page reloads itself. No external
//	              assets
//	/api/node     NodeDoc
//	/api/catalog  CatalogDoc (what `mosaik-node catalog --json` prints)
//	/api/streams  StreamsDoc
//	/api/groups   GroupsDoc: per group its role, raft role, leader, term,
//	              commit and applied index, and bonds with their ages;
//	              a collection's group also its type, name, size,
//	              version and sync state
//	/api/collections  CollectionsDoc: the collections only
//	/healthz      200 "ok"; 503 "closing" once the node closes
//	/metrics      Prometheus exposition (404 without Metrics)
//
// Access: Start and Serve bind a host-less address (":8080") to 127.0.0.1;
// name 0.0.0.0 or an interface to expose the endpoints. On a loopback
// address without a token they answer only requests whose Host is
// localhost or an IP address (LoopbackHostsOnly: a web page cannot read
// them by rebinding its DNS name to 127.0.0.1). WithToken requires
// "Authorization: Bearer <token>" on every endpoint but /healthz, compared
// in constant time; a browser does not send it by itself, so with a token
// the HTML page is for a proxy that adds it, or for curl -H. The Server's
// own listener bounds slow and idle clients with DefaultTimeouts (or
// WithTimeouts) and caps request headers at 16 KiB.
//
// The caller owns the node and the Metrics: closing the Server closes
// neither. The docs are built from one catalog snapshot, the streams
// service's Handles and the groups service's Status at request time;
// nothing is cached.
package status
