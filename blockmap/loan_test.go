package blockmap

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

func joined(views [][]byte) []byte { return bytes.Join(views, nil) }

func TestLentViewsStayUntilReleased(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 64*mib)
	old := pattern(2*mib, 5)
	if _, err := d.WriteAt(old, mib); err != nil {
		t.Fatal(err)
	}
	// Across two blocks and a hole.
	views, release, err := d.LendAt(mib+4096, 3*mib-4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(old[4096:]), make([]byte, mib)...)
	if !bytes.Equal(joined(views), want) {
		t.Fatal("lent views do not hold the device's bytes")
	}
	// A write, a whole-block write, a trim and an upload meanwhile must
	// leave the views alone.
	if _, err := d.WriteAt(pattern(4096, 6), mib+8192); err != nil {
		t.Fatal(err)
	}
	whole := d.BlockBuffer()
	copy(whole, pattern(mib, 7))
	if err := d.WriteBlockBuffer(whole, 2*mib, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := d.Trim(mib, mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joined(views), want) {
		t.Fatal("lent views changed before they were released")
	}
	release()
	got := make([]byte, 4096)
	if _, err := d.ReadAt(got, mib+8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("the trim is not visible after the release")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if in, _ := d.buffers.Usage(); in != d.memUsed || d.memUsed != mib {
		t.Fatalf("after the release: %d bytes of buffers in use, memUsed %d, want the one block still cached", in, d.memUsed)
	}
}

func TestEvictedLentBufferIsNotReused(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 16 * mib, BlockSize: mib}, 4*mib)
	for i := range int64(16) {
		if _, err := d.WriteAt(pattern(mib, uint64(10+i)), i*mib); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	views, release, err := d.LendAt(0, mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Reading every other block evicts block 0 from a 4-block cache many
	// times over; its buffer must not carry another block meanwhile.
	buf := make([]byte, mib)
	for i := int64(1); i < 16; i++ {
		if _, err := d.ReadAt(buf, i*mib); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(joined(views), pattern(mib, 10)) {
		t.Fatal("an evicted block's lent buffer was reused")
	}
	release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.memUsed > 4*mib {
		t.Fatalf("memUsed %d after the release, over the 4 MiB cache", d.memUsed)
	}
}

func TestCloseWaitsForLentViews(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 4*mib)
	if _, err := d.WriteAt(pattern(mib, 7), 0); err != nil {
		t.Fatal(err)
	}
	views, release, err := d.LendAt(0, mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a reply was sending lent views", err)
	case <-time.After(200 * time.Millisecond):
	}
	if !bytes.Equal(joined(views), pattern(mib, 7)) {
		t.Fatal("lent views changed while the device closed")
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestLendsDoNotWaitForEachOther(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 32 * mib, BlockSize: mib}, 4*mib)
	want := pattern(32*mib, 8)
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// Readers of 3 blocks each, holding their views a while, on a cache of
	// 4 blocks; and one request larger than the cache, which is copied.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			off, n := int64(i%8)*3*mib/2+512, int64(2*mib)
			if i == 15 {
				off, n = 4096, 6*mib
			}
			views, release, err := d.LendAt(off, n, nil)
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
			if !bytes.Equal(joined(views), want[off:off+n]) {
				errs <- fmt.Errorf("lend of %d bytes at %d returned other data", n, off)
			}
			release()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("lends on a small cache waited for each other")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWriteToLentLeastRecentBlock: a write to a clean block that a reply
// has borrowed takes a new buffer, and the room for it must come from
// another block, not from evicting the one being written.
func TestWriteToLentLeastRecentBlock(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			store, _, _ := countingMem()
			d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 8*mib)
			want := pattern(6*mib, 9)
			if _, err := d.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			_, release, err := d.LendAt(0, mib, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Block 0 becomes the least recently used clean block.
			if _, err := d.ReadAt(make([]byte, 5*mib), mib); err != nil {
				t.Fatal(err)
			}
			if whole {
				buf := d.BlockBuffer()
				copy(buf, pattern(mib, 10))
				copy(want, buf)
				err = d.WriteBlockBuffer(buf, 0, false)
			} else {
				change := pattern(4096, 10)
				copy(want[8192:], change)
				_, err = d.WriteAt(change, 8192)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, mib)
			if _, err := d.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[:mib]) {
				t.Fatal("block 0 reads wrong after a write to it while lent")
			}
			release()
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(objectBytes(t, store, d.Naming().Key(0)), want[:mib]) {
				t.Fatal("block 0's object is wrong after a write to it while lent")
			}
		})
	}
}

// A read larger than the cache can lend is fetched once per block: lending
// it loaded every block, found the first ones evicted by the last, and
// loaded them all again, three GETs per block.
func TestReadLargerThanTheCacheFetchesEachBlockOnce(t *testing.T) {
	store, counts, mem := countingMem()
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	want := make([]byte, 8*mib)
	for i := range int64(8) {
		copy(want[i*mib:], pattern(mib, uint64(30+i)))
		if _, err := mem.Put(t.Context(), fmt.Sprintf("%08x", i), want[i*mib:(i+1)*mib], objstorePut(g)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 4 * mib, Parallel: 4, ReadAhead: -1, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gets := counts.Gets.Load()
	views, release, err := d.LendAt(0, 8*mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if !bytes.Equal(joined(views), want) {
		t.Fatal("the read returned other bytes than stored")
	}
	if n := counts.Gets.Load() - gets; n != 8 {
		t.Errorf("%d GETs for 8 blocks read through a 4-block cache, want 8", n)
	}
}

// A block written while the device believed it absent, and lent to a
// reply, turns out to have an object: its upload's create-only PUT is
// refused, and the object is merged under the sectors written. The merge
// must go into a buffer of the device's own: the lent view is a reply on
// its way to a client and must not change under it.
func TestMergeIntoALentBlockLeavesTheViewAlone(t *testing.T) {
	store, _, mem := countingMem()
	g := Geometry{Size: 8 * mib, BlockSize: mib}
	d := testDevice(t, store, g, 8*mib)
	// Block 3's object appears behind the device's back: its presence map
	// says absent.
	stored := pattern(mib, 31)
	if _, err := mem.Put(t.Context(), d.Naming().Key(3), stored, objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	written := pattern(4096, 32)
	if _, err := d.WriteAt(written, 3*mib); err != nil {
		t.Fatal(err)
	}
	views, lentRelease, err := d.LendAt(3*mib, mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Released once, here or when a check fails: Close waits for it.
	release := sync.OnceFunc(lentRelease)
	defer release()
	lent := bytes.Join(views, nil)
	before := bytes.Clone(lent)
	// Before the merge the device holds the write over zeros.
	want := make([]byte, mib)
	copy(want, written)
	if !bytes.Equal(before, want) {
		t.Fatal("the lent block is not the write over zeros")
	}
	// The upload's create-only PUT is refused; the object is fetched and
	// merged under the write, then uploaded.
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.Join(views, nil), before) {
		t.Fatal("the merge wrote into the buffer lent to a reply")
	}
	release()
	merged := bytes.Clone(stored)
	copy(merged, written)
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 3*mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, merged) {
		t.Fatal("block 3 does not read as the object under the write")
	}
	if !bytes.Equal(objectBytes(t, store, d.Naming().Key(3)), merged) {
		t.Fatal("block 3's object is not the object under the write")
	}
}
