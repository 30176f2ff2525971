package blockmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// syntheticBucket is a bucket of many small blocks that costs no memory:
// block n holds synthBlock(n) when n%3 != 0 and is a hole otherwise, until
// the device writes or deletes it, which an overlay remembers. Listings
// are generated in key order, a page of 1000 keys at a time, each page
// after pageDelay; a listing that reaches block gatedFrom (if gate is
// set) waits for the gate before it lists that block.
type syntheticBucket struct {
	objstore.Store // the overlay: the device's own writes, and its records
	blocks         int64
	bs             int
	pageDelay      time.Duration
	gatedFrom      int64
	gate           chan struct{}

	// failEvery, when set, fails every failEvery-th page request with a
	// transient error, before the page is delivered.
	failEvery int64

	mu      sync.Mutex
	deleted map[string]bool
	pages   atomic.Int64
}

func synthBlock(n int64, bs int) []byte { return pattern(bs, uint64(n)+1000) }

func (s *syntheticBucket) base(key string) (int64, bool) {
	if len(key) != 8 {
		return 0, false
	}
	n, err := strconv.ParseInt(key, 16, 64)
	if err != nil || n >= s.blocks || n%3 == 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return n, !s.deleted[key]
}

func (s *syntheticBucket) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	rc, a, err := s.Store.Get(ctx, key, off, n)
	if !errors.Is(err, objstore.ErrNotFound) {
		return rc, a, err
	}
	blk, ok := s.base(key)
	if !ok {
		return rc, a, err
	}
	data := synthBlock(blk, s.bs)[off:]
	if n >= 0 {
		data = data[:n]
	}
	return io.NopCloser(bytes.NewReader(data)), objstore.Attrs{Size: int64(s.bs), ContentType: BlockContentType}, nil
}

func (s *syntheticBucket) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	a, err := s.Store.Stat(ctx, key)
	if _, ok := s.base(key); err != nil && ok {
		return objstore.Attrs{Size: int64(s.bs), ContentType: BlockContentType}, nil
	}
	return a, err
}

func (s *syntheticBucket) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if _, ok := s.base(key); ok && opts.IfNoneMatch {
		return objstore.Attrs{}, fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	}
	return s.Store.Put(ctx, key, data, opts)
}

func (s *syntheticBucket) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	s.deleted[key] = true
	s.mu.Unlock()
	return s.Store.Delete(ctx, key)
}

