//go:build unix && !race

package slab

import "syscall"

// mapMemory returns n bytes of private anonymous memory: zero pages that
// count towards RSS only once touched.
func mapMemory(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
}

func unmapMemory(b []byte) error { return syscall.Munmap(b) }
