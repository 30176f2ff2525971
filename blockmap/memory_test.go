package blockmap

import (
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore/memstore"
)

// A dirty block found in the clean list (a bug elsewhere) is not evicted:
// that would drop an acknowledged write.
func TestEvictionSparesABusyBlockInTheCleanList(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	d, err := Open(t.Context(), Config{Store: memstore.New(), Geometry: g, CacheSize: 4 * mib, Parallel: 2, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range int64(2) {
		if _, err := d.WriteAt(pattern(mib, uint64(i+1)), i*mib); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	b := d.blocks[0]
	if b == nil || b.elem == nil || b.inDirty {
		d.mu.Unlock()
		t.Fatal("block 0 is not in the clean list")
	}
	d.clean.MoveToFront(b.elem)
	b.dirty = true // as a bug would leave it
	for d.memUsed+d.geo.BlockSize <= d.cfg.CacheSize {
		d.memUsed += d.geo.BlockSize // the cache fills up
	}
	d.roomFor()
	kept := d.blocks[0] == b && b.buf != nil
	b.dirty = false
	d.settle(b)
	d.mu.Unlock()
	if !kept {
		t.Fatal("a dirty block in the clean list was evicted")
	}
}
