package cli

import (
	"testing"
)

// FuzzParseConfig feeds arbitrary TOML and YAML documents to the config
// parser: it must never panic, and whatever it accepts has keys in flag
// form (no underscores).
func FuzzParseConfig(f *testing.F) {
	f.Add(true, []byte("network = \"x\"\ntags = \"a,b\"\nlisten = [\"/ip4/127.0.0.1/tcp/1\"]\n"))
	f.Add(false, []byte("network: x\nlog_level: debug\nbootstrap:\n  - /ip4/1.2.3.4/tcp/1/p2p/12D3KooW\n"))
	f.Add(true, []byte("[table]\nkey = 1\n"))
	f.Add(false, []byte("&a [*a, *a, *a]"))
	f.Add(false, []byte("{{{{"))
	f.Fuzz(func(t *testing.T, toml bool, data []byte) {
		ext := ".yaml"
		if toml {
			ext = ".toml"
		}
		if len(data) > maxConfigSize {
			return // loadConfig refuses these before parsing
		}
		m, err := parseConfig(ext, data)
		if err != nil {
			return
		}
		for k := range m {
			for _, c := range k {
				if c == '_' {
					t.Fatalf("key %q kept an underscore", k)
				}
			}
		}
	})
}