// List merges the synthetic keys under prefix with the overlay's.
func (s *syntheticBucket) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	var own []string
	if err := s.Store.List(ctx, prefix, startAfter, func(info objstore.ObjectInfo) error {
		own = append(own, info.Key)
		return nil
	}); err != nil {
		return err
	}
	delivered := 0
	emit := func(key string) error {
		if key <= startAfter || !strings.HasPrefix(key, prefix) {
			return nil
		}
		if delivered%1000 == 0 {
			if p := s.pages.Add(1); s.failEvery > 0 && p%s.failEvery == 0 {
				return objstore.Transient(fmt.Errorf("page %d: injected failure", p))
			}
			select {
			case <-time.After(s.pageDelay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		delivered++
		return fn(objstore.ObjectInfo{Key: key, Size: int64(s.bs)})
	}
	// The first block after startAfter: block names sort as their numbers.
	first := int64(sort.Search(int(s.blocks), func(n int) bool { return fmt.Sprintf("%08x", n) > startAfter }))
	gated := s.gate != nil
	for n := first; n < s.blocks; n++ {
		if gated && n >= s.gatedFrom {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			gated = false
		}
		key := fmt.Sprintf("%08x", n)
		for len(own) > 0 && own[0] < key {
			if err := emit(own[0]); err != nil {
				return err
			}
			own = own[1:]
		}
		if len(own) > 0 && own[0] == key {
			continue // the overlay's object comes next
		}
		if _, ok := s.base(key); ok {
			if err := emit(key); err != nil {
				return err
			}
		}
	}
	for _, key := range own {
		if err := emit(key); err != nil {
			return err
		}
	}
	return nil
}

// A device over a bucket of 120,000 blocks serves at once while its
// listing runs: written blocks read back, holes read as zeros, and reads,
// partial writes and trims of blocks not yet listed are right; once the
// listing is done the presence map holds every block, and what the device
// did meanwhile.
func TestServesWhileListing(t *testing.T) {
	const bs = 4096
	g := Geometry{Size: 120000 * bs, BlockSize: bs}
	store := &syntheticBucket{Store: memstore.New(), blocks: g.Blocks(), bs: bs, pageDelay: time.Millisecond,
		deleted: map[string]bool{}}
	// Written once by a first device (the geometry), then listings wait
	// at block 69632 (0x11000) until the test lets them go.
	first, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 64 * bs, Parallel: 4, WriteDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	store.gatedFrom, store.gate = 0x11000, make(chan struct{})

	begin := time.Now()
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 64 * bs, Parallel: 4, ReadAhead: -1,
		WriteDelay: time.Hour, ListInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	read := func(n int64) []byte {
		t.Helper()
		p := make([]byte, bs)
		if _, err := d.ReadAt(p, n*bs); err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
		return p
	}
	expect := func(n int64, want []byte, what string) {
		t.Helper()
		if got := read(n); !bytes.Equal(got, want) {
			t.Fatalf("block %d (%s) reads %d zero bytes of %d, or other bytes", n, what, bytes.Count(got, []byte{0}), bs)
		}
	}
	zeros := make([]byte, bs)
	expect(1, synthBlock(1, bs), "stored")
	if took := time.Since(begin); took > time.Second {
		t.Errorf("the first read was served %v after the start, want under 1 s", took)
	}
	if !d.Stats().Listing {
		t.Fatal("the listing is over; the test wants it running")
	}
	// Not yet listed (gated): a stored block, a hole, and changes to them.
	const stored, hole, patched, created, trimmed = 70001, 70002, 70003, 70005, 70004
	stock := func(n int64) []byte {
		if n%3 == 0 {
			return zeros
		}
		return synthBlock(n, bs)
	}
	expect(stored, stock(stored), "stored, not yet listed")
	expect(hole, zeros, "a hole, not yet listed")
	if _, err := d.WriteAt(pattern(512, 7), patched*bs+1024); err != nil {
		t.Fatal(err)
	}
	merged := stock(patched)
	copy(merged[1024:], pattern(512, 7))
	if _, err := d.WriteAt(pattern(512, 8), created*bs+512); err != nil {
		t.Fatal(err)
	}
	made := make([]byte, bs)
	copy(made[512:], pattern(512, 8))
	if err := d.Trim(trimmed*bs, bs); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if !d.Stats().Listing {
		t.Fatal("the listing is over; the test wants it running")
	}
	expect(patched, merged, "partly written, not yet listed")
	expect(created, made, "a hole partly written")
	expect(trimmed, zeros, "trimmed, not yet listed")

	close(store.gate)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := d.WaitListed(ctx); err != nil {
		t.Fatal(err)
	}
	st := d.Stats()
	// Two of three blocks are stored, less the trimmed one, plus the one
	// created.
	if want := int64(80000 - 1 + 1); st.BlocksPresent != want || st.Listing {
		t.Errorf("after the listing: %d blocks present, listing %v; want %d, false", st.BlocksPresent, st.Listing, want)
	}
	for _, n := range []int64{1, 2, 3, 65537, stored, hole, 119999} {
		expect(n, stock(n), "after the listing")
	}
	expect(patched, merged, "partly written, after the listing")
	expect(created, made, "created, after the listing")
	expect(trimmed, zeros, "trimmed, after the listing")
}

// A listing that fails on a tenth of its page requests completes with every
// block, each page requested about once more per failure: a broken range
// resumes after its last key (objstore.Retrying), it does not start over.
func TestListingResumesAfterFailedPages(t *testing.T) {
	const bs = 4096
	g := Geometry{Size: 120000 * bs, BlockSize: bs}
	open := func(failEvery int64) (int64, int64) {
		t.Helper()
		store := &syntheticBucket{Store: memstore.New(), blocks: g.Blocks(), bs: bs,
			deleted: map[string]bool{}, failEvery: failEvery}
		retrying := objstore.Retrying(store, objstore.RetryPolicy{Attempts: 4, BaseDelay: time.Microsecond, MaxDelay: time.Millisecond}, nil)
		d, err := Open(t.Context(), Config{Store: retrying, Geometry: g, CacheSize: 64 * bs, Parallel: 4, WriteDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.Stats().BlocksPresent, store.pages.Load()
	}
	present, clean := open(0)
	if present != 80000 {
		t.Fatalf("%d blocks present without failures, want 80000", present)
	}
	present, failing := open(10)
	if present != 80000 {
		t.Errorf("%d blocks present with a tenth of the pages failing, want 80000", present)
	}
	// A failure costs the failed request and its page again.
	if failing > clean*13/10 {
		t.Errorf("%d page requests with a tenth failing, %d without: a broken range starts over", failing, clean)
	}
	t.Logf("page requests: %d without failures, %d with a tenth failing", clean, failing)
}

// A device closed while its listing still runs stops the listing, stores
// what was written and removes its mount marker: the next start is not
// refused.
func TestCloseDuringTheListing(t *testing.T) {
	const bs = 4096
	g := Geometry{Size: 120000 * bs, BlockSize: bs}
	// Every listing waits at its first block, for ever. Block 0 exists:
	// its HEAD is the encoding probe, no listing.
	store := &syntheticBucket{Store: memstore.New(), blocks: g.Blocks(), bs: bs, gate: make(chan struct{}),
		deleted: map[string]bool{}}
	if _, err := store.Put(t.Context(), "00000000", synthBlock(0, bs), objstorePut(g)); err != nil {
		t.Fatal(err)
	}
	d, err := Open(t.Context(), Config{Store: store, Geometry: g, CacheSize: 64 * bs, Parallel: 4, WriteDelay: time.Hour, ListInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(pattern(512, 9), 5*bs); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close during the listing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a listing that does not end")
	}
	if _, ok, err := ReadMountMarker(t.Context(), store); err != nil || ok {
		t.Fatalf("mount marker after Close: present %v, err %v", ok, err)
	}
	want := synthBlock(5, bs)
	copy(want, pattern(512, 9))
	if got := objectBytes(t, store, "00000005"); !bytes.Equal(got, want) {
		t.Fatal("the write before Close was not stored")
	}
}
