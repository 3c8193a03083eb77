package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"
)

// configCmd is "config show": run's flags, resolved as run resolves
// them, printed with where each value came from.
func configCmd(st *state) *cobra.Command {
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration",
		RunE:  func(*cobra.Command, []string) error { return usagef("config: want show") },
	}
	nc := &nodeCmd{name: "run"}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show [run flags]",
		Short: "Print run's effective configuration and the source of each value",
		Long: `Print the configuration that 'run' would use with the same flags,
environment and config file, one key a line with its value and its source:
flag, env MOSAIK_<FLAG>, file PATH, or default. Precedence: flags >
environment > file > defaults. The identity and listen addresses show the
data-directory defaults that run would apply.`,
		Example: `  mosaik-node config show
  MOSAIK_CONFIG=/etc/mosaik/node.toml mosaik-node config show --log-level debug
  mosaik-node config show --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			srcs, err := loadLayers(c.Flags(), st.env.Getenv)
			if err != nil {
				return err
			}
			rows := configRows(c.Flags(), srcs)
			if err := nc.showDefaults(st.env.Getenv, rows); err != nil {
				return err
			}
			return writeConfig(st.env.Stdout, rows, asJSON)
		},
	}
	nc.register(show.Flags())
	show.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (show's own flag)")
	registerCompletions(show)
	cfg.AddCommand(show)
	return cfg
}

// configRow is one key of config show.
type configRow struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

func configRows(fs *flag.FlagSet, srcs sources) map[string]*configRow {
	rows := map[string]*configRow{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "help" || f.Name == "json" && f.Annotations[groupAnnotation] == nil {
			return
		}
		src := srcs[f.Name]
		if src == "" {
			src = srcDefault
		}
		v := f.Value.String()
		if (f.Name == "status-token") && v != "" {
			v = "(set)" // a secret
		}
		rows[f.Name] = &configRow{Key: f.Name, Value: v, Source: src}
	})
	return rows
}

// showDefaults fills the rows of the identity, data directory and listen
// addresses that run derives when they are not given.
func (c *nodeCmd) showDefaults(getenv func(string) string, rows map[string]*configRow) error {
	if rows["listen"].Value == "" {
		rows["listen"].Value = fmt.Sprint(defaultListen())
		rows["listen"].Source = srcDefault + " (run's stable port)"
	}
	keyGiven, dirGiven := c.nf.key != "", c.dataDir != ""
	if _, err := c.resolveIdentity(getenv); err != nil {
		return err
	}
	if !keyGiven && c.nf.key != "" {
		rows["key"].Value, rows["key"].Source = c.nf.key, srcDefault+" (in the data directory)"
	}
	if !dirGiven && c.dataDir != "" {
		rows["data-dir"].Value, rows["data-dir"].Source = c.dataDir, srcDefault+" ($XDG_DATA_HOME/mosaik, else ~/.local/share/mosaik)"
	}
	return nil
}

func writeConfig(w io.Writer, rows map[string]*configRow, asJSON bool) error {
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if asJSON {
		out := make([]*configRow, 0, len(keys))
		for _, k := range keys {
			out = append(out, rows[k])
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, k := range keys {
		r := rows[k]
		v := r.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key, v, r.Source)
	}
	return tw.Flush()
}
