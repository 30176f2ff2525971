// Package slab hands out fixed-size buffers carved from large mappings
// outside the Go heap, for memory that lives long and is large: the block
// cache (blockmap) and the in-memory store (memstore).
//
// Held in the Go heap, such memory makes the garbage collector pace itself
// on data it never frees. With a memory limit holding the heap near the
// cache size, the collector ran continuously (docs/benchmarks.md measured a
// quarter of the daemon's CPU in it); without one, a heap of gigabytes puts
// the next collection gigabytes of allocation away, so every small
// allocation until then is fresh memory and costs a page fault. Outside the
// heap, these buffers cost the collector nothing and the heap stays small.
package slab

import (
	"fmt"
	"sync"
)

// Arena serves buffers of one size. They are recycled through a free list,
// and the mappings are given back only by Release, once nothing can touch a
// buffer any more. Its methods are safe for concurrent use.
type Arena struct {
	size        int
	slabBuffers int

	mu    sync.Mutex
	slabs [][]byte
	free  [][]byte
	// inUse and peak count buffers handed out; peak is also how many
	// have ever been touched, as Get reuses the most recently freed.
	inUse, peak int
}

// maxSlab is the most one mapping holds: large enough that tens of GiB
// stay well inside the kernel's map count limit, small enough that an
// idle arena does not reserve address space it will not fill.
const maxSlab = 64 << 20

// New serves buffers of size bytes, for at most about limit bytes in all:
// a small limit maps no more than it can use.
func New(size int, limit int64) *Arena {
	buffers := min(maxSlab, limit) / int64(size)
	return &Arena{size: size, slabBuffers: int(max(1, buffers))}
}

// Size is the length of the buffers.
func (a *Arena) Size() int { return a.size }

// Get returns a buffer; its content is whatever it last held.
func (a *Arena) Get() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.free) == 0 {
		a.grow()
	}
	b := a.free[len(a.free)-1]
	a.free[len(a.free)-1] = nil
	a.free = a.free[:len(a.free)-1]
	a.inUse++
	a.peak = max(a.peak, a.inUse)
	return b
}

func (a *Arena) grow() {
	n := a.slabBuffers * a.size
	slab, err := mapMemory(n)
	if err != nil {
		// As the Go heap does when the system has no memory left.
		panic(fmt.Sprintf("slab: mapping %d bytes: %v", n, err))
	}
	a.slabs = append(a.slabs, slab)
	// Pushed in reverse so that Get hands out the slab from its start,
	// touching pages in order.
	for i := a.slabBuffers - 1; i >= 0; i-- {
		off := i * a.size
		a.free = append(a.free, slab[off:off+a.size:off+a.size])
	}
}

// Put takes back a buffer that nothing reads or writes any more.
func (a *Arena) Put(b []byte) {
	a.mu.Lock()
	a.free = append(a.free, b)
	a.inUse--
	a.mu.Unlock()
}

// Usage returns the bytes of buffers handed out now and at most so far.
func (a *Arena) Usage() (inUse, peak int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(a.inUse * a.size), int64(a.peak * a.size)
}

// Release unmaps every slab. No buffer may be used after it.
func (a *Arena) Release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.slabs {
		if err := unmapMemory(s); err != nil {
			panic(fmt.Sprintf("slab: unmapping: %v", err))
		}
	}
	a.slabs, a.free = nil, nil
}
