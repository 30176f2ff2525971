package blockmap

import (
	"bytes"
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
