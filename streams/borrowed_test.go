package streams_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// borrowedDatum is datum i: the counter, then len-8 bytes of byte(i).
func borrowedDatum(i uint64) []byte {
	b := bytes.Repeat([]byte{byte(i)}, int(8+i*37%3000))
	binary.BigEndian.PutUint64(b, i)
	return b
}

// TestBorrowedBytes_ValidUntilNextRecv: a consumer on BorrowedBytes (the
// producer on Bytes: the codecs share the wire format) gets every datum
// intact, of every size, and a datum it holds stays intact while the
// consumer reads hundreds more into its other buffers; only the next
// receive call may recycle it.
func TestBorrowedBytes_ValidUntilNextRecv(t *testing.T) {
	const name, total = "borrowed", 3000
	nodes := connected(t, 2)
	prod := mustProducer[[]byte](t, nodes[0], name, streams.WithCodec[[]byte](streams.Bytes{}))
	cons := mustConsumer[[]byte](t, nodes[1], name, streams.WithCodec[[]byte](streams.BorrowedBytes{}))
	testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(prod.Consumers(), 1) }, "no subscription")
	// A failed Send ends the test's context with its cause, so that the
	// receiving side fails with the reason instead of waiting out its
	// deadline.
	ctx, fail := context.WithCancelCause(testCtx(t, 60*time.Second))
	defer fail(nil)
	go func() {
		for i := range uint64(total) {
			if err := prod.Send(ctx, borrowedDatum(i)); err != nil {
				fail(fmt.Errorf("send %d: %w", i, err))
				return
			}
		}
	}()
	first, err := cons.Recv(ctx)
	if err != nil || !bytes.Equal(first, borrowedDatum(0)) {
		t.Fatalf("datum 0: %v (%v)", err, context.Cause(ctx))
	}
	// The consumer reads on into its buffer (up to its 1024 datums)
	// while the application holds datum 0.
	testutil.Eventually(t, 20*time.Second, func() bool {
		infos := cons.Producers()
		return len(infos) == 1 && infos[0].Stats.Datums >= 500
	}, "consumer did not read ahead: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	if !bytes.Equal(first, borrowedDatum(0)) {
		t.Fatal("datum 0 changed while the application held it")
	}
	for i := uint64(1); i < total; i++ {
		d, err := cons.RecvDatum(ctx)
		if err != nil {
			t.Fatalf("datum %d: %v (%v)", i, err, context.Cause(ctx))
		}
		if !bytes.Equal(d.Value, borrowedDatum(i)) || d.Seq != i+1 || d.Gap != nil {
			t.Fatalf("datum %d: %d bytes, seq %d, gap %v: corrupted", i, len(d.Value), d.Seq, d.Gap)
		}
	}
	if st := cons.Stats(); st.Datums != total || st.Gaps != 0 {
		t.Errorf("stats %+v, want %d datums and no gap", st, total)
	}
}
