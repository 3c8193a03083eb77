package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	flag "github.com/spf13/pflag"
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
		// Each value as written: YAML's implicit types would read
		// "network: 010" as the integer 8 and "tags: 1.10" as 1.1.
		var nodes map[string]yaml.Node
		if err := yaml.Unmarshal(data, &nodes); err != nil {
			return nil, usagef("config: %v", err)
		}
		var errs []error
		for k, n := range nodes {
			v, err := yamlValue(&n)
			if err != nil {
				errs = append(errs, fmt.Errorf("config key %q: %v", k, err))
				continue
			}
			m[k] = v
		}
		if err := errors.Join(errs...); err != nil {
			return nil, usageError{err}
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

// yamlValue is a YAML value as text: a scalar as written, a sequence of
// scalars as a list. No value (null) and mappings are errors.
func yamlValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, errors.New("no value (give one, or leave the key out)")
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return nil, errors.New("a list may hold only values")
			}
			out = append(out, e.Value)
		}
		return out, nil
	}
	return nil, errors.New("a mapping (or alias) is no flag value: give a value or a list")
}

// envName is the environment variable of a flag: MOSAIK_<NAME>, upper
// case, '-' as '_'.
func envName(flagName string) string {
	return "MOSAIK_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Where a flag's value came from, as config show prints it.
const (
	srcFlag    = "flag"
	srcDefault = "default"
)

// sources maps a flag name to where its value came from: srcFlag, "env
// MOSAIK_X", "file PATH" or srcDefault.
type sources map[string]string

// configPath is the config file of a command: --config, else
// MOSAIK_CONFIG, else none. It returns the source with the path.
func configPath(fs *flag.FlagSet, getenv func(string) string) (path, source string) {
	if f := fs.Lookup("config"); f != nil && f.Changed {
		return f.Value.String(), srcFlag
	}
	if v := getenv("MOSAIK_CONFIG"); v != "" {
		return v, "env MOSAIK_CONFIG"
	}
	return "", srcDefault
}

// loadLayers reads the config file of a command (see configPath) and
// fills its unset flags from the environment and the file (applyLayers).
func loadLayers(fs *flag.FlagSet, getenv func(string) string) (sources, error) {
	path, src := configPath(fs, getenv)
	var cfg map[string]any
	if path != "" {
		var err error
		if cfg, err = loadConfig(path); err != nil {
			return nil, err
		}
		if src != srcFlag {
			_ = fs.Set("config", path)
		}
	}
	srcs, err := applyLayers(fs, cfg, path, getenv)
	if err != nil {
		return nil, err
	}
	srcs["config"] = src
	return srcs, nil
}

// applyLayers fills every flag not set on the command line from the
// environment (MOSAIK_<NAME>, upper case, '-' as '_'; lists comma
// separated) and then from the config file at path: flags override the
// environment, which overrides the file, which overrides the defaults.
// It returns where each flag's value came from.
func applyLayers(fs *flag.FlagSet, cfg map[string]any, path string, getenv func(string) string) (sources, error) {
	srcs := sources{}
	var errs []error
	var pending []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		switch {
		case f.Name == "config" || f.Name == "help":
		case f.Changed:
			srcs[f.Name] = srcFlag
		default:
			pending = append(pending, f)
		}
	})
	for _, f := range pending {
		env := envName(f.Name)
		if v := getenv(env); v != "" {
			for _, part := range splitIfRepeatable(f, v) {
				if err := fs.Set(f.Name, part); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
				}
			}
			srcs[f.Name] = "env " + env
			continue
		}
		v, ok := cfg[f.Name]
		if !ok {
			srcs[f.Name] = srcDefault
			continue
		}
		parts, err := values(f, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("config key %s: %v", f.Name, err))
		}
		for _, part := range parts {
			if err := fs.Set(f.Name, part); err != nil {
				errs = append(errs, fmt.Errorf("config key %s=%q: %v", f.Name, part, err))
			}
		}
		srcs[f.Name] = "file " + path
	}
	for k := range cfg {
		// One file serves every command (MOSAIK_CONFIG): a key of another
		// node command (run's data-dir in produce) is not an error, a key
		// of none is a typo.
		if fs.Lookup(k) == nil && !nodeFlagNames()[k] || k == "help" {
			errs = append(errs, fmt.Errorf("config key %q is not a flag of any node command", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{err}
	}
	return srcs, nil
}

// nodeFlagNames is the flags of every node command.
var nodeFlagNames = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{}
	for _, name := range []string{"run", "produce", "consume", "catalog", "map put", "map list"} {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		(&nodeCmd{name: name}).register(fs)
		fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	}
	return names
})

func splitIfRepeatable(f *flag.Flag, v string) []string {
	if _, ok := f.Value.(*listFlag); ok {
		return strings.Split(v, ",")
	}
	return []string{v}
}

// values is a config value as the flag's values. A TOML number, boolean
// or date given to a flag of text (a string or a list) is refused: TOML
// reads 0x1F as 31 and 1.10 as 1.1, so quoting is the only way to give
// such a text. Tables are refused for every flag.
func values(f *flag.Flag, v any) ([]string, error) {
	text := f.Value.Type() == "string" || f.Value.Type() == "list"
	one := func(e any) (string, error) {
		switch x := e.(type) {
		case string:
			return x, nil
		case map[string]any, []map[string]any:
			return "", errors.New("a table is no flag value")
		}
		if text {
			return "", fmt.Errorf("%v is a %s, not a text: quote it", e, tomlKind(e))
		}
		return fmt.Sprint(e), nil
	}
	var list []string
	switch x := v.(type) {
	case []string:
		list = x
	case []any:
		for _, e := range x {
			s, err := one(e)
			if err != nil {
				return nil, err
			}
			list = append(list, s)
		}
	default:
		s, err := one(v)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	if f.Value.Type() == "string" {
		// A comma-separated flag (tags): a list is its parts.
		return []string{strings.Join(list, ",")}, nil
	}
	return list, nil
}

func tomlKind(v any) string {
	switch v.(type) {
	case int64, float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "date or time"
}
