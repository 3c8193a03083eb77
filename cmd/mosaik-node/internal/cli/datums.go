package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/dialer"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// lineHeader is what produce leaves of a frame for its header: a stdin
// line may be up to the stream's MaxFrameSize (4 MiB by default) less
// this.
const lineHeader = 16

// errLineTooLong is produce's error for a stdin line over the limit.
var errLineTooLong = errors.New("stdin line too long")

// produce sends every stdin line (without its newline) as a datum, waiting
// until the producer is online, then flushes at EOF. It returns as soon as
// ctx ends, even while stdin has nothing to read (see readLines). A line
// longer than the limit ends it with an error naming the line; the lines
// before it are delivered. With a progress writer (a terminal) it redraws
// a status line every second.
func produce(ctx context.Context, n *node.Node, stream string, opts []streams.ProducerOption, in io.Reader, progressOut io.Writer, log *slog.Logger) error {
	p, err := streams.NewProducer[[]byte](n.Streams(), stream, opts...)
	if err != nil {
		return err
	}
	defer p.Close() // delivers what is queued, then GracefulShutdown
	stop := make(chan struct{})
	defer close(stop)
	maxLine := n.Streams().Params().MaxFrameSize - lineHeader
	src, readErr := readLines(in, maxLine, stop)
	pr := newProgress(progressOut, time.Now())
	var tick <-chan time.Time
	if progressOut != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		tick = t.C
	}
	defer func() { pr.done(time.Now(), len(p.Consumers())) }()
	for {
		var line []byte
		var ok bool
		select {
		case <-ctx.Done():
			return nil // interrupted: Close still delivers what is queued
		case now := <-tick:
			pr.draw(now, len(p.Consumers()))
			continue
		case line, ok = <-src:
		}
		if !ok {
			break
		}
		if err := p.Send(ctx, line); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		pr.sent++
	}
	if err := *readErr; err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%w: line %d is longer than %d bytes (the stream's %d-byte frame less its header); the %d lines before it were sent, nothing after it",
				errLineTooLong, pr.sent+1, maxLine, maxLine+lineHeader, pr.sent)
		}
		return fmt.Errorf("reading stdin: %w", err)
	}
	log.Info("stdin done; flushing", "lines", pr.sent)
	return p.Close()
}

// readLines reads in line by line on a goroutine of its own and sends
// each line on the channel it returns, which it closes at EOF or a read
// error; the error is readable through the pointer once the channel is
// closed. A Read cannot be interrupted, so a blocked read must not hold
// up shutdown: closing stop ends the goroutine at its next line, and a
// goroutine still blocked in Read when the process exits is harmless
// (stdin belongs to the process).
func readLines(in io.Reader, maxLine int, stop <-chan struct{}) (<-chan []byte, *error) {
	out := make(chan []byte)
	var readErr error
	go func() {
		defer close(out)
		sc := bufio.NewScanner(in)
		// The buffer holds a line and its end ("\r\n"): a line of
		// maxLine bytes fits, a longer one is refused below or by Scan.
		sc.Buffer(make([]byte, 64<<10), maxLine+2)
		for sc.Scan() {
			if len(sc.Bytes()) > maxLine {
				readErr = bufio.ErrTooLong
				return
			}
			select {
			case out <- append([]byte(nil), sc.Bytes()...):
			case <-stop:
				return
			}
		}
		readErr = sc.Err()
	}()
	return out, &readErr
}

// consume prints every datum as a line until ctx ends or count datums.
// Every gap (datums of a producer that never arrived) is logged as a
// warning before the datum that follows it. With a saver, each datum's
// position is recorded once the datum is flushed to out, and saved when
// consume returns.
func consume(ctx context.Context, n *node.Node, stream string, opts []streams.ConsumerOption, count int, out io.Writer, saver *positionSaver, log *slog.Logger) (err error) {
	if saver != nil {
		defer func() {
			if serr := saver.Close(); err == nil {
				err = serr
			}
		}()
	}
	c, err := streams.NewConsumer[[]byte](n.Streams(), stream, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriter(out)
	defer w.Flush()
	for got := 0; count == 0 || got < count; got++ {
		d, err := c.RecvDatum(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal end
			}
			return err
		}
		if g := d.Gap; g != nil {
			log.Warn("datums missed", "producer", d.Producer, "cause", g.Cause, "missed", g.Missed, "after", g.After, "next", d.Seq)
		}
		w.Write(d.Value)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil { // line by line: stdout is often a pipe
			if errors.Is(err, syscall.EPIPE) {
				// The reader went away (consume | head): a normal end,
				// with the positions of what it read saved.
				log.Info("stdout closed by its reader: stopping")
				return nil
			}
			return err
		}
		if saver != nil {
			if err := saver.printed(d.Producer, d.Epoch, d.Seq); err != nil {
				return err
			}
		}
	}
	return nil
}

func printCatalog(n *node.Node, asJSON bool, out io.Writer) error {
	doc := catalogDoc(n)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "network %s, %d peers\n", doc.Network, len(doc.Peers))
	fmt.Fprintln(tw, "PEER\tTAGS\tSTREAMS\tRTT\tVERSION\tAGE")
	for _, p := range doc.Peers {
		rtt := "-"
		if p.RTTMS != nil {
			rtt = fmt.Sprintf("%.2fms", *p.RTTMS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.PeerID, strings.Join(p.Tags, ","), strings.Join(p.Streams, ","), rtt, p.Version,
			(time.Duration(p.AgeMS) * time.Millisecond).String())
	}
	return tw.Flush()
}

// bootstrapReached fails, with each dial's error, when none of the
// bootstrap addresses is connected: a catalog collected without them is
// empty for a reason the operator must see, not a result. The node's
// bootstrap loop logs its failures at debug level only, so one more dial
// of each gets the reason.
func bootstrapReached(ctx context.Context, n *node.Node, addrs []string) error {
	if len(addrs) == 0 || ctx.Err() != nil {
		return nil // interrupted: print what there is
	}
	var pis []peer.AddrInfo
	for _, a := range addrs {
		pi, err := peer.AddrInfoFromString(a)
		if err != nil {
			return usagef("--bootstrap %q: %v", a, err)
		}
		if n.Host().Network().Connectedness(pi.ID) == network.Connected {
			return nil
		}
		pis = append(pis, *pi)
	}
	var errs []error
	for i, pi := range pis {
		// The bootstrap loop's failed dials put the peer in the swarm's
		// dial backoff, whose error would hide the real one.
		dialer.ClearBackoff(n.Host(), pi.ID)
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.Connect(dctx, pi)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addrs[i], err))
	}
	return fmt.Errorf("catalog: no bootstrap peer reachable, so no catalog: %w", errors.Join(errs...))
}
