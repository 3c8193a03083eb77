package node

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/metric/noop"
)

// kad-dht (v0.42) creates its instruments at package init on OpenTelemetry's
// global meter provider and takes no provider of its own. An application
// that gives a node its provider (WithMeterProvider) would have to set the
// global one as well to see them, and then once per process only: the
// global provider delegates to the first provider set and to no later one.
//
// So, when the application has set no global provider, the first node built
// with WithMeterProvider sets libp2pMeters as the global provider. It
// forwards the instruments of libp2p's scopes (github.com/libp2p/...) to the
// providers of the nodes alive at the time of each measurement, renamed
// with a "libp2p.kad_dht." prefix (scraped as libp2p_kad_dht_rpc_*, not a
// bare rpc_*), and gives every other scope a no-op meter: instruments of
// the application's own scopes are not sent to the nodes' providers.
//
// The state is process-wide because kad-dht's instruments are: with several
// nodes in one process, each provider sees the measurements of every DHT.
// Asynchronous instruments are not forwarded (kad-dht creates none).
var libp2pMeters = &fanout{members: map[*fanMember]struct{}{}}

// installFanout sets libp2pMeters as the global meter provider, once, and
// only while the global provider is still OpenTelemetry's default (the
// delegating one). It reports whether libp2pMeters is the global provider.
func installFanout() bool {
	libp2pMeters.once.Do(func() {
		if isDefaultGlobal(otel.GetMeterProvider()) {
			otel.SetMeterProvider(libp2pMeters)
			libp2pMeters.installed = true
		}
	})
	return libp2pMeters.installed
}

// isDefaultGlobal reports whether mp is OpenTelemetry's default global
// provider, which records nothing until a provider is set. Its type is
// unexported, hence the name test.
func isDefaultGlobal(mp metric.MeterProvider) bool {
	return fmt.Sprintf("%T", mp) == "*global.meterProvider"
}

// attachMeters forwards kad-dht's instruments to mp until the returned
// detach is called. It does nothing when the application set its own
// global provider (kad-dht records there).
//
// Nodes sharing one provider share one member (counted), so that each
// measurement reaches that provider once, not once per node.
func attachMeters(mp metric.MeterProvider) (detach func()) {
	if _, ok := mp.(*fanout); ok || !installFanout() {
		return func() {}
	}
	libp2pMeters.mu.Lock()
	var m *fanMember
	for x := range libp2pMeters.members {
		if sameProvider(x.mp, mp) {
			m = x
			break
		}
	}
	if m == nil {
		m = &fanMember{mp: mp, insts: map[any]any{}}
		libp2pMeters.members[m] = struct{}{}
	}
	m.refs++
	libp2pMeters.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			libp2pMeters.mu.Lock()
			if m.refs--; m.refs == 0 {
				delete(libp2pMeters.members, m)
			}
			libp2pMeters.mu.Unlock()
		})
	}
}

// sameProvider reports whether a and b are one provider; providers that
// cannot be compared (a type that is not comparable, or a comparable
// struct holding one in an interface field) count as distinct.
func sameProvider(a, b metric.MeterProvider) (same bool) {
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || !ta.Comparable() {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// fanout is a meter provider that forwards synchronous instruments to its
// members' providers. Safe for concurrent use.
type fanout struct {
	embedded.MeterProvider
	once      sync.Once
	installed bool

	mu      sync.RWMutex
	members map[*fanMember]struct{}
}

// fanMember is one node's provider and the instruments made on it, keyed
// by the fanout instrument they stand for.
type fanMember struct {
	mp    metric.MeterProvider
	refs  int // nodes attached with mp; under fanout.mu
	mu    sync.Mutex
	insts map[any]any
}

// Meter forwards libp2p's scopes and drops the others.
func (f *fanout) Meter(scope string, _ ...metric.MeterOption) metric.Meter {
	if !strings.HasPrefix(scope, "github.com/libp2p/") {
		return noop.Meter{}
	}
	prefix := "libp2p."
	if strings.HasPrefix(scope, "github.com/libp2p/go-libp2p-kad-dht") {
		prefix = "libp2p.kad_dht."
	}
	return &fanMeter{f: f, scope: scope, prefix: prefix}
}

// each calls fn with every member's instrument for key, made by create on
// first use.
func each[I any](f *fanout, key any, create func(metric.MeterProvider) (I, error), fn func(I)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for m := range f.members {
		m.mu.Lock()
		inst, ok := m.insts[key].(I)
		if !ok {
			var err error
			if inst, err = create(m.mp); err != nil {
				m.mu.Unlock()
				otel.Handle(err)
				continue
			}
			m.insts[key] = inst
		}
		m.mu.Unlock()
		fn(inst)
	}
}

func (f *fanout) enabled() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.members) > 0
}

