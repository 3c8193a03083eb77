package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"
)

// writeHelp is the help of every command: its description, usage,
// subcommands, flags by group with their defaults, and examples.
func writeHelp(c *cobra.Command, _ []string) {
	w := c.OutOrStdout()
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	fmt.Fprintf(w, "%s\n\nUsage:\n", strings.TrimSpace(desc))
	if c.Runnable() && c.HasParent() && !c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s\n", useLine(c))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s COMMAND [flags]\n", c.CommandPath())
		writeSubcommands(w, c)
	}
	writeFlags(w, c.LocalFlags())
	if c.HasExample() {
		fmt.Fprintf(w, "\nExamples:\n%s\n", c.Example)
	}
	if c.HasAvailableSubCommands() {
		sub := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), c.Root().Name()), " ")
		if sub != "" {
			sub += " "
		}
		fmt.Fprintf(w, "\nRun '%s help %sCOMMAND' (or COMMAND --help) for a command's flags and examples.\n", c.Root().Name(), sub)
	}
}

func useLine(c *cobra.Command) string {
	l := c.UseLine()
	if c.HasAvailableLocalFlags() && !strings.Contains(l, "[flags]") {
		l += " [flags]"
	}
	return l
}

// writeSubcommands lists the available subcommands, by group when the
// command has groups.
func writeSubcommands(w io.Writer, c *cobra.Command) {
	width := 0
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() || s.Name() == "help" {
			width = max(width, len(s.Name()))
		}
	}
	list := func(title, group string) {
		first := true
		for _, s := range c.Commands() {
			if !(s.IsAvailableCommand() || s.Name() == "help") || s.GroupID != group {
				continue
			}
			if first {
				fmt.Fprintf(w, "\n%s\n", title)
				first = false
			}
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.Name(), s.Short)
		}
	}
	for _, g := range c.Groups() {
		list(g.Title, g.ID)
	}
	list("Commands:", "")
}

// writeFlags prints fs by the groups of its flags' annotations (see
// inGroup), each flag with its default.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	groups := map[string]*flag.FlagSet{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Hidden {
			return
		}
		g := "Other"
		if a := f.Annotations[groupAnnotation]; len(a) > 0 {
			g = a[0]
		}
		if groups[g] == nil {
			groups[g] = flag.NewFlagSet(g, flag.ContinueOnError)
			groups[g].SortFlags = fs.SortFlags
		}
		groups[g].AddFlag(f)
	})
	for _, g := range append(groupOrder, "Other") {
		if gs := groups[g]; gs != nil {
			title := g + " flags"
			if g == "Other" {
				title = "Flags"
			}
			fmt.Fprintf(w, "\n%s:\n%s", title, gs.FlagUsagesWrapped(100))
		}
	}
}
