package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
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
	// Three sequential reads: blocks 0, 1 and 2.
	for _, off := range []int64{0, mib, 2 * mib} {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks 3..6 are now fetched in the background.
	deadline := time.Now().Add(10 * time.Second)
	for !d.cachedAll(3, 6) {
		if time.Now().After(deadline) {
			t.Fatalf("read-ahead did not cache blocks 3-6 (%d GETs)", counts.Gets.Load()-gets)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := d.Stats()
	for off := int64(3 * mib); off < 7*mib; off += mib {
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

// getLog reports the block of every block GET on gets once on is set, so
// that a test sees which blocks a device fetched, in whatever order.
type getLog struct {
	objstore.Store
	on   atomic.Bool
	gets chan int64
}

func newGetLog(s objstore.Store) *getLog { return &getLog{Store: s, gets: make(chan int64, 1024)} }

func (l *getLog) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if blk, ok := ParseBlockKey(key); ok && l.on.Load() {
		l.gets <- blk
	}
	return l.Store.Get(ctx, key, off, n)
}

// expect waits for GETs of exactly the blocks want, in any order.
func (l *getLog) expect(t *testing.T, after string, want ...int64) {
	t.Helper()
	got := make([]int64, 0, len(want))
	for range want {
		select {
		case blk := <-l.gets:
			got = append(got, blk)
		case <-time.After(10 * time.Second):
			t.Fatalf("after %s: GETs of %v, want %v", after, got, want)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("after %s: GETs of %v, want %v", after, got, want)
	}
}

// done closes d and checks that it made no GET beyond those expected.
func (l *getLog) done(t *testing.T, d *Device) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(l.gets) > 0 {
		t.Fatalf("%d GETs more than expected, the first of block %d", len(l.gets), <-l.gets)
	}
}

// storedDevice stores blocks blocks of bs bytes, then opens a device on
// them with cfg, whose GETs log reports from then on, each answered after
// delay.
func storedDevice(t *testing.T, blocks, bs int64, cfg Config, delay time.Duration) (*Device, *getLog) {
	t.Helper()
	mem := memstore.New()
	g := Geometry{Size: blocks * bs, BlockSize: bs}
	w := testDevice(t, mem, g, 4*bs)
	if _, err := w.WriteAt(pattern(int(g.Size), 3), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	log := newGetLog(&faultyStore{Store: mem, delay: delay})
	cfg.Store = log
	d, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	log.on.Store(true)
	return d, log
}

// readBlock reads block blk of d whole and checks its bytes.
func readBlockOK(t *testing.T, d *Device, blk int64) {
	t.Helper()
	bs := d.Geometry().BlockSize
	buf := make([]byte, bs)
	if _, err := d.ReadAt(buf, blk*bs); err != nil {
		t.Fatalf("read block %d: %v", blk, err)
	}
	if want := pattern(int(d.Geometry().Size), 3)[blk*bs : (blk+1)*bs]; !bytes.Equal(buf, want) {
		t.Fatalf("block %d read wrong bytes", blk)
	}
}

func span(from, to int64) []int64 {
	var s []int64
	for n := from; n < to; n++ {
		s = append(s, n)
	}
	return s
}

// TestReadAheadWindowGrows: a sequential reader's windows start at its
// third read with 4 blocks and double each time it reaches the latest one, up to the
// maximum, here a quarter of the cache, and stop at the device's end.
func TestReadAheadWindowGrows(t *testing.T) {
	const bs = 64 << 10
	d, log := storedDevice(t, 64, bs, Config{CacheSize: 64 * bs, Parallel: 64}, 0)
	if d.maxWindow != 16 {
		t.Fatalf("maximum window %d, want 16 (a quarter of the cache)", d.maxWindow)
	}
	// The windows each read starts, and the blocks it then fetches.
	windows := map[int64][2]int64{2: {3, 7}, 3: {7, 15}, 7: {15, 31}, 15: {31, 47}, 31: {47, 63}, 47: {63, 64}}
	aheads := int64(0)
	for blk := range int64(64) {
		readBlockOK(t, d, blk)
		var want []int64
		if blk < 3 {
			want = append(want, blk) // a read of its own
		}
		if w, ok := windows[blk]; ok {
			want = append(want, span(w[0], w[1])...)
			aheads += w[1] - w[0]
		}
		log.expect(t, fmt.Sprintf("reading block %d", blk), want...)
		if s := d.Stats(); s.ReadAheads != aheads {
			t.Fatalf("after reading block %d: %d blocks read ahead, want %d", blk, s.ReadAheads, aheads)
		}
	}
	s := d.Stats()
	if s.ReadAheadHits != 61 || s.ReadAheadWasted != 0 {
		t.Fatalf("read-ahead hits %d, wasted %d; want 61 and 0", s.ReadAheadHits, s.ReadAheadWasted)
	}
	log.done(t, d)
}

// TestRandomReadsNoReadAhead: reads that continue none of the recent ones
// fetch nothing but their own blocks.
func TestRandomReadsNoReadAhead(t *testing.T) {
	const bs = 64 << 10
	d, log := storedDevice(t, 64, bs, Config{CacheSize: 64 * bs, Parallel: 64}, 0)
	for i := range int64(32) {
		blk := i * 37 % 64 // never next to any of the 8 reads before
		readBlockOK(t, d, blk)
		readBlockOK(t, d, blk) // a read of the same block again is no sequel either
		log.expect(t, fmt.Sprintf("reading block %d", blk), blk)
	}
	if s := d.Stats(); s.ReadAheads != 0 {
		t.Fatalf("%d blocks read ahead for a random reader", s.ReadAheads)
	}
	log.done(t, d)
}

// TestRandomReadsInAWindowDoNotGrowIt: reads that land in a stream's
// windows but skip most of what it passes over move the stream, but start
// no further window: one NBD connection's random reads at depth 16 behind
// 50 ms kept 8 streams growing that way (118 blocks read ahead for 256
// reads, 65 of them never read).
func TestRandomReadsInAWindowDoNotGrowIt(t *testing.T) {
	const bs = 64 << 10
	d, log := storedDevice(t, 64, bs, Config{CacheSize: 64 * bs, Parallel: 64}, 0)
	for blk := range int64(3) {
		readBlockOK(t, d, blk)
	}
	log.expect(t, "reading blocks 0-2", span(0, 7)...)
	readBlockOK(t, d, 6) // in the window; half of what the stream passed over is read
	log.expect(t, "reading block 6", span(7, 15)...)
	readBlockOK(t, d, 14) // in the window again, but 5 of 15 blocks read
	readBlockOK(t, d, 15) // and on: 6 of 16
	log.expect(t, "reading blocks 14 and 15", 15)
	log.done(t, d)
}

// TestRandomOrderReadsFetchLittleAhead: a reader of every block once, in a
// random order, continues a recent read now and then by chance; that must
// not cost read-ahead beyond a few percent of its reads.
func TestRandomOrderReadsFetchLittleAhead(t *testing.T) {
	const bs, blocks = 4 << 10, 256
	d, _ := storedDevice(t, blocks, bs, Config{CacheSize: 4 * blocks * bs, Parallel: 16}, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, blk := range rng.Perm(blocks) {
		readBlockOK(t, d, int64(blk))
	}
	if s := d.Stats(); s.ReadAheads > blocks/20 {
		t.Fatalf("%d blocks read ahead for %d reads in a random order (%d of them read), want at most %d",
			s.ReadAheads, blocks, s.ReadAheadHits, blocks/20)
	}
}

// TestInterleavedStreamsReadAhead: three sequential readers taking turns,
// with a random reader among them, each get their windows.
func TestInterleavedStreamsReadAhead(t *testing.T) {
	const bs = 16 << 10
	d, log := storedDevice(t, 300, bs, Config{CacheSize: 256 * bs, Parallel: 64}, 0)
	starts := []int64{0, 100, 200}
	for k := range int64(6) {
		for _, s := range starts {
			blk := s + k
			readBlockOK(t, d, blk)
			var want []int64
			switch k {
			case 0, 1:
				want = []int64{blk}
			case 2:
				want = append([]int64{blk}, span(s+3, s+7)...)
			case 3:
				want = span(s+7, s+15)
			}
			log.expect(t, fmt.Sprintf("reading block %d", blk), want...)
		}
		random := 240 + 7*k
		readBlockOK(t, d, random)
		log.expect(t, fmt.Sprintf("reading block %d", random), random)
	}
	if s := d.Stats(); s.ReadAheads != 3*12 {
		t.Fatalf("%d blocks read ahead, want 36", s.ReadAheads)
	}
	log.done(t, d)
}

// TestReadAheadReordered: reads of a stream that complete out of order, as
// a queue deeper than 1 has them, stay in the stream.
func TestReadAheadReordered(t *testing.T) {
	const bs = 64 << 10
	d, log := storedDevice(t, 64, bs, Config{CacheSize: 64 * bs, Parallel: 64}, 0)
	for _, blk := range []int64{0, 1, 2, 3, 4, 6, 5, 7} {
		readBlockOK(t, d, blk)
	}
	log.expect(t, "reading blocks 0-7", span(0, 31)...)
	log.done(t, d)
}

// TestReadAheadBounds: a window is at most a quarter of the cache, and no
// more read-ahead fetches than Parallel are in flight; a reader through a
// slow store then uses every block read ahead, and each block is fetched
// once.
func TestReadAheadBounds(t *testing.T) {
	for _, tc := range []struct {
		readAhead, parallel int
		cacheBlocks, want   int64
	}{
		{0, 16, 256, 16}, {0, 64, 256, 64}, {0, 64, 64, 16}, {32, 16, 256, 32},
		{1000, 16, 16, 4}, {5, 16, 4, 1}, {-1, 16, 256, 0},
	} {
		cfg := Config{ReadAhead: tc.readAhead, Parallel: tc.parallel, CacheSize: tc.cacheBlocks * mib}
		if got := resolveReadAhead(cfg, mib); got != tc.want {
			t.Errorf("read-ahead %d, parallel %d, cache %d blocks: window %d, want %d", tc.readAhead, tc.parallel, tc.cacheBlocks, got, tc.want)
		}
	}

	const bs = 64 << 10
	d, log := storedDevice(t, 64, bs, Config{CacheSize: 16 * bs, Parallel: 2, ReadAhead: 1000}, time.Millisecond)
	readBlockOK(t, d, 0)
	readBlockOK(t, d, 1)
	readBlockOK(t, d, 2)
	// The first window is 4 blocks, but only Parallel fetches start.
	if n := d.Stats().ReadAheads; n != 2 {
		t.Fatalf("%d blocks read ahead, want 2", n)
	}
	log.expect(t, "reading blocks 0-2", 0, 1, 2, 3, 4)
	for blk := int64(3); blk < 64; blk++ {
		readBlockOK(t, d, blk)
	}
	log.expect(t, "reading every block", span(5, 64)...)
	if s := d.Stats(); s.ReadAheadWasted != 0 {
		t.Fatalf("%d blocks read ahead were evicted unused", s.ReadAheadWasted)
	}
	log.done(t, d)
}

// TestReadAheadSecondPass: a reader's second pass over the same blocks
// keeps its own stream as it nears where the first pass ended: the first
// pass's stream, which its reads are then just behind, must not claim them
// and stop their read-ahead.
func TestReadAheadSecondPass(t *testing.T) {
	const bs = 64 << 10
	d, _ := storedDevice(t, 64, bs, Config{CacheSize: 16 * bs, Parallel: 64}, 0)
	for pass := range 2 {
		for blk := range int64(62) {
			readBlockOK(t, d, blk)
		}
		if pass == 0 {
			readBlockOK(t, d, 62)
			readBlockOK(t, d, 63)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.streamOf(62); s == nil || s.next != 62 {
		t.Fatalf("block 62 would belong to %+v, not to the stream at block 62", s)
	}
}
