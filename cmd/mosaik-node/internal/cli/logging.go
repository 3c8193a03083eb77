package cli

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync/atomic"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

// logger builds the command's logger from --log-level and --log-format.
// In the binary (Env.Process) it also routes every other writer of
// stderr through the same format: go-libp2p's slog loggers (and so fx's
// events, which go-libp2p logs through them), go-log's zap loggers
// (kad-dht, boxo), slog's default logger and the standard log package
// (quic-go's buffer-size warning). Under --log-format json every stderr
// line is then one JSON object.
func (f *nodeFlags) logger(env Env, st *state) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch f.logFormat {
	case "text":
		h = slog.NewTextHandler(env.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(env.Stderr, opts)
	default:
		return nil, usagef("--log-format %q: want text or json", f.logFormat)
	}
	l := slog.New(h)
	if f.logFormat == "json" {
		st.log = l
	}
	if env.Process {
		routeProcessLogs(h, f.logFormat == "json")
	}
	return l, nil
}

// routeProcessLogs sends the process's other loggers to h. go-libp2p's
// subsystems keep their own levels (GOLOG_LOG_LEVEL, default error), so
// --log-level debug shows mosaik's debug lines without libp2p's.
func routeProcessLogs(h slog.Handler, json bool) {
	processJSON.Store(json)
	gologshim.SetDefaultHandler(subsystemLevels{Handler: h, min: gologshim.ConfigFromEnv().LevelForSystem("")})
	slog.SetDefault(slog.New(h)) // also the standard log package's output
	log.SetFlags(0)
	if json {
		cfg := golog.GetConfig()
		cfg.Format = golog.JSONOutput
		golog.SetupLogging(cfg)
	}
}

// subsystemLevels gives each go-libp2p logger its level from
// GOLOG_LOG_LEVEL: gologshim names the subsystem in a "logger" attribute.
type subsystemLevels struct {
	slog.Handler
	min slog.Level
}

func (s subsystemLevels) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= s.min && s.Handler.Enabled(ctx, l)
}

func (s subsystemLevels) WithAttrs(as []slog.Attr) slog.Handler {
	min := s.min
	for _, a := range as {
		if a.Key == "logger" {
			min = gologshim.ConfigFromEnv().LevelForSystem(a.Value.String())
		}
	}
	return subsystemLevels{Handler: s.Handler.WithAttrs(as), min: min}
}

func (s subsystemLevels) WithGroup(name string) slog.Handler {
	return subsystemLevels{Handler: s.Handler.WithGroup(name), min: s.min}
}

// stderrLogger is the logger of commands without --log-level: warnings
// only, as text.
func stderrLogger(env Env) *slog.Logger {
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// processJSON is whether the binary's stderr is JSON (routeProcessLogs):
// Notice writes its lines to match.
var processJSON atomic.Bool

// Notice writes a process-level message, such as the signal handler's,
// to stderr: a warning record of slog's default logger under
// --log-format json, else a plain "mosaik-node: " line.
func Notice(w io.Writer, msg string) {
	if processJSON.Load() {
		slog.Warn("mosaik-node: " + msg)
		return
	}
	fmt.Fprintln(w, "mosaik-node:", msg)
}
