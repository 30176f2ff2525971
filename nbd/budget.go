package nbd

import (
	"container/list"
	"context"
	"sync"
)

// DefaultMaxBuffered bounds the request payload bytes a Server holds at
// once, across all its connections, when Server.MaxBuffered is zero, so
// memory stays predictable however many connections clients open: eight
// 1 MiB requests, or 64 of the Linux client's usual 128 KiB. Requests wait
// here only while the backend works on others: a block device's cache
// copies writes in at once and fetches ahead of readers itself. A larger
// request (up to 32 MiB) is admitted alone.
const DefaultMaxBuffered = 8 << 20

// byteBudget is a weighted semaphore over payload bytes, shared by every
// connection of a server. A request takes its whole weight at once, in
// arrival order, so two connections can never each hold part of what the
// other waits for.
type byteBudget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters list.List // *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newByteBudget(size int64) *byteBudget { return &byteBudget{size: size} }

// acquire waits until n bytes are free and takes them; false if ctx ended
// first. A request larger than the whole budget takes all of it.
func (b *byteBudget) acquire(ctx context.Context, n int64) bool {
	n = min(n, b.size)
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready:
			// Granted while we gave up: hand it on.
			b.used -= n
		default:
			b.waiters.Remove(elem)
		}
		b.grant()
		return false
	}
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= min(n, b.size)
	b.grant()
}

// grant admits waiters in order while they fit. Called with mu held.
func (b *byteBudget) grant() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.used+w.n > b.size {
			return
		}
		b.used += w.n
		b.waiters.Remove(e)
		close(w.ready)
	}
}
