package status

import (
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sourcePath matches a label value naming a source file: an absolute
// path ending in ".go", with go-libp2p's "-L<line>" suffix or none.
var sourcePath = regexp.MustCompile(`^/.*\.go(-L[0-9]+)?$`)

// trimPaths wraps g so that label values naming a source file keep only
// their last two path elements ("go-libp2p-pubsub/gossipsub.go-L708"): the
// rest is the build machine's module cache or checkout, which says nothing
// to an operator and changes between builds.
func trimPaths(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v := lp.GetValue(); sourcePath.MatchString(v) {
						lp.Value = &[]string{trimPath(v)}[0]
					}
				}
			}
		}
		return mfs, err
	})
}

// trimPath keeps the last two elements of a slash-separated path.
func trimPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return strings.TrimPrefix(p, "/")
	}
	if j := strings.LastIndexByte(p[:i], '/'); j >= 0 {
		return p[j+1:]
	}
	return p[1:]
}
