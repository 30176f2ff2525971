package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/internal/inflight"
)

// memoryOverhead is the Go memory the daemon needs beyond the block caches:
// request payloads in flight (inflight.DefaultBudget), the runtime, and
// the brief read-modify-write fetches a cache may exceed itself by. The
// program's code adds about 40 MiB of RSS on top, outside the Go heap.
const memoryOverhead = inflight.DefaultBudget + 8<<20

// setMemoryLimit tells the Go runtime what the daemon is meant to use —
// every export's cache and a fixed overhead — so that garbage collection keeps the process near that size
// instead of letting the heap grow to twice its live data. An operator's
// GOMEMLIMIT wins, and mem:// exports, which keep their data in the heap,
// get no limit.
func setMemoryLimit(exports []*openedExport, cfg blockmap.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(memoryOverhead)
	for _, e := range exports {
		if strings.HasPrefix(e.spec.URL, "mem:") {
			return
		}
		limit += cfg.CacheSize
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "bytes", limit, "size", blockmap.FormatSize(limit))
}
