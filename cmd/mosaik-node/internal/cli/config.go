package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
	yaml "go.yaml.in/yaml/v3"
)

// maxConfigSize caps a config file; larger files are refused unread.
const maxConfigSize = 1 << 20

// usageError marks errors in the command line or configuration: the
// command exits with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// loadConfig reads a TOML (.toml) or YAML (.yaml, .yml) file of flag
// names to values: strings, numbers, booleans or lists (for repeatable
// flags). Keys may use '-' or '_'.
func loadConfig(path string) (map[string]any, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, usagef("config %s: %v", path, err)
	}
	if st.Size() > maxConfigSize {
		return nil, usagef("config %s: larger than %d bytes", path, maxConfigSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("config %s: %v", path, err)
	}
	return parseConfig(filepath.Ext(path), data)
}

func parseConfig(ext string, data []byte) (map[string]any, error) {
	m := map[string]any{}
	switch strings.ToLower(ext) {
	case ".toml":
		if _, err := toml.Decode(string(data), &m); err != nil {
			return nil, usagef("config: %v", err)
		}
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, usagef("config: %v", err)
		}
	default:
		return nil, usagef("config: unknown format %q (use .toml, .yaml or .yml)", ext)
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[strings.ReplaceAll(k, "_", "-")] = v
	}
	return out, nil
}

// applyLayers fills every flag not set on the command line from the
// environment (MOSAIK_<NAME>, upper case, '-' as '_'; lists comma
// separated) and then from the config file: flags override the
// environment, which overrides the file.
func applyLayers(fs *flag.FlagSet, cfg map[string]any, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		env := "MOSAIK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			for _, part := range splitIfRepeatable(f, v) {
				if err := fs.Set(f.Name, part); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
				}
			}
			return
		}
		v, ok := cfg[f.Name]
		if !ok {
			return
		}
		for _, part := range values(v) {
			if err := fs.Set(f.Name, part); err != nil {
				errs = append(errs, fmt.Errorf("config key %s=%q: %v", f.Name, part, err))
			}
		}
	})
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[f.Name] = true })
	for k := range cfg {
		if !known[k] {
			errs = append(errs, fmt.Errorf("config key %q is not a flag of this command", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

func splitIfRepeatable(f *flag.Flag, v string) []string {
	if _, ok := f.Value.(*listFlag); ok {
		return strings.Split(v, ",")
	}
	return []string{v}
}

func values(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case []string:
		return x
	}
	return []string{fmt.Sprint(v)}
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// splitList splits "a,b" into its non-empty trimmed parts.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
