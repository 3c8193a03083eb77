package node

import (
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// oddProvider is comparable by type, but its field may hold a value that
// is not: comparing two such providers panics.
type oddProvider struct {
	noop.MeterProvider
	tag any
}

func TestSameProvider(t *testing.T) {
	p := &oddProvider{}
	for _, tc := range []struct {
		name string
		a, b metric.MeterProvider
		want bool
	}{
		{"one pointer", p, p, true},
		{"two pointers", p, &oddProvider{}, false},
		{"other types", p, noop.NewMeterProvider(), false},
		{"uncomparable values", oddProvider{tag: []int{1}}, oddProvider{tag: []int{1}}, false},
	} {
		if got := sameProvider(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
