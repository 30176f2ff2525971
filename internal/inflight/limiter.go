package inflight

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// DefaultBudget is the payload bytes an export (or a kernel session) holds
// at once when not told otherwise: eight 1 MiB requests, or 64 of the Linux
// client's usual 128 KiB. Servers size each export's budget from its
// store parallelism instead (see nbd.Export.MaxBuffered). A larger request
// (up to 64 MiB, nbd.MaxPayload) is admitted alone.
const DefaultBudget = 8 << 20

// Budget bounds the payload bytes held by the requests in flight, across
// every stream that shares it. It is a FIFO weighted semaphore: a request
// takes its whole weight at once and in arrival order, so two streams never
// each hold part of what the other waits for, and a large request is not
// starved by a stream of small ones.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
	// used is what is held, for InUse: the semaphore does not say.
	used atomic.Int64
}

// NewBudget returns a budget of size bytes.
func NewBudget(size int64) *Budget {
	return &Budget{sem: semaphore.NewWeighted(size), size: size}
}

// Size is the budget's capacity in bytes.
func (b *Budget) Size() int64 { return b.size }

// InUse is the bytes held now, for metrics: at most Size.
func (b *Budget) InUse() int64 { return b.used.Load() }

// weight is what a request of n bytes takes: a request larger than the
// whole budget takes all of it rather than wait forever.
func (b *Budget) weight(n int64) int64 { return min(n, b.size) }

// Limiter admits one stream's requests: at most a number at once, and
// their payloads within each of its budgets, taken in order. A stream
// whose first budget is its own share of the second, shared one can hold
// no more of the shared budget than its share, so one stream that stops
// taking its replies leaves the rest to the others. Only the stream's
// reader acquires, so taking the budgets one after the other cannot
// deadlock: whoever holds a budget waits for nothing but the shared one's
// FIFO, whose holders all finish without acquiring more.
type Limiter struct {
	slots   chan struct{}
	budgets []*Budget
}

// NewLimiter admits up to maxInflight requests at once within budgets.
func NewLimiter(maxInflight int, budgets ...*Budget) *Limiter {
	return &Limiter{slots: make(chan struct{}, maxInflight), budgets: budgets}
}

// Acquire blocks until a request with n payload bytes may run and returns
// what Release wants back; ok is false if ctx ended first, and then
// nothing is held.
func (l *Limiter) Acquire(ctx context.Context, n uint32) (held int64, ok bool) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	held = int64(n)
	if held == 0 {
		return 0, true
	}
	for i, b := range l.budgets {
		if b.sem.Acquire(ctx, b.weight(held)) != nil {
			l.release(held, i)
			return 0, false
		}
		b.used.Add(b.weight(held))
	}
	return held, true
}

// Release gives back what Acquire returned.
func (l *Limiter) Release(held int64) { l.release(held, len(l.budgets)) }

// release gives back held from the first taken budgets, and the slot.
func (l *Limiter) release(held int64, taken int) {
	if held > 0 {
		for _, b := range l.budgets[:taken] {
			b.used.Add(-b.weight(held))
			b.sem.Release(b.weight(held))
		}
	}
	<-l.slots
}