// fanMeter makes forwarding instruments of the kinds kad-dht uses.
// Embedding noop.Meter supplies the other kinds, which are not forwarded.
type fanMeter struct {
	noop.Meter
	f      *fanout
	scope  string
	prefix string
}

func (m *fanMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return &fanInt64Counter{f: m.f, create: func(mp metric.MeterProvider) (metric.Int64Counter, error) {
		return mp.Meter(m.scope).Int64Counter(m.prefix+name, opts...)
	}}, nil
}

func (m *fanMeter) Int64Histogram(name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return &fanInt64Histogram{f: m.f, create: func(mp metric.MeterProvider) (metric.Int64Histogram, error) {
		return mp.Meter(m.scope).Int64Histogram(m.prefix+name, opts...)
	}}, nil
}

func (m *fanMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return &fanFloat64Histogram{f: m.f, create: func(mp metric.MeterProvider) (metric.Float64Histogram, error) {
		return mp.Meter(m.scope).Float64Histogram(m.prefix+name, opts...)
	}}, nil
}

func (m *fanMeter) Int64Gauge(name string, opts ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	return &fanInt64Gauge{f: m.f, create: func(mp metric.MeterProvider) (metric.Int64Gauge, error) {
		return mp.Meter(m.scope).Int64Gauge(m.prefix+name, opts...)
	}}, nil
}

type fanInt64Counter struct {
	embedded.Int64Counter
	f      *fanout
	create func(metric.MeterProvider) (metric.Int64Counter, error)
}

func (c *fanInt64Counter) Add(ctx context.Context, v int64, opts ...metric.AddOption) {
	each(c.f, c, c.create, func(i metric.Int64Counter) { i.Add(ctx, v, opts...) })
}

func (c *fanInt64Counter) Enabled(context.Context) bool { return c.f.enabled() }

type fanInt64Histogram struct {
	embedded.Int64Histogram
	f      *fanout
	create func(metric.MeterProvider) (metric.Int64Histogram, error)
}

func (h *fanInt64Histogram) Record(ctx context.Context, v int64, opts ...metric.RecordOption) {
	each(h.f, h, h.create, func(i metric.Int64Histogram) { i.Record(ctx, v, opts...) })
}

func (h *fanInt64Histogram) Enabled(context.Context) bool { return h.f.enabled() }

type fanFloat64Histogram struct {
	embedded.Float64Histogram
	f      *fanout
	create func(metric.MeterProvider) (metric.Float64Histogram, error)
}

func (h *fanFloat64Histogram) Record(ctx context.Context, v float64, opts ...metric.RecordOption) {
	each(h.f, h, h.create, func(i metric.Float64Histogram) { i.Record(ctx, v, opts...) })
}

func (h *fanFloat64Histogram) Enabled(context.Context) bool { return h.f.enabled() }

type fanInt64Gauge struct {
	embedded.Int64Gauge
	f      *fanout
	create func(metric.MeterProvider) (metric.Int64Gauge, error)
}

func (g *fanInt64Gauge) Record(ctx context.Context, v int64, opts ...metric.RecordOption) {
	each(g.f, g, g.create, func(i metric.Int64Gauge) { i.Record(ctx, v, opts...) })
}

func (g *fanInt64Gauge) Enabled(context.Context) bool { return g.f.enabled() }
