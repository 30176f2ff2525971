package inflight

import "sync"

// WriteBarrier lets a FLUSH wait for the writes (and trims and zeroes)
// received before it, which run concurrently and may still be in flight.
// Sequence numbers follow the order of receipt.
type WriteBarrier struct {
	mu      sync.Mutex
	changed sync.Cond
	last    uint64
	pending map[uint64]struct{}
}

// NewWriteBarrier returns a barrier with nothing pending.
func NewWriteBarrier() *WriteBarrier {
	b := &WriteBarrier{pending: make(map[uint64]struct{})}
	b.changed.L = &b.mu
	return b
}

// Begin registers a write as it is received and returns its sequence.
func (b *WriteBarrier) Begin() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last++
	b.pending[b.last] = struct{}{}
	return b.last
}

// End marks the write with sequence seq as done.
func (b *WriteBarrier) End(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pending, seq)
	b.changed.Broadcast()
}

// Mark returns the sequence of the last write received so far: what a
// FLUSH received now must wait for.
func (b *WriteBarrier) Mark() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Wait returns once every write up to and including seq has ended.
func (b *WriteBarrier) Wait(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.pendingUpTo(seq) {
		b.changed.Wait()
	}
}

func (b *WriteBarrier) pendingUpTo(seq uint64) bool {
	for s := range b.pending {
		if s <= seq {
			return true
		}
	}
	return false
}
