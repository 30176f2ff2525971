package blockmap

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
	"github.com/objbacker/objbacker/objstore/storetest"
)

func TestAbortEndsAFlushThatCannotFinish(t *testing.T) {
	mem := memstore.New()
	d, err := Open(t.Context(), Config{Store: storetest.StalledPuts{Store: mem}, Geometry: Geometry{Size: 8 * mib, BlockSize: mib}, CacheSize: 4 * mib, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(pattern(mib, 1), 0); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a PUT still hanging", err)
	case <-time.After(200 * time.Millisecond):
	}
	d.Abort()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("Close after Abort reported the unstored block as flushed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting 5 s after Abort")
	}
	if !exists(t, mem, MountMarkerKey) {
		t.Fatal("the mount marker was removed although a write was lost")
	}
}

// stalledGets holds every GET of one key until its context ends, like a
// store that accepts the request and never answers.
type stalledGets struct {
	objstore.Store
	key string
}

func (s stalledGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if key == s.key {
		<-ctx.Done()
		return nil, objstore.Attrs{}, ctx.Err()
	}
	return s.Store.Get(ctx, key, off, n)
}

// A stop must end whatever the store does: with a cache full of dirty
// blocks whose PUTs never return, Abort must fail every operation that
// waits, for room, for a flush or for a fetch, and Close must return.
func TestAbortReleasesEveryWaiter(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	mem := memstore.New()
	for _, key := range []string{"00000009", "0000000a"} {
		if _, err := mem.Put(t.Context(), key, pattern(mib, 40), objstorePut(g)); err != nil {
			t.Fatal(err)
		}
	}
	store := stalledGets{Store: storetest.StalledPuts{Store: mem}, key: "00000009"}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 4 * mib, Parallel: 4, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	waiters := make(chan error, 16)
	waiting := 0
	start := func(op func() error) {
		waiting++
		go func() { waiters <- op() }()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never got to %s", what)
			}
		}
	}
	// Three dirty blocks fill the cache for writers (one block is left
	// for the uploads' read-modify-writes); one of them is a FUA write,
	// waiting for its PUT.
	for n := range int64(2) {
		if _, err := d.WriteAt(pattern(mib, uint64(n)), n*mib); err != nil {
			t.Fatal(err)
		}
	}
	start(func() error { _, err := d.WriteAtFUA(pattern(mib, 2), 2*mib); return err })
	waitFor("three dirty blocks", func() bool { return d.Stats().DirtyBlocks == 3 })
	start(d.Sync)
	// Two reads of a block whose GET never returns: one fetches, one waits
	// for that fetch. The fetch buffer takes the cache's last block.
	for range 2 {
		start(func() error { _, err := d.ReadAt(make([]byte, 4096), 9*mib); return err })
	}
	waitFor("the fetch", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		b := d.blocks[9]
		return b != nil && b.loading
	})
	// A read and writes that wait for room.
	stalls := d.Stats().Stalls
	start(func() error { _, err := d.ReadAt(make([]byte, 4096), 10*mib); return err })
	for n := range int64(3) {
		start(func() error { _, err := d.WriteAt(pattern(4096, uint64(n)), (4+n)*mib); return err })
	}
	waitFor("writers waiting for room", func() bool { return d.Stats().Stalls >= stalls+4 })

	d.Abort()
	bound := time.After(5 * time.Second)
	for range waiting {
		select {
		case err := <-waiters:
			if err == nil {
				t.Error("an operation waiting on a store that never answers succeeded after Abort")
			}
		case <-bound:
			t.Fatal("operations still waiting 5 s after Abort")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("Close after Abort reported the unstored blocks as flushed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting 5 s after Abort")
	}
}
