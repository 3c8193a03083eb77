package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/streams"
)

// Defaults of produce's window bounds other than --replay. 64 MiB is the
// per-consumer queue budget (streams.Params.MaxQueueBytes), so a window
// costs at most what one lagging consumer may pin; a minute covers a
// restart of a consumer under a service manager and a short partition.
const (
	defaultReplayBytes = 64 << 20
	defaultReplayAge   = time.Minute
)

// replayFlags are produce's replay window flags.
type replayFlags struct {
	datums int
	bytes  sizeFlag
	age    time.Duration
}

func (r *replayFlags) register(fs *flag.FlagSet) {
	r.bytes = defaultReplayBytes
	fs.IntVar(&r.datums, "replay", 0, "keep the last `N` datums in a replay window, shared by all consumers: a consumer that resubscribes after a broken link, or restarts with consume --position-file, gets what it missed from it, in order (0: no window, what a consumer misses is only reported as a gap)")
	fs.Var(&r.bytes, "replay-bytes", "bound the replay window's bytes too (payloads plus 40 bytes a datum), the oldest datums leaving first (a `size`: bytes, or with a KiB, MiB or GiB suffix; 0: no byte bound)")
	fs.DurationVar(&r.age, "replay-age", defaultReplayAge, "bound the replay window by age too: a datum older than this leaves it (0: no age bound)")
	inGroup(fs, groupStream, "replay", "replay-bytes", "replay-age")
}

// options returns the producer option of the flags, or nil without
// --replay.
func (r *replayFlags) options(fs *flag.FlagSet) (streams.ProducerOption, error) {
	switch {
	case r.datums < 0:
		return nil, usagef("--replay %d: want a number of datums, or 0 for no window", r.datums)
	case r.datums == 0:
		for _, name := range []string{"replay-bytes", "replay-age"} {
			if f := fs.Lookup(name); f != nil && f.Changed {
				return nil, usagef("--%s needs --replay N (the window's size in datums)", name)
			}
		}
		return nil, nil
	case r.age < 0:
		return nil, usagef("--replay-age must not be negative")
	}
	return streams.WithReplay(streams.Replay{Datums: r.datums, Bytes: int64(r.bytes), Age: r.age}), nil
}

// sizeFlag is a byte count written as bytes or with a binary suffix
// (64MiB, 512KiB, 1GiB).
type sizeFlag int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

func (s *sizeFlag) String() string {
	v := int64(*s)
	for _, u := range sizeUnits {
		if v != 0 && v%u.mult == 0 {
			return strconv.FormatInt(v/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

func (s *sizeFlag) Set(v string) error {
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q: want a size such as 67108864, 512KiB, 64MiB or 1GiB", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

func (s *sizeFlag) Type() string { return "size" }
