package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// damagedListing changes one key of its first listing to another block's
// name, as a byte flipped on plain HTTP would: the real block is missing
// from it and the listing is out of order.
type damagedListing struct {
	objstore.Store
	from, to string
	// invented is listed first in every listing, with no object.
	invented string
	listings int
}

func (s *damagedListing) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	s.listings++
	if s.invented != "" {
		if err := fn(objstore.ObjectInfo{Key: s.invented}); err != nil {
			return err
		}
	}
	return s.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		if s.listings == 1 && info.Key == s.from {
			info.Key = s.to
		}
		return fn(info)
	})
}

// A block hidden by a damaged listing must not read as zeros: a listing out
// of order is not trusted alone.
func TestDamagedListingHidesNoBlock(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	mem := memstore.New()
	for n := range int64(8) {
		if _, err := mem.Put(t.Context(), fmt.Sprintf("%08x", n), pattern(mib, uint64(n+1)), objstorePut(g)); err != nil {
			t.Fatal(err)
		}
	}
	store := &damagedListing{Store: mem, from: "00000003", to: "0000000c"}
	d := testDevice(t, store, g, 4*mib)
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 3*mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(mib, 4)) {
		t.Fatalf("block 3, missing from a damaged listing, reads as %d zero bytes of %d", bytes.Count(got, []byte{0}), mib)
	}
	if _, err := d.ReadAt(got, 12*mib); err != nil || !isZero(got) {
		t.Fatalf("block 12, invented by the damaged listing: err %v, zeros %v; want zeros", err, isZero(got))
	}
	if store.listings != 2 {
		t.Errorf("%d listings, want 2: one damaged, one in order", store.listings)
	}
}

// A listed block without an object, first in the listing, is no reason to
// refuse to start: the probe of the first block's encoding finds nothing to
// probe, and the block reads as zeros.
func TestListedBlockWithoutObject(t *testing.T) {
	g := Geometry{Size: 16 * mib, BlockSize: mib}
	mem := memstore.New()
	if _, err := mem.Put(t.Context(), "00000005", pattern(mib, 5), objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	d := testDevice(t, &damagedListing{Store: mem, invented: "00000002"}, g, 4*mib)
	got := make([]byte, mib)
	if _, err := d.ReadAt(got, 2*mib); err != nil || !isZero(got) {
		t.Fatalf("block 2, listed without an object: err %v, zeros %v; want zeros", err, isZero(got))
	}
	if _, err := d.ReadAt(got, 5*mib); err != nil || !bytes.Equal(got, pattern(mib, 5)) {
		t.Fatalf("block 5: err %v, or other bytes than stored", err)
	}
}

// pausedDamage damages its first listing as damagedListing does, and
// holds it after the key pauseAfter until resume is closed.
type pausedDamage struct {
	objstore.Store
	from, to, pauseAfter string
	paused, resume       chan struct{}
	listings             atomic.Int32
}

func (s *pausedDamage) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	first := s.listings.Add(1) == 1
	return s.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		key := info.Key
		if first && key == s.from {
			info.Key = s.to
		}
		if err := fn(info); err != nil {
			return err
		}
		if first && key == s.pauseAfter {
			close(s.paused)
			select {
			case <-s.resume:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// A listing in the background records its chunks as listed as it goes,
// but not those a damaged key skipped: a key damaged into a later chunk
// must not make the chunks before it look listed, or a block there that
// the listing has not reached reads as zeros.
func TestDamagedKeyMarksNoChunkListed(t *testing.T) {
	const bs = 4096
	// 16384 blocks, one listing: 4 chunks of 4096 blocks.
	g := Geometry{Size: 16384 * bs, BlockSize: bs}
	mem := memstore.New()
	const hidden, next, unreached, invented = 4097, 4098, 2*4096 + 5, 3*4096 + 7
	for _, n := range []int64{0, hidden, next, unreached} {
		if _, err := mem.Put(t.Context(), BlockKey(n), pattern(bs, uint64(n)), objstorePut(g)); err != nil {
			t.Fatal(err)
		}
	}
	store := &pausedDamage{Store: mem, from: BlockKey(hidden), to: BlockKey(invented), pauseAfter: BlockKey(next),
		paused: make(chan struct{}), resume: make(chan struct{})}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 64 * bs, Parallel: 1, WriteDelay: time.Hour, ListInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	expect := func(n int64, want []byte, what string) {
		t.Helper()
		got := make([]byte, bs)
		if _, err := d.ReadAt(got, n*bs); err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("block %d (%s) reads %d zero bytes of %d, or other bytes", n, what, bytes.Count(got, []byte{0}), bs)
		}
	}
	<-store.paused
	// The listing has handed over block 0, the invented block (chunk 3)
	// and the next one (chunk 1): chunk 2 is not listed yet.
	expect(unreached, pattern(bs, unreached), "in a chunk the damaged key skipped")
	expect(hidden, pattern(bs, hidden), "hidden by the damage")
	close(store.resume)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := d.WaitListed(ctx); err != nil {
		t.Fatal(err)
	}
	// The invented block is kept as present (every block any listing
	// showed is); its read finds no object.
	if st := d.Stats(); st.BlocksPresent != 5 {
		t.Errorf("%d blocks present after the listing, want 4 and the invented one", st.BlocksPresent)
	}
	expect(invented, make([]byte, bs), "invented by the damage")
	if n := store.listings.Load(); n < 2 {
		t.Errorf("%d listings, want the damaged part listed again", n)
	}
}
