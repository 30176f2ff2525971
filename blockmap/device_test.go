package blockmap

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore/memstore"
)

const mib = 1 << 20

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestEightSmallWritesBecomeOnePut(t *testing.T) {
	store, counts, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 16 * mib, BlockSize: mib}, 64*mib)
	putsBefore, getsBefore := counts.Puts.Load(), counts.Gets.Load() // Open's descriptor probe
	data := pattern(mib, 1)
	for i := 0; i < 8; i++ {
		off := int64(i) * 128 << 10
		if _, err := d.WriteAt(data[off:off+128<<10], 3*mib+off); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := counts.Puts.Load() - putsBefore; got != 1 {
		t.Fatalf("store received %d PUTs for one block written in 8 pieces, want 1", got)
	}
	if got := counts.Gets.Load() - getsBefore; got != 0 {
		t.Fatalf("store received %d GETs; a fully written block needs none", got)
	}
	if !bytes.Equal(objectBytes(t, store, "00000003"), data) {
		t.Fatal("stored block differs from what was written")
	}
}

func TestRandomSmallWritesWaitForTheWriteDelay(t *testing.T) {
	store, _, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 4 * mib, BlockSize: mib}, 64*mib)
	if _, err := d.WriteAt(pattern(mib, 4), mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	uploads := d.blocks[1].attemptsStarted
	d.mu.Unlock()
	// Scattered 4 KiB writes into the cached block, one of them its last
	// sector: less than a block's worth, so no upload before the write
	// delay (an hour here) or a FLUSH.
	for _, off := range []int64{mib - 4096, 8192, 0, 512 << 10} {
		if _, err := d.WriteAt(pattern(4096, uint64(off)), mib+off); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	b := d.blocks[1]
	queued := b.queued || b.attemptsStarted != uploads
	d.mu.Unlock()
	if queued {
		t.Fatal("random 4 KiB writes, one ending the block, queued an upload of the whole block")
	}
}

func TestPartialWriteIsReadModifyWritten(t *testing.T) {
	store, counts, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 64*mib)
	base := pattern(mib, 2)
	if _, err := d.WriteAt(base, mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// A fresh device knows nothing cached: a 4 KiB write must merge with the
	// stored block at flush time.
	d = testDevice(t, store, Geometry{}, 64*mib)
	patch := pattern(4096, 3)
	if _, err := d.WriteAt(patch, mib+8192); err != nil {
		t.Fatal(err)
	}
	gets := counts.Gets.Load()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if counts.Gets.Load() != gets+1 {
		t.Fatalf("flush of a partial block made %d GETs, want 1", counts.Gets.Load()-gets)
	}
	want := bytes.Clone(base)
	copy(want[8192:], patch)
	if !bytes.Equal(objectBytes(t, store, "00000001"), want) {
		t.Fatal("read-modify-write lost data")
	}
}

func TestHolesZerosAndTrim(t *testing.T) {
	store, counts, _ := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 64*mib)
	buf := make([]byte, 2*mib)
	gets := counts.Gets.Load()
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !isZero(buf) || counts.Gets.Load() != gets {
		t.Fatal("a never-written range must read as zeros without a GET")
	}
	data := pattern(4*mib, 4)
	if _, err := d.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"00000000", "00000001", "00000002", "00000003"} {
		if !exists(t, store, k) {
			t.Fatalf("%s missing after flush", k)
		}
	}
	// Trim block 1 whole and half of block 2; zero block 3 whole.
	if err := d.Trim(mib, mib+mib/2); err != nil {
		t.Fatal(err)
	}
	if err := d.ZeroAt(3*mib, mib, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if exists(t, store, "00000001") || exists(t, store, "00000003") {
		t.Fatal("whole-block trim/zero must delete the objects")
	}
	got := make([]byte, 4*mib)
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	clear(want[mib : 2*mib+mib/2])
	clear(want[3*mib:])
	if !bytes.Equal(got, want) {
		t.Fatal("read after trim differs")
	}
	if !bytes.Equal(objectBytes(t, store, "00000002"), want[2*mib:3*mib]) {
		t.Fatal("partial trim not stored as zeros")
	}
	// Writing zeros over a whole stored block deletes it too.
	if _, err := d.WriteAt(make([]byte, mib), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if exists(t, store, "00000000") {
		t.Fatal("an all-zero block must not be stored")
	}
}

func TestRestartFindsGeometry(t *testing.T) {
	mem := memstore.New()
	d := testDevice(t, mem, Geometry{Size: 32 * mib, BlockSize: 64 << 10}, 8*mib)
	data := pattern(3*mib+4096, 5)
	if _, err := d.WriteAt(data, 512<<10); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := testDevice(t, mem, Geometry{}, 8*mib)
	if g := d2.Geometry(); g != (Geometry{Size: 32 * mib, BlockSize: 64 << 10}) {
		t.Fatalf("reopened geometry %+v", g)
	}
	got := make([]byte, len(data))
	if _, err := d2.ReadAt(got, 512<<10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data lost across restart")
	}
	d2.Close()

	for _, tc := range []struct {
		name string
		g    Geometry
	}{
		{"size mismatch", Geometry{Size: 64 * mib}},
		{"block size mismatch", Geometry{BlockSize: mib}},
		{"not a power of two", Geometry{Size: 32 * mib, BlockSize: 3 << 16}},
		{"block size too small", Geometry{Size: 32 * mib, BlockSize: 2048}},
	} {
		_, err := Open(t.Context(), Config{Store: mem, Geometry: tc.g})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	_, err := Open(t.Context(), Config{Store: memstore.New(), Geometry: Geometry{Size: mib + 4096}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("size not a multiple of the block size: err = %v", err)
	}
	_, err = Open(t.Context(), Config{Store: memstore.New()})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("fresh bucket without size: err = %v", err)
	}
}

func TestS3backerBlockZeroGeometry(t *testing.T) {
	mem := memstore.New()
	// What s3backer leaves: block 0 with its size headers, no descriptor.
	blk := pattern(mib, 6)
	if _, err := mem.Put(t.Context(), "00000000", blk, objstorePut(Geometry{Size: 64 * mib, BlockSize: mib})); err != nil {
		t.Fatal(err)
	}
	d := testDevice(t, mem, Geometry{}, 8*mib)
	if g := d.Geometry(); g != (Geometry{Size: 64 * mib, BlockSize: mib}) {
		t.Fatalf("geometry from s3backer's block 0: %+v", g)
	}
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("block 0 read back wrong (err %v)", err)
	}
}

func TestRequestChecks(t *testing.T) {
	d := testDevice(t, memstore.New(), Geometry{Size: 4 * mib, BlockSize: mib}, 8*mib)
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"read past end", func() error { _, err := d.ReadAt(buf, 4*mib-2048); return err }()},
		{"write past end", func() error { _, err := d.WriteAt(buf, 4*mib); return err }()},
		{"negative offset", func() error { _, err := d.ReadAt(buf, -512); return err }()},
		{"misaligned offset", func() error { _, err := d.WriteAt(buf, 100); return err }()},
		{"misaligned length", func() error { _, err := d.ReadAt(buf[:100], 0); return err }()},
		{"trim past end", d.Trim(3*mib, 2*mib)},
	} {
		if !errors.Is(tc.err, syscall.EINVAL) {
			t.Errorf("%s: err = %v, want EINVAL", tc.name, tc.err)
		}
	}
}

