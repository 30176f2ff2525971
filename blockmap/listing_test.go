package blockmap

import (
	"bytes"
	"context"
	"fmt"
	"testing"

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
