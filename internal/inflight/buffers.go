package inflight

import (
	"math/bits"
	"sync"
)

// Buffers hands out payload buffers from power-of-two size classes, 4 KiB
// up to a maximum, so steady traffic of any mix of sizes allocates nothing.
// Each buffer has headroom bytes in front of the payload, so a READ reply
// goes out as one write of header and data without a copy.
//
// Freed buffers are kept, up to retain bytes in all, on free lists rather
// than in a sync.Pool: a pool is emptied by every garbage collection, and
// refilling it with 1 MiB buffers was most of what the daemon allocated,
// which in turn made the collections (measured: 124 of 173 MB allocated
// in a 5 s read, 50 collections a second).
type Buffers struct {
	headroom int
	retain   int

	mu       sync.Mutex
	free     [][]*[]byte // by class
	retained int         // payload bytes, headroom not counted
}

const minBufShift = 12

// NewBuffers serves payloads of up to maxPayload bytes and keeps up to
// retain bytes of freed buffers for reuse: what the callers' byte budget
// lets be in flight at once.
func NewBuffers(headroom, maxPayload, retain int) *Buffers {
	return &Buffers{headroom: headroom, retain: retain, free: make([][]*[]byte, class(maxPayload)+1)}
}

func class(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// Get returns a buffer of headroom+n bytes, n at most the maximum payload.
// The pointer is what Put wants back.
func (p *Buffers) Get(n int) *[]byte {
	c := class(n)
	p.mu.Lock()
	var b *[]byte
	if k := len(p.free[c]); k > 0 {
		b = p.free[c][k-1]
		p.free[c][k-1] = nil
		p.free[c] = p.free[c][:k-1]
		p.retained -= cap(*b) - p.headroom
	}
	p.mu.Unlock()
	if b == nil {
		s := make([]byte, p.headroom+1<<(minBufShift+c))
		b = &s
	}
	*b = (*b)[:p.headroom+n]
	return b
}

// Put returns a buffer for reuse. When the free lists are full, buffers of
// other sizes make room for it: the sizes freed last are the ones the
// traffic uses now. Without that, a run of 1 MiB requests left the lists
// full of buffers that a following run of 4 KiB reads never took, and
// every 4 KiB buffer was a new allocation; with a large live heap, and so
// rare collections, each one was fresh memory, and page faults took half
// of the daemon's CPU (docs/benchmarks.md).
func (p *Buffers) Put(b *[]byte) {
	*b = (*b)[:cap(*b)]
	size := cap(*b) - p.headroom
	c := class(size)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.retained+size > p.retain {
		if !p.evictOther(c) {
			return // to the garbage collector
		}
	}
	p.free[c] = append(p.free[c], b)
	p.retained += size
}

// evictOther drops one buffer from the class, other than keep, that holds
// the most bytes, and reports whether there was one.
func (p *Buffers) evictOther(keep int) bool {
	victim, most := -1, 0
	for c, list := range p.free {
		if c != keep && len(list) > 0 && len(list)<<(minBufShift+c) > most {
			victim, most = c, len(list)<<(minBufShift+c)
		}
	}
	if victim < 0 {
		return false
	}
	k := len(p.free[victim])
	p.retained -= cap(*p.free[victim][k-1]) - p.headroom
	p.free[victim][k-1] = nil
	p.free[victim] = p.free[victim][:k-1]
	return true
}
