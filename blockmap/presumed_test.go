package blockmap

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// unlisted hides one key from List, as a listing that missed keys would:
// the device believes that block absent while its object exists. With
// held set, the first PUT of that key announces itself on at and waits
// for proceed before the store sees it.
type unlisted struct {
	objstore.Store
	key         string
	held        bool
	at, proceed chan struct{}
	puts        atomic.Int64 // PUTs of key
}

func (s *unlisted) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		if info.Key == s.key {
			return nil
		}
		return fn(info)
	})
}

func (s *unlisted) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if key == s.key && s.puts.Add(1) == 1 && s.held {
		s.at <- struct{}{}
		<-s.proceed
	}
	return s.Store.Put(ctx, key, data, opts)
}

// unlistedBlock stores base as block 1 and opens a device over a store
// that hides it from the listing.
func unlistedBlock(t *testing.T, base []byte, held bool) (*Device, *unlisted) {
	t.Helper()
	g := Geometry{Size: 8 * mib, BlockSize: mib}
	mem := memstore.New()
	if _, err := mem.Put(t.Context(), "00000001", base, objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	store := &unlisted{Store: mem, key: "00000001", held: held, at: make(chan struct{}), proceed: make(chan struct{})}
	d := testDevice(t, store, g, 8*mib)
	if st := d.Stats(); st.BlocksPresent != 0 {
		t.Fatalf("the device knows of %d blocks; the listing should hide block 1", st.BlocksPresent)
	}
	return d, store
}

// checkBlock1 checks block 1 in the store and through the device.
func checkBlock1(t *testing.T, d *Device, s *unlisted, want []byte) {
	t.Helper()
	if got := objectBytes(t, s.Store, "00000001"); !bytes.Equal(got, want) {
		t.Fatalf("stored block 1 differs from the object with the writes merged over it (%d zero bytes of %d)", bytes.Count(got, []byte{0}), len(got))
	}
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("block 1 reads back other bytes than stored")
	}
}

// A 4 KiB write to a block the presence map wrongly believes absent must
// not replace the object with 1020 KiB of zeros.
func TestWriteOverAnUnknownObjectKeepsIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		patch []byte
	}{
		{"data", pattern(4096, 51)},
		// All zeros: the upload would be a DELETE.
		{"zeros", make([]byte, 4096)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := pattern(mib, 50)
			d, s := unlistedBlock(t, base, false)
			if _, err := d.WriteAt(tc.patch, mib+8192); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(base)
			copy(want[8192:], tc.patch)
			checkBlock1(t, d, s, want)
		})
	}
}

// Writes and trims that land while the create-only PUT is out are merged
// over the object too; a whole-block trim meanwhile makes it a hole.
func TestWritesDuringACreateOnlyPut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during func(d *Device) error
		want   func(want []byte)
	}{
		{"write", func(d *Device) error {
			_, err := d.WriteAt(pattern(4096, 52), mib+64<<10)
			return err
		}, func(want []byte) { copy(want[64<<10:], pattern(4096, 52)) }},
		{"partial trim", func(d *Device) error {
			return d.Trim(mib+128<<10, 8192)
		}, func(want []byte) { clear(want[128<<10 : 128<<10+8192]) }},
		{"whole trim", func(d *Device) error {
			return d.Trim(mib, mib)
		}, func(want []byte) { clear(want) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := pattern(mib, 50)
			d, s := unlistedBlock(t, base, true)
			patch := pattern(4096, 51)
			if _, err := d.WriteAt(patch, mib+8192); err != nil {
				t.Fatal(err)
			}
			synced := make(chan error, 1)
			go func() { synced <- d.Sync() }()
			<-s.at
			if err := tc.during(d); err != nil {
				t.Fatal(err)
			}
			s.proceed <- struct{}{}
			if err := <-synced; err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(base)
			copy(want[8192:], patch)
			tc.want(want)
			if isZero(want) {
				if exists(t, s.Store, "00000001") {
					t.Fatal("block 1 trimmed whole is still stored")
				}
				return
			}
			checkBlock1(t, d, s, want)
		})
	}
}

// A reply that borrowed a presumed-absent block's buffer (LendAt) while its
// create-only PUT was out keeps the bytes it was lent: the object found
// is merged under the written sectors in a copy, not in the lent buffer.
func TestMergeLeavesALentBufferAlone(t *testing.T) {
	base := pattern(mib, 60)
	d, s := unlistedBlock(t, base, true)
	patch := pattern(4096, 61)
	if _, err := d.WriteAt(patch, mib+8192); err != nil {
		t.Fatal(err)
	}
	synced := make(chan error, 1)
	go func() { synced <- d.Sync() }()
	<-s.at
	views, release, err := d.LendAt(mib, mib, nil)
	if err != nil {
		t.Fatal(err)
	}
	lent := bytes.Join(views, nil)
	s.proceed <- struct{}{}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(views, nil); !bytes.Equal(got, lent) {
		t.Errorf("the buffer lent to a reply changed under it: %d of %d bytes differ", countDiff(got, lent), len(lent))
	}
	release()
	want := bytes.Clone(base)
	copy(want[8192:], patch)
	checkBlock1(t, d, s, want)
}

