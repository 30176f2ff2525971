package blockmap

import (
	"testing"
	"time"
)

func TestSequentialReadsFetchAhead(t *testing.T) {
	store, counts, _ := countingMem()
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	d := testDevice(t, store, g, 32*mib)
	if _, err := d.WriteAt(pattern(12*mib, 10), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := Open(t.Context(), Config{Store: store, CacheSize: 32 * mib, Parallel: 4, ReadAhead: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 128<<10)
	gets := counts.Gets.Load()
	// Two sequential reads: block 0, then block 1.
	for _, off := range []int64{0, mib} {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks 2..5 are now fetched in the background.
	deadline := time.Now().Add(10 * time.Second)
	for !d.cachedAll(2, 5) {
		if time.Now().After(deadline) {
			t.Fatalf("read-ahead did not cache blocks 2-5 (%d GETs)", counts.Gets.Load()-gets)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := d.Stats()
	for off := int64(2 * mib); off < 6*mib; off += mib {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	after := d.Stats()
	if hits := after.CacheHits - before.CacheHits; hits != 4 {
		t.Fatalf("reads of read-ahead blocks: %d cache hits, want 4", hits)
	}
	if after.ReadAheads < 4 {
		t.Fatalf("ReadAheads = %d", after.ReadAheads)
	}
}

// cachedAll reports whether blocks first..last are held in the cache.
func (d *Device) cachedAll(first, last int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for n := first; n <= last; n++ {
		if b := d.blocks[n]; b == nil || !b.full || b.buf == nil {
			return false
		}
	}
	return true
}
