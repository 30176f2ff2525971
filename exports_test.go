package main

import (
	"log/slog"
	"testing"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore/storeurl"
)

// TestDelayedMemUploads: a mem:// store with a latency parameter stands in
// for a remote bucket, so its device uploads blocks as it would to one; a
// plain mem:// device is a RAM disk and uploads none.
func TestDelayedMemUploads(t *testing.T) {
	for url, wantPuts := range map[string]bool{"mem://": false, "mem://?latency=0": true, "mem://?latency=1ms": true} {
		cfg := blockmap.Config{Geometry: blockmap.Geometry{Size: 8 << 20, BlockSize: 1 << 20}, CacheSize: 4 << 20}
		e, err := openExport(t.Context(), exportSpec{Name: "d", URL: url}, cfg, storeurl.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		data := make([]byte, 4096)
		data[0] = 1 // not all zeros, which would be a DELETE
		if _, err := e.device.WriteAt(data, 1<<20); err != nil {
			t.Fatal(err)
		}
		before := e.counts.Puts.Load()
		if err := e.device.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := e.counts.Puts.Load() > before; got != wantPuts {
			t.Errorf("%s: the written block was uploaded: %v, want %v", url, got, wantPuts)
		}
		if err := e.close(); err != nil {
			t.Errorf("%s: close: %v", url, err)
		}
	}
}
