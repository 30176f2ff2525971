package blockmap

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// oddKeys are no blocks of the devices below, each where a listing split at
// hex prefixes could miss it: before the first chunk, between two chunks
// that are not neighbours in key order, just before where a part's listing
// starts, and after the last chunk.
var oddKeys = []string{
	"-", "0", "000", "0000", "0000~", "0000~~", "0000\u00e9", "00000000.bak", "0000000g",
	"0009~", "0009~x", "0009\x7f", "0009\u00e9", "000:", "000`x", "000fffff/x", "000g", "000~",
	"0010", "00100000", "0:", "9~", "a", "f~~", "g", "s3backer-mounted", "zz/yy", "~", "\u00e9",
	"0000/~", "0000/~~", "0001/", "0000ffff~", "f/~", "e/~~",
}

// bucketWith puts a block every stride blocks of a device of layout l,
// and the odd keys.
func bucketWith(t *testing.T, l Layout, stride int64) *memstore.Store {
	t.Helper()
	mem := memstore.New()
	for n := int64(0); n < l.Blocks(); n += stride {
		if _, err := mem.Put(t.Context(), l.Naming.Key(n), []byte("block"), objstorePut(l.Geometry)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range oddKeys {
		if _, err := mem.Put(t.Context(), k, []byte("other object"), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

var testLayouts = map[string]Layout{
	// 16 chunks of 4 hex digits: a gap between "0009" and "000a".
	"plain, 2^20 blocks": {Geometry{Size: 1 << 32, BlockSize: 4096}, Naming{}},
	// 2 chunks of 5 hex digits.
	"plain, 5000 blocks": {Geometry{Size: 5000 * 4096, BlockSize: 4096}, Naming{}},
	// 16 chunks of 1 hex digit.
	"hash-prefixed, 2^20 blocks": {Geometry{Size: 1 << 32, BlockSize: 4096}, Naming{HashPrefix: true}},
	// 1 chunk.
	"hash-prefixed, 5000 blocks": {Geometry{Size: 5000 * 4096, BlockSize: 4096}, Naming{HashPrefix: true}},
}

// A listing hands every key of a bucket over once, in the chunk that holds
// it, and every chunk is listed for good once.
func TestChunksHoldEveryKeyOnce(t *testing.T) {
	for name, l := range testLayouts {
		t.Run(name, func(t *testing.T) {
			mem := bucketWith(t, l, 301)
			chunks := chunkKeys(mem, l, 4)
			var mu sync.Mutex
			seen := map[string]int{}
			listed := make([]int, len(chunks.bounds))
			lister := chunkLister{store: mem, chunks: chunks, parallel: 4, log: slog.New(slog.DiscardHandler),
				keys: func(c int, batch []objstore.ObjectInfo) {
					mu.Lock()
					defer mu.Unlock()
					for _, info := range batch {
						seen[info.Key]++
						if got := chunks.of(info.Key); got != c {
							t.Errorf("key %q handed over in chunk %d, held by chunk %d", info.Key, c, got)
						}
					}
				},
				listed: func(c int) { listed[c]++ }}
			if err := lister.list(t.Context()); err != nil {
				t.Fatal(err)
			}
			var want []string
			if err := mem.List(t.Context(), "", "", func(info objstore.ObjectInfo) error {
				want = append(want, info.Key)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, k := range want {
				if seen[k] != 1 {
					t.Errorf("key %q listed %d times, want once", k, seen[k])
				}
			}
			if got := slices.Sorted(maps.Keys(seen)); len(got) != len(want) {
				t.Errorf("%d keys listed, want %d", len(got), len(want))
			}
			for c, n := range listed {
				if n != 1 {
					t.Errorf("chunk %d (%q) listed for good %d times, want once", c, chunks.bounds[c], n)
				}
			}
			t.Logf("%d chunks, %d keys, %d listings", len(chunks.bounds), len(want), lister.listings)
		})
	}
}

// Whatever the parts a listing is split into, every key is handed over
// once: the parts are split at every chunk boundary they can be, here by
// a lister made to split each part as soon as it has listed one key.
func TestPartsSplitAnywhereHoldEveryKeyOnce(t *testing.T) {
	for name, l := range testLayouts {
		t.Run(name, func(t *testing.T) {
			mem := bucketWith(t, l, 301)
			chunks := chunkKeys(mem, l, 4)
			var mu sync.Mutex
			seen := map[string]int{}
			var lister *chunkLister
			lister = &chunkLister{store: mem, chunks: chunks, parallel: 1, log: slog.New(slog.DiscardHandler),
				keys: func(_ int, batch []objstore.ObjectInfo) {
					mu.Lock()
					for _, info := range batch {
						seen[info.Key]++
					}
					mu.Unlock()
					// Split the largest part once more, and list the new
					// part right here: parts shrink under their listings.
					lister.mu.Lock()
					p := lister.splitLocked()
					lister.mu.Unlock()
					if p != nil {
						if err := lister.listPart(t.Context(), p); err != nil {
							t.Error(err)
						}
						lister.mu.Lock()
						lister.parts = deletePart(lister.parts, p)
						lister.mu.Unlock()
					}
				}}
			if err := lister.list(t.Context()); err != nil {
				t.Fatal(err)
			}
			n := 0
			if err := mem.List(t.Context(), "", "", func(info objstore.ObjectInfo) error {
				n++
				if seen[info.Key] != 1 {
					t.Errorf("key %q listed %d times, want once", info.Key, seen[info.Key])
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(seen) != n {
				t.Errorf("%d keys listed, want %d", len(seen), n)
			}
			t.Logf("%d chunks, %d keys, %d listings", len(chunks.bounds), n, lister.listings)
		})
	}
}

// CountObjects counts exactly what one listing of the whole bucket counts.
func TestCountObjects(t *testing.T) {
	for name, l := range testLayouts {
		t.Run(name, func(t *testing.T) {
			mem := bucketWith(t, l, 301)
			// Blocks beyond the device's end are blocks too.
			for _, n := range []int64{l.Blocks(), l.Blocks() + 0x12345} {
				if _, err := mem.Put(t.Context(), l.Naming.Key(n), []byte("beyond"), objstore.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			var want ObjectCount
			if err := mem.List(t.Context(), "", "", func(info objstore.ObjectInfo) error {
				if _, ok := l.Naming.Parse(info.Key); ok {
					want.Blocks++
					want.Bytes += info.Size
				} else {
					want.Other++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			got, err := CountObjects(t.Context(), mem, l, 4, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("CountObjects = %+v, want %+v", got, want)
			}
		})
	}
}

// A store that lists a part out of order has it listed again; the count
// is its last listing's, not the sum of them.
func TestCountObjectsListedAgain(t *testing.T) {
	l := Layout{Geometry{Size: 16 * mib, BlockSize: mib}, Naming{}}
	mem := memstore.New()
	for n := range int64(8) {
		if _, err := mem.Put(t.Context(), l.Naming.Key(n), []byte("block"), objstorePut(l.Geometry)); err != nil {
			t.Fatal(err)
		}
	}
	// One listing at a time: the first, of the one chunk, is damaged.
	store := &damagedListing{Store: mem, from: "00000003", to: "0000000c"}
	got, err := CountObjects(t.Context(), store, l, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ObjectCount{Blocks: 8, Bytes: 8 * 5}); got != want || store.listings != 2 {
		t.Errorf("CountObjects = %+v in %d listings, want %+v in 2: the damaged one, and one in order", got, store.listings, want)
	}
}

// A bucket with no device recorded is listed whole, as one chunk.
func TestCountObjectsWithoutLayout(t *testing.T) {
	mem := bucketWith(t, Layout{Geometry{Size: 4096, BlockSize: 4096}, Naming{}}, 2)
	got, err := CountObjects(t.Context(), mem, Layout{}, 4, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// "00000000" and "00100000" are blocks of any device of plain names.
	if want := (ObjectCount{Blocks: 2, Bytes: 5 + 12, Other: int64(len(oddKeys)) - 1}); got != want {
		t.Errorf("CountObjects = %+v, want %+v", got, want)
	}
}

// scanningStore lists as filestore does, reading every key whatever the
// prefix.
type scanningStore struct{ objstore.Store }

func (scanningStore) ListScansAll() bool { return true }

// A store whose every listing reads all its keys is listed in one piece,
// by the device and by CountObjects, not read once per range.
func TestStoreThatScansAllIsListedOnce(t *testing.T) {
	for name, l := range testLayouts {
		t.Run(name, func(t *testing.T) {
			mem := bucketWith(t, l, 301)
			counts := new(objstore.Counts)
			store := objstore.Counting(scanningStore{mem}, counts)
			got, err := CountObjects(t.Context(), store, l, 4, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			want, err := CountObjects(t.Context(), mem, l, 4, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if got != want || counts.Lists.Load() != 1 {
				t.Errorf("CountObjects = %+v in %d listings, want %+v in 1", got, counts.Lists.Load(), want)
			}

			counts.Lists.Store(0)
			d, err := Open(t.Context(), Config{Store: store, Geometry: l.Geometry, HashPrefix: &l.Naming.HashPrefix, CacheSize: 16 << 20, Parallel: 4, Force: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			// Block 0 is present, and probed: no listing finds the first block.
			if n := counts.Lists.Load(); n != 1 {
				t.Errorf("the device listed the store in %d listings, want 1", n)
			}
			if st, stored := d.Stats(), (l.Blocks()+300)/301; st.BlocksPresent != stored {
				t.Errorf("%d blocks present, want %d", st.BlocksPresent, stored)
			}
		})
	}
}

// pagedBucket lists the blocks n*stride of a device of plain names, n <
// blocks/stride, with no memory for them: pages of pageSize keys, each
// after pageDelay. With core set it is a store bound by its own CPU, as
// MinIO is on a small machine: its pages are served one at a time, and a
// listing's first page costs walk more (MinIO walks the bucket for every
// new listing).
type pagedBucket struct {
	objstore.Store
	blocks, stride int64
	pageSize       int
	pageDelay      time.Duration
	core           *sync.Mutex
	walk           time.Duration

	lists, pages atomic.Int64
}

func (s *pagedBucket) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	if prefix != "" {
		return fmt.Errorf("pagedBucket lists no prefix, asked for %q", prefix)
	}
	s.lists.Add(1)
	count := int((s.blocks + s.stride - 1) / s.stride)
	first := sort.Search(count, func(i int) bool { return BlockKey(int64(i)*s.stride) > startAfter })
	for i := first; i < count; i++ {
		if (i-first)%s.pageSize == 0 {
			delay := s.pageDelay
			if i == first {
				delay += s.walk
			}
			if s.core != nil {
				s.core.Lock()
			}
			s.pages.Add(1)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			if s.core != nil {
				s.core.Unlock()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err := fn(objstore.ObjectInfo{Key: BlockKey(int64(i) * s.stride), Size: 4096}); err != nil {
			return err
		}
	}
	return nil
}

// countBlocks counts a pagedBucket's blocks with CountObjects, and
// returns the lister's figures: List calls, and the most listings in
// flight.
func countBlocks(t *testing.T, store *pagedBucket, parallel int) (ObjectCount, time.Duration) {
	t.Helper()
	l := Layout{Geometry{Size: store.blocks * 4096, BlockSize: 4096}, Naming{}}
	start := time.Now()
	got, err := CountObjects(t.Context(), store, l, parallel, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.blocks + store.stride - 1) / store.stride; got.Blocks != want {
		t.Errorf("%d blocks counted, want %d", got.Blocks, want)
	}
	return got, time.Since(start)
}

// At a store whose pages cost only a round trip, listings side by side pay
// all the way: the lister doubles them up to --parallel.
func TestListingGrowsWhileItPays(t *testing.T) {
	// 2^20 blocks: 256 chunks; a block every 16th, 65536 keys in pages of
	// 100: 656 pages, 13 s one after another. Pages slow enough that 16
	// listings side by side do not make the test CPU-bound under -race.
	store := &pagedBucket{blocks: 1 << 20, stride: 16, pageSize: 100, pageDelay: 20 * time.Millisecond}
	_, took := countBlocks(t, store, 16)
	serial := time.Duration(store.pages.Load()) * store.pageDelay
	t.Logf("%d pages in %d listings in %v; one after another: at least %v", store.pages.Load(), store.lists.Load(), took, serial)
	if lists := store.lists.Load(); lists < 16 {
		t.Errorf("%d listings, want at least 16: the lister did not grow to --parallel", lists)
	}
}

// At a store bound by its own CPU, more listings side by side do not list
// faster, and each new one costs a walk: the lister stops growing, and
// lists in a few listings, not one per chunk.
func TestListingStopsGrowingWhenItDoesNotPay(t *testing.T) {
	store := &pagedBucket{blocks: 1 << 20, stride: 32, pageSize: 100, pageDelay: 5 * time.Millisecond,
		core: new(sync.Mutex), walk: 20 * time.Millisecond}
	_, took := countBlocks(t, store, 16)
	t.Logf("%d pages in %d listings in %v", store.pages.Load(), store.lists.Load(), took)
	// One listing, doubled to 2 (the first growth is always tried), to 4
	// at most if a window was lucky; listings that end take over half of
	// another's part, a few more.
	if lists := store.lists.Load(); lists > 12 {
		t.Errorf("%d listings of 256 chunks, want at most 12: the lister grew where it did not pay", lists)
	}
}
