package kernel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/kernel"
	"github.com/objbacker/objbacker/kernel/kerneltest"
)

// testHello is what the fake kernel answers a HELLO with.
var testHello = kernel.HelloReply{MaxIO: 1 << 20, MaxInflight: 1000, TimeoutMS: 30000}

// daemon is a Server serving one fake kernel's channel.
type daemon struct {
	k      *kerneltest.Kernel
	cancel context.CancelFunc
	done   chan error
}

// startDaemon serves s on a new socket pair and completes the handshake.
// The cleanup stops it and fails the test on an error or a hang.
func startDaemon(t *testing.T, s *kernel.Server) *daemon {
	t.Helper()
	if s.Log == nil {
		s.Log = testLogger(t)
	}
	k, dev, err := kerneltest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{k: k, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- s.Serve(ctx, dev) }()
	if _, err := k.Accept(testHello); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Error(err)
		}
		k.Close()
	})
	return d
}

// stop cancels Serve and returns what it returned; again, nil.
func (d *daemon) stop() error {
	d.cancel()
	return d.wait()
}

// wait waits for Serve to return on its own.
func (d *daemon) wait() error {
	select {
	case err, ok := <-d.done:
		if ok {
			close(d.done)
		}
		return err
	case <-time.After(10 * time.Second):
		return errors.New("Serve did not return within 10s")
	}
}

func (d *daemon) export(t *testing.T, name string) uint32 {
	t.Helper()
	e, ok := d.k.Export(name)
	if !ok {
		t.Fatalf("export %q not registered", name)
	}
	return e.ID
}

// do sends one request and fails the test if no reply comes.
func (d *daemon) do(t *testing.T, h kernel.Header, payload []byte) kerneltest.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := d.k.Do(ctx, h, payload)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readReq(export uint32, off uint64, n uint32) kernel.Header {
	return kernel.Header{Op: kernel.OpRead, Export: export, Offset: off, Length: n}
}

func writeReq(export uint32, off uint64, n uint32) kernel.Header {
	return kernel.Header{Op: kernel.OpWrite, Export: export, Offset: off, Length: n}
}

func flushReq(export uint32) kernel.Header {
	return kernel.Header{Op: kernel.OpFlush, Export: export}
}

func trimReq(export uint32, off uint64, n uint32) kernel.Header {
	return kernel.Header{Op: kernel.OpTrim, Export: export, Offset: off, Length: n}
}

var slogDiscard = slog.New(slog.DiscardHandler)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// memBackend is a goroutine-safe in-memory Backend with FUA and TRIM. A
// hook can hold or slow its operations; it records how many ran at once,
// and whether a Sync started while a write was in progress.
type memBackend struct {
	mu   sync.RWMutex
	data []byte

	// hook, when set, runs as each read ("read") or write ("write")
	// starts, with its offset; it may block.
	hook func(op string, off int64)
	// fail, when set, is returned by reads and writes.
	fail    error
	syncErr atomic.Pointer[error]

	active, peak atomic.Int64
	writing      atomic.Int64
	syncRaced    atomic.Bool
	syncs        atomic.Int64
	fuaWrites    atomic.Int64
}

func newMemBackend(size int) *memBackend { return &memBackend{data: make([]byte, size)} }

func (b *memBackend) enter(op string, off int64) func() {
	n := b.active.Add(1)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	if b.hook != nil {
		b.hook(op, off)
	}
	return func() { b.active.Add(-1) }
}

func (b *memBackend) ReadAt(p []byte, off int64) (int, error) {
	defer b.enter("read", off)()
	if b.fail != nil {
		return 0, b.fail
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *memBackend) WriteAt(p []byte, off int64) (int, error) {
	b.writing.Add(1)
	defer b.writing.Add(-1)
	defer b.enter("write", off)()
	if b.fail != nil {
		return 0, b.fail
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return copy(b.data[off:], p), nil
}

func (b *memBackend) WriteAtFUA(p []byte, off int64) (int, error) {
	b.fuaWrites.Add(1)
	return b.WriteAt(p, off)
}

func (b *memBackend) Trim(off, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.data[off : off+n])
	return nil
}

func (b *memBackend) Size() (int64, error) { return int64(len(b.data)), nil }

func (b *memBackend) Sync() error {
	if b.writing.Load() > 0 {
		b.syncRaced.Store(true)
	}
	b.syncs.Add(1)
	if err := b.syncErr.Load(); err != nil {
		return *err
	}
	return nil
}

func (b *memBackend) bytes(off, n int) []byte {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]byte(nil), b.data[off:off+n]...)
}

// plainBackend hides the optional interfaces of the backend it wraps.
type plainBackend struct{ kernel.Backend }

var errInjected = errors.New("injected store failure")

// errnoErr wraps an errno as a backend would.
func errnoErr(e syscall.Errno) error { return &wrapped{e} }

type wrapped struct{ e syscall.Errno }

func (w *wrapped) Error() string { return "backend: " + w.e.Error() }
func (w *wrapped) Unwrap() error { return w.e }