func countDiff(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// failedCreate fails the first create-only PUT of key with a transient
// error, after storing it when stored is set: an answer lost on the way
// back.
type failedCreate struct {
	objstore.Store
	key    string
	stored bool
	failed atomic.Bool
}

func (s *failedCreate) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if key != s.key || !opts.IfNoneMatch || s.failed.Swap(true) {
		return s.Store.Put(ctx, key, data, opts)
	}
	if s.stored {
		if _, err := s.Store.Put(ctx, key, data, opts); err != nil {
			return objstore.Attrs{}, err
		}
	}
	return objstore.Attrs{}, objstore.Transient(errors.New("connection reset"))
}

// objstore.Retrying does not retry create-only PUTs, so the device does:
// a FLUSH must not fail for one transient error. When the failed try was
// stored after all, the retry finds that object: merging the sectors
// written over it must give the block, the writes made since included.
func TestCreateOnlyPutRetried(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "answer lost"}[stored], func(t *testing.T) {
			mem := memstore.New()
			s := &failedCreate{Store: mem, key: "00000002", stored: stored}
			d := testDevice(t, s, Geometry{Size: 8 * mib, BlockSize: mib}, 8*mib)
			first, second := pattern(4096, 60), pattern(8192, 61)
			want := make([]byte, mib)
			copy(want, first)
			if _, err := d.WriteAt(first, 2*mib); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatalf("Sync after one transient failure of a create-only PUT: %v", err)
			}
			if !s.failed.Load() {
				t.Fatal("no create-only PUT was made")
			}
			if !bytes.Equal(objectBytes(t, mem, "00000002"), want) {
				t.Fatal("stored block 2 differs from the write over zeros")
			}
			if _, err := d.WriteAt(second, 2*mib+512<<10); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			copy(want[512<<10:], second)
			if !bytes.Equal(objectBytes(t, mem, "00000002"), want) {
				t.Fatal("stored block 2 differs from the two writes over zeros")
			}
		})
	}
}

// hiddenBlocks lists no block object at all: the device believes every
// block absent while each has an object.
type hiddenBlocks struct{ objstore.Store }

func (s hiddenBlocks) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		if len(info.Key) == 8 {
			return nil
		}
		return fn(info)
	})
}

// TestConcurrentWritesOverUnknownObjects: concurrent partial, whole and
// FUA writes and flushes over a tiny cache, on a device that believes
// absent every block, each of which has an object: what the store holds
// in the end is every object with the writes merged over it.
func TestConcurrentWritesOverUnknownObjects(t *testing.T) {
	const (
		bs      = 64 << 10
		blocks  = 32
		workers = 4
	)
	g := Geometry{Size: blocks * bs, BlockSize: bs}
	mem := memstore.New()
	model := pattern(blocks*bs, 70)
	for n := range int64(blocks) {
		if _, err := mem.Put(t.Context(), BlockKey(n), model[n*bs:(n+1)*bs], objstorePut(g)); err != nil {
			t.Fatal(err)
		}
	}
	fs := &faultyStore{Store: hiddenBlocks{mem}, delay: time.Millisecond}
	d, err := Open(t.Context(), Config{Store: fs, Geometry: g, CacheSize: 6 * bs, Parallel: 3, ReadAhead: 2, WriteDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	region := int64(blocks * bs / workers)
	for w := range int64(workers) {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 71))
			lo := w * region
			// Small writes, few of them whole blocks, so that most blocks
			// keep sectors never written.
			for range 100 {
				off := lo + int64(r.IntN(int(region/SectorSize)))*SectorSize
				n := min(int64(1+r.IntN(int(bs/4/SectorSize)))*SectorSize, lo+region-off)
				p := pattern(int(n), r.Uint64())
				var err error
				switch op := r.IntN(20); {
				case op == 0:
					_, err = d.WriteAtFUA(p, off)
				case op == 1:
					off = off / bs * bs
					buf := d.BlockBuffer()
					p = pattern(bs, r.Uint64())
					copy(buf, p)
					err = d.WriteBlockBuffer(buf, off, false)
				case op == 2:
					err = d.Sync()
					p = nil
				case op == 3:
					p = make([]byte, n) // zeros, written as data
					_, err = d.WriteAt(p, off)
				default:
					_, err = d.WriteAt(p, off)
				}
				if err != nil {
					t.Error(err)
					return
				}
				copy(model[off:], p)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := testDevice(t, mem, Geometry{}, 6*bs)
	got := make([]byte, blocks*bs)
	if _, err := d2.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for n := range int64(blocks) {
		if !bytes.Equal(got[n*bs:(n+1)*bs], model[n*bs:(n+1)*bs]) {
			t.Errorf("block %d differs from its object with the writes merged over it", n)
		}
	}
}

// Zeros written into a block that has no object: the device looks before
// it deletes (one GET), and stores nothing.
func TestZerosIntoAnAbsentBlock(t *testing.T) {
	store, counts, mem := countingMem()
	d := testDevice(t, store, Geometry{Size: 8 * mib, BlockSize: mib}, 8*mib)
	gets := counts.Gets.Load()
	if _, err := d.WriteAt(make([]byte, 4096), 5*mib+4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if exists(t, mem, "00000005") {
		t.Fatal("zeros written into an absent block were stored")
	}
	if got := counts.Gets.Load() - gets; got != 1 {
		t.Fatalf("%d GETs, want 1 to see whether there is an object to merge the zeros into", got)
	}
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 5*mib); err != nil || !isZero(got) {
		t.Fatalf("block 5 does not read back as zeros (err %v)", err)
	}
}
