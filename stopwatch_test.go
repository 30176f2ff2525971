package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/objbacker/objbacker/blockmap"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestStopGivesUpAStalledFlush(t *testing.T) {
	d, err := blockmap.Open(t.Context(), blockmap.Config{Store: storetest.StalledPuts{Store: memstore.New()},
		Geometry: blockmap.Geometry{Size: 8 << 20, BlockSize: 1 << 20}, CacheSize: 4 << 20, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	data[0] = 1 // not all zeros, which would be a DELETE
	if _, err := d.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	set := &exportSet{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		opened: []*openedExport{{spec: exportSpec{Name: "d", URL: "mem://"}, device: d, store: memstore.New()}}}
	ctx, stop := context.WithCancel(t.Context())
	stopped := set.watchStop(ctx, 300*time.Millisecond)
	stop()
	start := time.Now()
	err = set.close()
	stopped()
	if err == nil {
		t.Fatal("a flush whose PUT never returned was reported as done")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("stopping took %v with a 300ms stop timeout", took)
	}
}

// Serve waits for the requests under way before the exports are closed:
// the stop timeout must also end writes that wait for room in a cache
// full of blocks the store never takes.
func TestStopEndsWritersWaitingForRoom(t *testing.T) {
	d, err := blockmap.Open(t.Context(), blockmap.Config{Store: storetest.StalledPuts{Store: memstore.New()},
		Geometry: blockmap.Geometry{Size: 8 << 20, BlockSize: 1 << 20}, CacheSize: 4 << 20, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	block[0] = 1
	written := make(chan error, 8)
	for n := range int64(6) {
		go func() {
			_, err := d.WriteAt(block, n<<20)
			written <- err
		}()
	}
	set := &exportSet{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		opened: []*openedExport{{spec: exportSpec{Name: "d", URL: "mem://"}, device: d, store: memstore.New()}}}
	ctx, stop := context.WithCancel(t.Context())
	stopped := set.watchStop(ctx, 300*time.Millisecond)
	stop()
	bound := time.After(10 * time.Second)
	for range 6 {
		select {
		case <-written:
		case <-bound:
			t.Fatal("writes waiting for room still waiting 10 s into a stop with a 300ms stop timeout")
		}
	}
	if err := set.close(); err == nil {
		t.Fatal("a flush whose PUTs never returned was reported as done")
	}
	stopped()
}
