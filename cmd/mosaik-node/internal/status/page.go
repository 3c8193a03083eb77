package status

import (
	_ "embed"
	"fmt"
	"html/template"
	"time"
)

//go:embed page.html
var pageHTML string

// page is the status page template. It is parsed once and only executed
// afterwards (template execution is safe for concurrent use).
var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"dur":        fmtMS,
	"rtt":        fmtRTT,
	"bytes":      fmtBytes,
	"stateClass": stateClass,
	"when":       fmtWhen,
	"handles": func(title, peer string, hs []HandleDoc) handlesView {
		return handlesView{Title: title, Peer: peer, Handles: hs}
	},
}).Parse(pageHTML))

// pageData is what page renders.
type pageData struct {
	Node        NodeDoc
	Catalog     CatalogDoc
	Streams     StreamsDoc
	Groups      GroupsDoc
	Collections CollectionsDoc
	HasMetrics  bool
	Now         string
	RefreshMS   int64 // the script's fetch interval
	RefreshS    int64 // the reload interval without scripts, whole seconds
}

type handlesView struct {
	Title   string
	Peer    string // what a subscription's remote end is: "consumer" or "producer"
	Handles []HandleDoc
}

// fmtMS renders milliseconds as a duration: to the millisecond below a
// second, to the second above.
func fmtMS(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d.Abs() < time.Second {
		return d.String()
	}
	return d.Round(time.Second).String()
}

// fmtWhen renders an RFC 3339 time as a date and a time of day in UTC,
// to the second; the raw value if it does not parse.
func fmtWhen(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtRTT(ms *float64) string {
	if ms == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", *ms)
}

func fmtBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func stateClass(s string) string {
	switch s {
	case "Connected":
		return "ok"
	case "Connecting":
		return "warn"
	}
	return "bad"
}
