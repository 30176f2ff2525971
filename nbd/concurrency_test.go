package nbd

import (
	"strconv"
	"testing"
	"time"
)

// TestConcurrentRequestsOnOneConnection is a functional check that one
// connection's requests overlap, not a benchmark: go-nbd serves them one
// at a time, which over object storage is one round trip per request.
func TestConcurrentRequestsOnOneConnection(t *testing.T) {
	const (
		requests = 64
		depth    = 16
		delay    = 20 * time.Millisecond
	)
	b := newMemBackend(8 << 20)
	b.delay = delay
	ts := startServer(t, &Server{Exports: []*Export{{Name: "disk", Backend: b}}})

	start := time.Now()
	mustRun(t, "qemu-img", "bench", "-f", "raw", "-c", strconv.Itoa(requests), "-d", strconv.Itoa(depth),
		"-s", "4K", ts.uri("disk"))
	elapsed := time.Since(start)

	serial := requests * delay
	t.Logf("%d reads of %v each at depth %d: %v (serial: %v), peak concurrency %d",
		requests, delay, depth, elapsed, serial, b.peak.Load())
	if elapsed > serial/2 {
		t.Errorf("took %v, want under half the serial time %v", elapsed, serial)
	}
	if peak := b.peak.Load(); peak < depth/2 {
		t.Errorf("at most %d backend calls ran at once, want at least %d", peak, depth/2)
	}
}
