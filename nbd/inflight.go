package nbd

import (
	"context"
	"sync"
)

// bufferBudget bounds the payload bytes one connection holds in flight, so
// MaxInflight requests of the maximum size cannot pin gigabytes. It admits
// four 32 MiB requests, or up to 128 requests of 1 MiB or less.
const (
	bufferBudget = 128 << 20
	budgetUnit   = 1 << 20
)

// limiter admits requests: at most a number of requests and bufferBudget
// payload bytes at once. Only the connection's reader acquires, so taking
// several tokens one at a time cannot deadlock.
type limiter struct {
	slots  chan struct{}
	buffer chan struct{}
}

func newLimiter(maxInflight int) *limiter {
	return &limiter{
		slots:  make(chan struct{}, maxInflight),
		buffer: make(chan struct{}, bufferBudget/budgetUnit),
	}
}

// acquire blocks until a request with n payload bytes may run and returns
// how many buffer tokens it holds; ok is false if ctx ended first.
func (l *limiter) acquire(ctx context.Context, n uint32) (tokens int, ok bool) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	if n == 0 {
		return 0, true
	}
	want := int((uint64(n) + budgetUnit - 1) / budgetUnit)
	for tokens < want {
		select {
		case l.buffer <- struct{}{}:
			tokens++
		case <-ctx.Done():
			l.release(tokens)
			return 0, false
		}
	}
	return tokens, true
}

func (l *limiter) release(tokens int) {
	for range tokens {
		<-l.buffer
	}
	<-l.slots
}

// writeBarrier lets a FLUSH wait for the writes received before it on the
// same connection: those run concurrently and may still be in flight when
// the FLUSH arrives. Sequence numbers follow the order of receipt.
type writeBarrier struct {
	mu      sync.Mutex
	changed sync.Cond
	last    uint64
	pending map[uint64]struct{}
}

func newWriteBarrier() *writeBarrier {
	b := &writeBarrier{pending: make(map[uint64]struct{})}
	b.changed.L = &b.mu
	return b
}

// begin registers a write as it is received and returns its sequence.
func (b *writeBarrier) begin() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last++
	b.pending[b.last] = struct{}{}
	return b.last
}

func (b *writeBarrier) end(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pending, seq)
	b.changed.Broadcast()
}

// mark returns the sequence of the last write received so far.
func (b *writeBarrier) mark() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// wait returns once every write up to and including seq has ended.
func (b *writeBarrier) wait(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.anyPendingUpTo(seq) {
		b.changed.Wait()
	}
}

func (b *writeBarrier) anyPendingUpTo(seq uint64) bool {
	for s := range b.pending {
		if s <= seq {
			return true
		}
	}
	return false
}
