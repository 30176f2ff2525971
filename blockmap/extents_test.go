package blockmap

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

type ext struct {
	n    int64
	hole bool
}

func extentsOf(t *testing.T, d *Device, off, n int64, limit int) []ext {
	t.Helper()
	var out []ext
	if err := d.Extents(off, n, limit, func(l int64, hole bool) { out = append(out, ext{l, hole}) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameExtents(a, b []ext) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Extents answers from the presence map and the cache: stored blocks and
// dirty ones are data, absent and trimmed ones holes, merged into runs,
// clipped to the range asked, and it costs no store request.
func TestExtents(t *testing.T) {
	const bs = 4096
	store, counts, _ := countingMem()
	g := Geometry{Size: 64 * bs, BlockSize: bs}
	d := testDevice(t, store, g, 16*bs)
	for _, blk := range []int64{1, 2, 5, 9} {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(blk)}, bs), blk*bs); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// Block 9 trimmed (a hole again), block 7 dirty, part of it written.
	if err := d.Trim(9*bs, bs); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 512), 7*bs+512); err != nil {
		t.Fatal(err)
	}
	gets := counts.Gets.Load()
	want := []ext{{bs, true}, {2 * bs, false}, {2 * bs, true}, {bs, false}, {bs, true}, {bs, false}, {56 * bs, true}}
	if got := extentsOf(t, d, 0, g.Size, 100); !sameExtents(got, want) {
		t.Errorf("extents %v, want %v", got, want)
	}
	// Clipped to an unaligned range; at most two extents.
	if got, want := extentsOf(t, d, bs+100, 3*bs, 2), []ext{{2*bs - 100, false}, {bs + 100, true}}; !sameExtents(got, want) {
		t.Errorf("extents from %d: %v, want %v", bs+100, got, want)
	}
	if got, want := extentsOf(t, d, 20*bs, 8*bs, 1), []ext{{8 * bs, true}}; !sameExtents(got, want) {
		t.Errorf("extents of a hole: %v, want %v", got, want)
	}
	if n := counts.Gets.Load() - gets; n != 0 {
		t.Errorf("Extents made %d GETs", n)
	}
	if err := d.Extents(g.Size-bs, 2*bs, 10, func(int64, bool) {}); err == nil {
		t.Error("Extents past the end succeeded")
	}
	// Fast zero: whole blocks, and partial blocks in holes, but not part
	// of a block with data.
	for _, z := range []struct {
		off, n int64
		fast   bool
	}{{bs, 2 * bs, true}, {0, 100, true}, {bs + 512, 512, false}, {3*bs + 100, bs, true}, {3*bs + 100, 2 * bs, false}, {4*bs + 100, bs, false}} {
		if got := d.ZeroIsFast(z.off, z.n); got != z.fast {
			t.Errorf("ZeroIsFast(%d, %d) = %v, want %v", z.off, z.n, got, z.fast)
		}
	}
}

// A large sparse device: runs of absent blocks are skipped a presence
// chunk at a time, so one call describes the whole device.
func TestExtentsOfALargeSparseDevice(t *testing.T) {
	const bs = 4096
	store, _, _ := countingMem()
	g := Geometry{Size: 1 << 40, BlockSize: bs} // 2^28 blocks
	d := testDevice(t, store, g, 16*bs)
	if _, err := d.WriteAt(make([]byte, bs), 1<<39); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := extentsOf(t, d, 0, g.Size, 100)
	if want := []ext{{1 << 39, true}, {bs, false}, {1<<39 - bs, true}}; !sameExtents(got, want) {
		t.Errorf("extents %v, want %v", got, want)
	}
	t.Logf("2^28 blocks described in %v", time.Since(start))
}

// gatedList holds every listing but the first (the probe of the first
// block's encoding) until gate is closed.
type gatedList struct {
	objstore.Store
	gate  chan struct{}
	calls atomic.Int64
}

func (s *gatedList) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	if s.calls.Add(1) == 1 {
		return s.Store.List(ctx, prefix, startAfter, fn)
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.List(ctx, prefix, startAfter, fn)
}

// While the start-up listing runs, a block it has not reached may have an
// object: data, until the listing says otherwise.
func TestExtentsWhileListing(t *testing.T) {
	const bs = 4096
	g := Geometry{Size: 16 * bs, BlockSize: bs}
	mem := memstore.New()
	first := testDevice(t, mem, g, 8*bs)
	if _, err := first.WriteAt(bytes.Repeat([]byte{1}, bs), 3*bs); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	store := &gatedList{Store: mem, gate: make(chan struct{})}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 8 * bs, Parallel: 4,
		WriteDelay: time.Hour, ListInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got, want := extentsOf(t, d, 0, g.Size, 10), []ext{{g.Size, false}}; !sameExtents(got, want) {
		t.Errorf("extents before the listing: %v, want %v", got, want)
	}
	close(store.gate)
	if err := d.WaitListed(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []ext{{3 * bs, true}, {bs, false}, {12 * bs, true}}
	if got := extentsOf(t, d, 0, g.Size, 10); !sameExtents(got, want) {
		t.Errorf("extents after the listing: %v, want %v", got, want)
	}
}

// Cache fetches the stored blocks of a range in the background; reads of
// them then need no GET.
func TestCachePrefetches(t *testing.T) {
	const bs = 4096
	store, counts, _ := countingMem()
	g := Geometry{Size: 16 * bs, BlockSize: bs}
	d := testDevice(t, store, g, 8*bs)
	for blk := int64(0); blk < 4; blk++ {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(blk + 1)}, bs), blk*bs); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = testDevice(t, store, g, 32*bs) // Cache takes up to a quarter of it: 8 blocks
	before := counts.Gets.Load()
	if err := d.Cache(0, 8*bs); err != nil { // 4 stored blocks and 4 holes
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for counts.Gets.Load()-before < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	fetched := counts.Gets.Load()
	p := make([]byte, 8*bs)
	if _, err := d.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if n := fetched - before; n != 4 {
		t.Errorf("Cache made %d GETs for 4 stored blocks", n)
	}
	if n := counts.Gets.Load() - fetched; n != 0 {
		t.Errorf("the read after Cache made %d GETs", n)
	}
	if p[3*bs] != 4 || p[5*bs] != 0 {
		t.Error("read after Cache returned other bytes")
	}
	if err := d.Cache(g.Size, bs); err == nil {
		t.Error("Cache past the end succeeded")
	}
}
