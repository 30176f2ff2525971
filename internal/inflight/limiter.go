package inflight

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// DefaultBudget is the payload bytes a server holds at once when not told
// otherwise, so memory stays predictable however many streams clients
// open: eight 1 MiB requests, or 64 of the Linux client's usual 128 KiB.
// Requests wait here only while the backend works on others: a block
// device's cache copies writes in at once and fetches ahead of readers
// itself. A larger request (up to 32 MiB) is admitted alone.
const DefaultBudget = 8 << 20

// Budget bounds the payload bytes held by the requests in flight, across
// every stream that shares it. It is a FIFO weighted semaphore: a request
// takes its whole weight at once and in arrival order, so two streams never
// each hold part of what the other waits for, and a large request is not
// starved by a stream of small ones.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
}

// NewBudget returns a budget of size bytes.
func NewBudget(size int64) *Budget {
	return &Budget{sem: semaphore.NewWeighted(size), size: size}
}

// Limiter admits one stream's requests: at most a number at once, and
// their payloads within a Budget. Only the stream's reader acquires.
type Limiter struct {
	slots  chan struct{}
	budget *Budget
}

// NewLimiter admits up to maxInflight requests at once within budget.
func NewLimiter(maxInflight int, budget *Budget) *Limiter {
	return &Limiter{slots: make(chan struct{}, maxInflight), budget: budget}
}

// Acquire blocks until a request with n payload bytes may run and returns
// the bytes it holds; ok is false if ctx ended first. A request larger
// than the whole budget takes all of it rather than wait forever.
func (l *Limiter) Acquire(ctx context.Context, n uint32) (held int64, ok bool) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	held = min(int64(n), l.budget.size)
	if held > 0 && l.budget.sem.Acquire(ctx, held) != nil {
		<-l.slots
		return 0, false
	}
	return held, true
}

// Release gives back what Acquire returned.
func (l *Limiter) Release(held int64) {
	if held > 0 {
		l.budget.sem.Release(held)
	}
	<-l.slots
}