func TestFlushReportsFailureAndRetries(t *testing.T) {
	fs := &faultyStore{Store: memstore.New()}
	d := testDevice(t, fs, Geometry{Size: 8 * mib, BlockSize: mib}, 16*mib)
	fs.failPuts.Store(true)
	data := pattern(mib, 7)
	if _, err := d.WriteAt(data, 2*mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing store: err = %v, want EIO", err)
	}
	if _, err := d.WriteAtFUA(data, 4*mib); !errors.Is(err, syscall.EIO) {
		t.Fatalf("FUA write with a failing store: err = %v, want EIO", err)
	}
	// The data is still there to read and to retry.
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 2*mib); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("dirty data lost after failed upload (err %v)", err)
	}
	fs.failPuts.Store(false)
	if err := d.Sync(); err != nil {
		t.Fatalf("Sync after the store recovered: %v", err)
	}
	for _, k := range []string{"00000002", "00000004"} {
		if !bytes.Equal(objectBytes(t, fs.Store, k), data) {
			t.Fatalf("%s not stored after recovery", k)
		}
	}
}

func TestFUAIsDurableOnReturn(t *testing.T) {
	store, _, mem := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 16*mib)
	data := pattern(8192, 8)
	if _, err := d.WriteAtFUA(data, 5*mib+4096); err != nil {
		t.Fatal(err)
	}
	got := objectBytes(t, mem, "00000005")
	if !bytes.Equal(got[4096:4096+8192], data) || !isZero(got[:4096]) || !isZero(got[4096+8192:]) {
		t.Fatal("FUA write not in the store when WriteAtFUA returned")
	}
}

func TestBlocksCarryMetadata(t *testing.T) {
	mem := memstore.New()
	d := testDevice(t, mem, Geometry{Size: 8 * mib, BlockSize: mib}, 16*mib)
	if _, err := d.WriteAtFUA(pattern(mib, 9), 0); err != nil {
		t.Fatal(err)
	}
	a, err := mem.Stat(t.Context(), "00000000")
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentType != BlockContentType || a.Metadata[MetaBlockSize] != "1048576" || a.Metadata[MetaFileSize] != "8388608" {
		t.Fatalf("block 0 attrs %+v", a)
	}
}

