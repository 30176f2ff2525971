package blockmap

import (
	"testing"
	"time"

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
