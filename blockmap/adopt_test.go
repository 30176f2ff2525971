package blockmap

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"
)

func TestWholeBlockWriteTakesTheBuffer(t *testing.T) {
	store, counts, mem := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 4*mib)
	puts := counts.Puts.Load()
	in0, _ := d.buffers.Usage()

	buf := d.BlockBuffer()
	want := pattern(mib, 7)
	copy(buf, want)
	if err := d.WriteBlockBuffer(buf, 2*mib, true); err != nil {
		t.Fatal(err)
	}
	if got := counts.Puts.Load() - puts; got != 1 {
		t.Fatalf("a FUA whole-block write made %d PUTs, want 1 before it returned", got)
	}
	if !bytes.Equal(objectBytes(t, mem, BlockKey(2)), want) {
		t.Fatal("stored block differs from the buffer written")
	}
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 2*mib); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, want))
	}
	if in, _ := d.buffers.Usage(); in != in0+mib {
		t.Fatalf("buffers in use %d, want %d: the written buffer is the cached block", in, in0+mib)
	}

	for _, c := range []struct {
		off  int64
		want error
	}{{mib / 2, syscall.EINVAL}, {8 * mib, syscall.EINVAL}} {
		if err := d.WriteBlockBuffer(d.BlockBuffer(), c.off, false); !errors.Is(err, c.want) {
			t.Errorf("write at %d: %v, want %v", c.off, err, c.want)
		}
	}
	d.ReturnBlockBuffer(d.BlockBuffer())
	if in, _ := d.buffers.Usage(); in != in0+mib {
		t.Fatalf("refused and returned buffers were not given back: %d in use, want %d", in, in0+mib)
	}
}

func TestCloseWaitsForBorrowedBlockBuffers(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 4*mib)
	buf := d.BlockBuffer()
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a server was reading into a block buffer", err)
	case <-time.After(200 * time.Millisecond):
	}
	if d.BlockBuffer() != nil {
		t.Fatal("a closing device handed out a block buffer")
	}
	if err := d.WriteBlockBuffer(buf, 0, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("write to a closing device: %v, want ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
