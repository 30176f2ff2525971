package attach

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/objbacker/objbacker/nbd"
)

// memBackend is an in-memory device for our own NBD server.
type memBackend struct {
	mu   sync.Mutex
	data []byte
}

func (b *memBackend) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return copy(p, b.data[off:]), nil
}

func (b *memBackend) WriteAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return copy(b.data[off:], p), nil
}

func (b *memBackend) Size() (int64, error) { return int64(len(b.data)), nil }
func (b *memBackend) Sync() error          { return nil }

// daemon is our NBD server on a fixed address, which the test stops and
// starts again as a daemon restart would.
type daemon struct {
	t       *testing.T
	addr    string
	backend *memBackend
	cancel  context.CancelFunc
	done    chan error
}

func startDaemon(t *testing.T, description string) *daemon {
	t.Helper()
	d := &daemon{t: t, addr: "127.0.0.1:0", backend: &memBackend{data: make([]byte, 16<<20)}}
	d.start(description)
	t.Cleanup(d.stop)
	return d
}

// start serves the export "disk" with description on d.addr.
func (d *daemon) start(description string) {
	d.t.Helper()
	ln, err := net.Listen("tcp", d.addr)
	if err != nil {
		d.t.Fatal(err)
	}
	d.addr = ln.Addr().String()
	s := &nbd.Server{
		Exports: []*nbd.Export{{Name: "disk", Description: description, Backend: d.backend}},
		Log:     slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	go func() { d.done <- s.Serve(ctx, ln) }()
}

// stop ends Serve gracefully: its connections close.
func (d *daemon) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	if err := <-d.done; err != nil && !errors.Is(err, context.Canceled) {
		d.t.Errorf("serve: %v", err)
	}
	d.cancel = nil
}

func (d *daemon) restart(description string) {
	d.stop()
	d.start(description)
}
