package nbd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

type countingReads struct {
	*memBackend
	reads atomic.Int64
}

func (b *countingReads) ReadAt(p []byte, off int64) (int, error) {
	b.reads.Add(1)
	return b.memBackend.ReadAt(p, off)
}

// A READ's payload is held until its reply is sent, so replies a client
// does not take count against the byte budget and hold back new reads: up
// to the connection's share, half the export's budget.
func TestUnsentReadRepliesHoldTheBudget(t *testing.T) {
	const size = 64 << 10
	be := &countingReads{memBackend: newMemBackend(1 << 20)}
	s := &Server{
		Exports: []*Export{{Name: "disk", Backend: be, MaxBlockSize: size, MaxBuffered: 4 * size}},
		Log:     slog.New(slog.DiscardHandler),
	}
	client, server := net.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.ServeConn(ctx, server)
	c := newRawClient(t, client)
	c.handshake("disk")
	// net.Pipe has no buffer: nothing the server writes goes anywhere
	// until the client reads.
	go func() {
		for i := range 4 {
			c.request(cmdRead, 0, uint64(i), uint64(i)*size, size, nil)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if n := be.reads.Load(); n != 2 {
		t.Fatalf("%d reads ran with two %d-byte replies unsent and a share of two; want 2", n, size)
	}
	if used, budget, ok := s.Buffered("disk"); used != 2*size || budget != 4*size || !ok {
		t.Errorf("Buffered = %d, %d, %v; want the two unsent replies, %d of %d", used, budget, ok, 2*size, 4*size)
	}
	go io.Copy(io.Discard, client)
	deadline := time.Now().Add(5 * time.Second)
	for be.reads.Load() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 4 reads ran once the client took its replies", be.reads.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for used, _, _ := s.Buffered("disk"); used != 0; used, _, _ = s.Buffered("disk") {
		if time.Now().After(deadline) {
			t.Fatalf("Buffered = %d with every reply taken", used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, ok := s.Buffered("other"); ok {
		t.Error("Buffered found an export that does not exist")
	}
}

// A 64 MiB READ, larger than the export's whole payload budget, is
// admitted alone: it takes all of the budget until its reply is sent, and
// every other request waits (not forever: its own turn comes).
func TestMaxPayloadReadTakesTheWholeBudget(t *testing.T) {
	const budget = 16 << 20
	be := &countingReads{memBackend: newMemBackend(MaxPayload + 1<<20)}
	s := &Server{
		Exports: []*Export{{Name: "disk", Backend: be, MaxBuffered: budget}},
		Log:     slog.New(slog.DiscardHandler),
	}
	client, server := net.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.ServeConn(ctx, server)
	c := newRawClient(t, client)
	c.handshake("disk")
	go func() {
		c.request(cmdRead, 0, 1, 0, MaxPayload, nil)
		c.request(cmdRead, 0, 2, 0, 4096, nil)
	}()
	time.Sleep(300 * time.Millisecond)
	if n := be.reads.Load(); n != 1 {
		t.Fatalf("%d reads ran with a 64 MiB reply unsent; want 1", n)
	}
	if used, size, _ := s.Buffered("disk"); used != budget || size != budget {
		t.Errorf("Buffered = %d of %d; want the whole budget held", used, size)
	}
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	for range 2 {
		h := c.reply()
		if h.Error != 0 {
			t.Fatalf("read %d: error %d", h.Handle, h.Error)
		}
		n := MaxPayload
		if h.Handle == 2 {
			n = 4096
		}
		c.read(make([]byte, n))
	}
	if n := be.reads.Load(); n != 2 {
		t.Errorf("%d reads ran; want 2", n)
	}
}
