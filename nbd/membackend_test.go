package nbd

import (
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// memBackend is a goroutine-safe in-memory Backend implementing every
// optional interface. It records Sync, FUA, Trim and Zero calls, can delay
// each operation, and tracks how many operations ran at once.
type memBackend struct {
	mu   sync.RWMutex
	data []byte

	delay  time.Duration
	active atomic.Int64
	peak   atomic.Int64

	syncs, fuaWrites atomic.Int64
	// writesDone counts completed writes; syncSaw is its value when the
	// last Sync started.
	writesDone, syncSaw atomic.Int64
	callsMu             sync.Mutex
	trims, zeroes       []span
}

type span struct {
	off, length int64
	noHole      bool
}

func newMemBackend(size int) *memBackend { return &memBackend{data: make([]byte, size)} }

func (b *memBackend) enter() func() {
	n := b.active.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(b.delay)
	return func() { b.active.Add(-1) }
}

func (b *memBackend) ReadAt(p []byte, off int64) (int, error) {
	defer b.enter()()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if off < 0 || off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *memBackend) WriteAt(p []byte, off int64) (int, error) {
	defer b.enter()()
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(b.data)) {
		return 0, syscall.ENOSPC
	}
	defer b.writesDone.Add(1)
	return copy(b.data[off:], p), nil
}

func (b *memBackend) WriteAtFUA(p []byte, off int64) (int, error) {
	b.fuaWrites.Add(1)
	return b.WriteAt(p, off)
}

func (b *memBackend) Size() (int64, error) { return int64(len(b.data)), nil }

func (b *memBackend) Sync() error {
	b.syncSaw.Store(b.writesDone.Load())
	defer b.enter()()
	b.syncs.Add(1)
	return nil
}

func (b *memBackend) Trim(off, length int64) error {
	b.record(&b.trims, span{off: off, length: length})
	return b.clear(off, length)
}

func (b *memBackend) ZeroAt(off, length int64, noHole bool) error {
	b.record(&b.zeroes, span{off: off, length: length, noHole: noHole})
	return b.clear(off, length)
}

func (b *memBackend) record(list *[]span, s span) {
	b.callsMu.Lock()
	defer b.callsMu.Unlock()
	*list = append(*list, s)
}

func (b *memBackend) calls() (trims, zeroes []span) {
	b.callsMu.Lock()
	defer b.callsMu.Unlock()
	return append([]span(nil), b.trims...), append([]span(nil), b.zeroes...)
}

func (b *memBackend) clear(off, length int64) error {
	defer b.enter()()
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.data[off : off+length])
	return nil
}

func (b *memBackend) bytes(off, length int) []byte {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]byte(nil), b.data[off:off+length]...)
}

// baseOnly hides the optional interfaces of the Backend it wraps.
type baseOnly struct{ Backend }

// failingBackend fails reads and writes with err.
type failingBackend struct {
	Backend
	err error
}

func (b failingBackend) ReadAt([]byte, int64) (int, error)  { return 0, b.err }
func (b failingBackend) WriteAt([]byte, int64) (int, error) { return 0, b.err }
