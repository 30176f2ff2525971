package blockmap

import (
	"fmt"
	"sync"
)

// arena hands out the device's block buffers. They are carved from large
// mappings outside the Go heap: a cache of live 1 MiB buffers in the heap
// makes the garbage collector pace itself on data it never frees, and run
// continuously once a memory limit holds the heap near the cache size
// (docs/benchmarks.md measured a quarter of the daemon's CPU in it). Out
// of the heap, the cache costs the collector nothing and the heap stays
// small.
//
// Buffers are recycled through the free list and the mappings are given
// back only by release, once nothing can touch a buffer any more.
type arena struct {
	blockSize  int
	slabBlocks int

	mu    sync.Mutex
	slabs [][]byte
	free  [][]byte
	// inUse and peak count buffers handed out; peak is also how many
	// have ever been touched, as get reuses the most recently freed.
	inUse, peak int
}

// slabBytes is the most one mapping holds: large enough that a cache of
// tens of GiB stays well inside the kernel's map count limit, small enough
// that an idle device does not reserve address space for a cache it does
// not fill.
const slabBytes = 64 << 20

// newArena serves buffers of blockSize bytes for a cache of cacheSize: a
// small cache maps no more than it can use.
func newArena(blockSize, cacheSize int64) *arena {
	blocks := min(slabBytes, cacheSize) / blockSize
	return &arena{blockSize: int(blockSize), slabBlocks: int(max(1, blocks))}
}

// get returns a buffer of one block; its content is whatever it last held.
func (a *arena) get() []byte {
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

func (a *arena) grow() {
	slab, err := mapMemory(a.slabBlocks * a.blockSize)
	if err != nil {
		// As the Go heap does when the system has no memory left.
		panic(fmt.Sprintf("blockmap: mapping %d bytes of block buffers: %v", a.slabBlocks*a.blockSize, err))
	}
	a.slabs = append(a.slabs, slab)
	// Pushed in reverse so that get hands out the slab from its start,
	// touching pages in order.
	for i := a.slabBlocks - 1; i >= 0; i-- {
		off := i * a.blockSize
		a.free = append(a.free, slab[off:off+a.blockSize:off+a.blockSize])
	}
}

// put takes back a buffer that nothing reads or writes any more.
func (a *arena) put(b []byte) {
	a.mu.Lock()
	a.free = append(a.free, b)
	a.inUse--
	a.mu.Unlock()
}

// usage returns the bytes of buffers handed out now and at most so far.
func (a *arena) usage() (inUse, peak int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(a.inUse * a.blockSize), int64(a.peak * a.blockSize)
}

// release unmaps every slab. No buffer may be used after it.
func (a *arena) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.slabs {
		if err := unmapMemory(s); err != nil {
			panic(fmt.Sprintf("blockmap: unmapping block buffers: %v", err))
		}
	}
	a.slabs, a.free = nil, nil
}
