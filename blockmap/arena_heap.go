//go:build !unix || race

package blockmap

// mapMemory takes block buffers from the Go heap where there is no mmap,
// and under the race detector, which only watches heap memory: tests built
// with -race then still catch races on block data.
func mapMemory(n int) ([]byte, error) { return make([]byte, n), nil }

func unmapMemory([]byte) error { return nil }
