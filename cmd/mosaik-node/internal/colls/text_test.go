package colls

import (
	"bytes"
	"strings"
	"testing"
)

// The text output keeps one entry per line, in two tab-separated fields:
// keys and values holding tabs, newlines or control characters (or
// starting with a quote) are printed quoted; plain ones as they are.
func TestListing_TextFieldsQuoted(t *testing.T) {
	l := Listing{Entries: []Entry{
		{"plain", "value"},
		{"tab\tkey", "line\nbreak"},
		{`"quoted"`, "bell\a"},
	}}
	var b bytes.Buffer
	if err := l.Write(&b, false); err != nil {
		t.Fatal(err)
	}
	want := "plain\tvalue\n" + `"tab\tkey"` + "\t" + `"line\nbreak"` + "\n" + `"\"quoted\""` + "\t" + `"bell\a"` + "\n"
	if b.String() != want {
		t.Fatalf("text output:\n%q\nwant\n%q", b.String(), want)
	}
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if strings.Count(line, "\t") != 1 {
			t.Fatalf("line %q is not two tab-separated fields", line)
		}
	}
	ch := Change{Version: 3, Op: "put", Key: "k\n", Value: "v"}
	if got := ch.String(); got != "3\tput\t"+`"k\n"`+"\tv" {
		t.Fatalf("change line %q", got)
	}
}
