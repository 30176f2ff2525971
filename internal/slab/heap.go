//go:build !unix || race

package slab

// mapMemory takes slabs from the Go heap where there is no mmap,
// and under the race detector, which only watches heap memory: tests built
// with -race then still catch races on the buffers.
func mapMemory(n int) ([]byte, error) { return make([]byte, n), nil }

func unmapMemory([]byte) error { return nil }
