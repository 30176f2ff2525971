package nbd

import (
	"context"
	"sync"
)

// limiter admits a connection's requests: at most MaxInflight at once, and
// their payloads within the server's shared byte budget. Only the
// connection's reader acquires.
type limiter struct {
	slots  chan struct{}
	budget *byteBudget
}

func newLimiter(maxInflight int, budget *byteBudget) *limiter {
	return &limiter{slots: make(chan struct{}, maxInflight), budget: budget}
}

// acquire blocks until a request with n payload bytes may run and returns
// the bytes it holds; ok is false if ctx ended first.
func (l *limiter) acquire(ctx context.Context, n uint32) (held int64, ok bool) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	if n == 0 {
		return 0, true
	}
	if !l.budget.acquire(ctx, int64(n)) {
		<-l.slots
		return 0, false
	}
	return int64(n), true
}

func (l *limiter) release(held int64) {
	if held > 0 {
		l.budget.release(held)
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
