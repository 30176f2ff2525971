package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/internal/inflight"
)

// Block caches live outside the Go heap (internal/slab), so the heap
// holds only request payloads in flight (each export's payload budget, or
// inflight.DefaultBudget for a kernel session), the store clients and the
// devices' block tables: about 4 MiB live beyond the payloads under
// sustained load. The rest is headroom: at 8 MiB less, the
// collector ran 40 times a second and cost 0.7 s of CPU per GiB read.
const (
	heapBase      = inflight.DefaultBudget + 20<<20
	heapPerExport = 1 << 20
	// heapPerMemBlock is what a mem:// device keeps in the heap per block
	// written, its data being outside it: the block's entry in the
	// device's table, which never evicts it (blockmap.Config.Volatile).
	heapPerMemBlock = 512
)

// setMemoryLimit sets the Go memory limit to what the heap is meant to use,
// so that the garbage collector keeps the process near its cache sizes plus
// a fixed overhead. The limit grows with each export's payload budget (taken
// out of its cache, see openExports) and presence bitmap (one bit per
// block, at most), which a large device may need, and with what a
// mem:// device keeps in the heap for each block. An operator's GOMEMLIMIT
// wins.
func setMemoryLimit(exports []*openedExport, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(heapBase)
	for _, e := range exports {
		blocks := e.device.Geometry().Blocks()
		limit += heapPerExport + blocks/8 + e.payloadBudget
		if urlScheme(e.spec.URL) == "mem" {
			limit += blocks * heapPerMemBlock
		}
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "bytes", limit, "size", bytesize.Format(limit))
}
