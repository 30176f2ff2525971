package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/urfave/cli/v2"
)

// listenMetrics binds --metrics, if set, before any bucket is opened: a
// mistyped or taken address must not cost a bucket its first claim.
func listenMetrics(c *cli.Context) (net.Listener, error) {
	addr := c.String("metrics")
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("--metrics %s: %w", addr, err)}
	}
	return ln, nil
}

// serveMetrics serves the exports' counters in Prometheus text format on
// ln at /metrics, and Go's profiles at /debug/pprof/. ln nil: nothing to
// serve. The returned function stops the server.
func serveMetrics(ln net.Listener, exports []*openedExport, log *slog.Logger) func() {
	if ln == nil {
		return func() {}
	}
	mux := http.NewServeMux()
	// Profiles are what a slow export needs looked at; they cost nothing
	// until fetched.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, exports)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

type metric struct {
	name, kind, help string
	value            func(e *openedExport) int64
}

var metrics = []metric{
	{"objbacker_read_requests_total", "counter", "Read requests served.", func(e *openedExport) int64 { return e.device.Stats().ReadOps }},
	{"objbacker_write_requests_total", "counter", "Write requests served.", func(e *openedExport) int64 { return e.device.Stats().WriteOps }},
	{"objbacker_trim_requests_total", "counter", "Trim and zero requests served.", func(e *openedExport) int64 { return e.device.Stats().TrimOps }},
	{"objbacker_flush_requests_total", "counter", "Flushes served.", func(e *openedExport) int64 { return e.device.Stats().FlushOps }},
	{"objbacker_read_bytes_total", "counter", "Bytes read by clients.", func(e *openedExport) int64 { return e.device.Stats().BytesRead }},
	{"objbacker_written_bytes_total", "counter", "Bytes written by clients.", func(e *openedExport) int64 { return e.device.Stats().BytesWritten }},
	{"objbacker_cache_hits_total", "counter", "Block reads served from the cache.", func(e *openedExport) int64 { return e.device.Stats().CacheHits }},
	{"objbacker_cache_misses_total", "counter", "Block reads that waited for the store.", func(e *openedExport) int64 { return e.device.Stats().CacheMisses }},
	{"objbacker_read_ahead_total", "counter", "Blocks fetched ahead of sequential readers.", func(e *openedExport) int64 { return e.device.Stats().ReadAheads }},
	{"objbacker_read_ahead_hits_total", "counter", "Blocks read ahead that a read then used.", func(e *openedExport) int64 { return e.device.Stats().ReadAheadHits }},
	{"objbacker_read_ahead_wasted_total", "counter", "Blocks read ahead that were evicted unused.", func(e *openedExport) int64 { return e.device.Stats().ReadAheadWasted }},
	{"objbacker_upload_errors_total", "counter", "Block uploads that failed after retries.", func(e *openedExport) int64 { return e.device.Stats().UploadErrors }},
	{"objbacker_writer_stalls_total", "counter", "Times a request waited for dirty blocks to drain.", func(e *openedExport) int64 { return e.device.Stats().Stalls }},
	{"objbacker_cache_bytes", "gauge", "Memory counted against the cache size.", func(e *openedExport) int64 { return e.device.Stats().CacheBytes }},
	{"objbacker_buffer_bytes", "gauge", "Memory of block buffers in use, outside the Go heap.", func(e *openedExport) int64 { return e.device.Stats().BufferBytes }},
	{"objbacker_buffer_peak_bytes", "gauge", "Highest memory of block buffers in use so far.", func(e *openedExport) int64 { return e.device.Stats().BufferPeakBytes }},
	{"objbacker_dirty_blocks", "gauge", "Blocks written but not yet durable.", func(e *openedExport) int64 { return e.device.Stats().DirtyBlocks }},
	{"objbacker_blocks_present", "gauge", "Block objects in the store.", func(e *openedExport) int64 { return e.device.Stats().BlocksPresent }},
	{"objbacker_store_gets_total", "counter", "GET requests sent to the store.", func(e *openedExport) int64 { return e.counts.Gets.Load() }},
	{"objbacker_store_puts_total", "counter", "PUT requests sent to the store.", func(e *openedExport) int64 { return e.counts.Puts.Load() }},
	{"objbacker_store_deletes_total", "counter", "DELETE requests sent to the store.", func(e *openedExport) int64 { return e.counts.Deletes.Load() }},
	{"objbacker_store_errors_total", "counter", "Store requests that failed.", func(e *openedExport) int64 { return e.counts.Errors.Load() }},
	{"objbacker_store_read_bytes_total", "counter", "Bytes received from the store.", func(e *openedExport) int64 { return e.counts.BytesRead.Load() }},
	{"objbacker_store_written_bytes_total", "counter", "Bytes sent to the store.", func(e *openedExport) int64 { return e.counts.BytesWritten.Load() }},
}

func writeMetrics(w io.Writer, exports []*openedExport) {
	for _, m := range metrics {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, e := range exports {
			fmt.Fprintf(w, "%s{export=%q} %d\n", m.name, e.spec.Name, m.value(e))
		}
	}
}