// TestConcurrentModel drives the device from several goroutines with a tiny
// cache and a slow store (forcing eviction, back-pressure, copy-on-write
// under upload and read-modify-write), then checks every byte against a
// model, in the device and in the store after a reopen.
func TestConcurrentModel(t *testing.T) {
	const (
		bs      = 64 << 10
		blocks  = 48
		workers = 4
	)
	fs := &faultyStore{Store: memstore.New(), delay: time.Millisecond}
	d, err := Open(t.Context(), Config{Store: fs, Geometry: Geometry{Size: blocks * bs, BlockSize: bs},
		CacheSize: 6 * bs, Parallel: 3, ReadAhead: 2, WriteDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, blocks*bs)
	var wg sync.WaitGroup
	// Each worker owns an interleaved set of sectors ranges (so writers
	// share blocks but never bytes) and checks its reads against the model.
	region := int64(blocks * bs / workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			lo := int64(w) * region
			for i := 0; i < 300; i++ {
				off := lo + int64(r.IntN(int(region/SectorSize)))*SectorSize
				n := min(int64(1+r.IntN(int(3*bs/SectorSize)))*SectorSize, lo+region-off)
				switch op := r.IntN(10); {
				case op == 1:
					// A whole block through the buffer the device adopts.
					off = off / bs * bs
					buf := d.BlockBuffer()
					p := pattern(bs, r.Uint64())
					copy(buf, p)
					if err := d.WriteBlockBuffer(buf, off, r.IntN(2) == 0); err != nil {
						t.Error(err)
						return
					}
					copy(model[off:], p)
				case op < 5:
					p := pattern(int(n), r.Uint64())
					var err error
					if op == 0 {
						_, err = d.WriteAtFUA(p, off)
					} else {
						_, err = d.WriteAt(p, off)
					}
					if err != nil {
						t.Error(err)
						return
					}
					copy(model[off:], p)
				case op < 6:
					if err := d.Trim(off, n); err != nil {
						t.Error(err)
						return
					}
					clear(model[off : off+n])
				case op < 7:
					if err := d.Sync(); err != nil {
						t.Error(err)
						return
					}
				default:
					got := make([]byte, n)
					if _, err := d.ReadAt(got, off); err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(got, model[off:off+n]) {
						t.Errorf("worker %d: read [%d,+%d) differs from model", w, off, n)
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	st := d.Stats()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Evictions == 0 || st.Stalls == 0 {
		t.Logf("stats %+v", st)
		t.Fatal("test did not exercise eviction and back-pressure; shrink the cache")
	}
	if m := fs.maxFlight.Load(); m > 3 {
		t.Fatalf("%d store requests in flight, Parallel is 3", m)
	}
	d2 := testDevice(t, fs.Store, Geometry{}, 6*bs)
	got := make([]byte, blocks*bs)
	if _, err := d2.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("store content after close differs from the model")
	}
	for blk := int64(0); blk < blocks; blk++ {
		stored := exists(t, fs.Store, BlockKey(blk))
		if zero := isZero(model[blk*bs : (blk+1)*bs]); stored == zero {
			t.Errorf("block %d: stored=%v but all-zero=%v", blk, stored, zero)
		}
	}
}

// TestVolatileDevice: a volatile device (mem://) keeps every block written
// in its own buffers, whatever the cache size, and nothing in the store: a
// FLUSH has nothing to do, and a trim turns a block back into zeros.
func TestVolatileDevice(t *testing.T) {
	store, _, _ := countingMem()
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 4 * mib, Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := pattern(16*mib, 13)
	for i := range int64(8) {
		buf := d.BlockBuffer()
		copy(buf, want[i*mib:])
		if err := d.WriteBlockBuffer(buf, i*mib, i == 7); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.WriteAt(want[8*mib:], 8*mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Trim(3*mib, mib); err != nil {
		t.Fatal(err)
	}
	clear(want[3*mib : 4*mib])
	if _, err := d.WriteAt(want[3*mib+4096:3*mib+8192], 3*mib+4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16*mib)
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("a volatile device reads back other bytes than written")
	}
	for n := range int64(16) {
		if exists(t, store, d.Naming().Key(n)) {
			t.Fatalf("a volatile device stored block %d", n)
		}
	}
	if st := d.Stats(); st.Puts != 0 || st.Evictions != 0 {
		t.Fatalf("a volatile device made %d block uploads and %d evictions; its buffers are the only copy", st.Puts, st.Evictions)
	}
}
