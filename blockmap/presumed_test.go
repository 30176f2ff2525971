package blockmap

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"

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

func (s *unlisted) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(info objstore.ObjectInfo) error {
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

// lostAnswer stores the first create-only PUT of key and reports a
// transient failure, as when the answer is lost on the way back.
type lostAnswer struct {
	objstore.Store
	key  string
	lost atomic.Bool
}

func (s *lostAnswer) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	a, err := s.Store.Put(ctx, key, data, opts)
	if err == nil && key == s.key && opts.IfNoneMatch && s.lost.CompareAndSwap(false, true) {
		return objstore.Attrs{}, objstore.Transient(errors.New("connection reset"))
	}
	return a, err
}

// The retry of a create-only PUT whose first try was stored finds that
// object: merging the sectors written over it must give the block, the
// writes made since the first try included.
func TestCreateOnlyPutRetriedAfterALostAnswer(t *testing.T) {
	mem := memstore.New()
	s := &lostAnswer{Store: mem, key: "00000002"}
	d := testDevice(t, s, Geometry{Size: 8 * mib, BlockSize: mib}, 8*mib)
	first, second := pattern(4096, 60), pattern(8192, 61)
	if _, err := d.WriteAt(first, 2*mib); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with the PUT's answer lost: %v, want EIO", err)
	}
	if _, err := d.WriteAt(second, 2*mib+512<<10); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, mib)
	copy(want, first)
	copy(want[512<<10:], second)
	if !bytes.Equal(objectBytes(t, mem, "00000002"), want) {
		t.Fatal("stored block 2 differs from the two writes over zeros")
	}
}
