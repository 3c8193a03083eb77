// Package cli implements the mosaik-node command line: it turns flags, a
// config file and MOSAIK_* environment variables into library options and
// runs a command. cmd/mosaik-node only calls Main.
//
// The command tree is spf13/cobra's (help with descriptions, grouped
// flags and examples, and shell completion); the flags are pflag's, so
// every flag is --flag and may come before, between or after the
// positional arguments.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Env is what a command sees of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Process is set by the binary only: the command may then route
	// process-wide output (go-libp2p's loggers, go-log, the standard log
	// package, slog's default) into its own log format. Tests that call
	// Main many times in one process leave it false.
	Process bool
}

// state is one Main call's view of what its command did.
type state struct {
	env Env
	ran bool         // flags and arguments were accepted (root's PersistentPreRun): an error is the command's own
	log *slog.Logger // set by node commands under --log-format json: the exit error goes there too
}

// Main runs the command in args (without the program name) and returns the
// process exit code: 0 success, 1 failure, 2 bad usage or configuration.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	st := &state{env: env}
	root := newRoot(st)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Stopped (SIGINT, SIGTERM) while starting: as clean as a stop
		// after the start, which returns nil.
		return 0
	}
	var ue usageError
	code := 1
	if errors.As(err, &ue) || !st.ran {
		code = 2 // an unknown command or flag, or a wrong argument count
	}
	if st.log == nil && wantsJSON(args, env.Getenv) {
		// A usage error before the logger was built: still one JSON line.
		st.log = slog.New(slog.NewJSONHandler(env.Stderr, nil))
	}
	if st.log != nil {
		st.log.Error("mosaik-node: "+oneLine(err), "exit", code)
	} else {
		fmt.Fprintln(env.Stderr, "mosaik-node:", oneLine(err))
	}
	return code
}

// wantsJSON reports whether the command line or MOSAIK_LOG_FORMAT asks
// for JSON logs, for errors raised before the flags were all parsed.
func wantsJSON(args []string, getenv func(string) string) bool {
	for i, a := range args {
		if a == "--log-format=json" || a == "--log-format" && i+1 < len(args) && args[i+1] == "json" {
			return true
		}
	}
	return getenv("MOSAIK_LOG_FORMAT") == "json"
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// noArgs and exactArgs check positional arguments with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) != 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath()[len("mosaik-node "):], args)
	}
	return nil
}

func exactArgs(name string, want ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != len(want) {
			if len(want) == 1 {
				return usagef("%s needs exactly one %s argument, got %q", name, want[0], args)
			}
			return usagef("%s needs %v, got %q", name, want, args)
		}
		return nil
	}
}
