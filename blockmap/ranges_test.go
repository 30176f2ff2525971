package blockmap

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objbacker/objbacker/objstore"
	"github.com/objbacker/objbacker/objstore/memstore"
)

// oddKeys are no blocks of the devices below, each where the ranges by hex
// prefix could miss it: before the first range, between two ranges that
// are not neighbours in key order, inside a range after the mark a gap
// listing starts at, and after the last range.
var oddKeys = []string{
	"-", "0", "000", "0000", "0000~", "0000~~", "0000\u00e9", "00000000.bak", "0000000g",
	"0009~", "0009~x", "0009\x7f", "0009\u00e9", "000:", "000`x", "000fffff/x", "000g", "000~",
	"0010", "00100000", "0:", "9~", "a", "f~~", "g", "s3backer-mounted", "zz/yy", "~", "\u00e9",
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
	// 16 ranges of 4 hex digits: a gap between "0009" and "000a".
	"plain, 2^20 blocks": {Geometry{Size: 1 << 32, BlockSize: 4096}, Naming{}},
	// 2 ranges of 5 hex digits.
	"plain, 5000 blocks": {Geometry{Size: 5000 * 4096, BlockSize: 4096}, Naming{}},
	// 16 ranges of 1 hex digit.
	"hash-prefixed, 2^20 blocks": {Geometry{Size: 1 << 32, BlockSize: 4096}, Naming{HashPrefix: true}},
	// 1 range, "".
	"hash-prefixed, 5000 blocks": {Geometry{Size: 5000 * 4096, BlockSize: 4096}, Naming{HashPrefix: true}},
}

// The device's ranges and the gaps around them hold every key of a bucket
// once.
func TestRangesAndGapsHoldEveryKeyOnce(t *testing.T) {
	for name, l := range testLayouts {
		t.Run(name, func(t *testing.T) {
			mem := bucketWith(t, l, 301)
			ranges, _ := splitKeys(mem, l, 4)
			ranges = append(ranges, gaps(ranges)...)
			var mu sync.Mutex
			seen := map[string]int{}
			lister := rangeLister{store: mem, parallel: 4, log: slog.New(slog.DiscardHandler),
				keys: func(_ keyRange, _ int, batch []objstore.ObjectInfo) {
					mu.Lock()
					defer mu.Unlock()
					for _, info := range batch {
						seen[info.Key]++
					}
				}}
			if err := lister.list(t.Context(), ranges); err != nil {
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
			t.Logf("%d ranges and gaps, %d keys", len(ranges), len(want))
		})
	}
}

// listsInFlight counts the List calls in flight. Until want of them have
// been in flight at once, each waits for the others, up to a second: the
// calls made side by side meet there, however slow the machine.
type listsInFlight struct {
	objstore.Store
	want      int64
	now, most atomic.Int64
}

func (s *listsInFlight) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	for deadline := time.Now().Add(time.Second); s.most.Load() < s.want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return s.Store.List(ctx, prefix, startAfter, fn)
}

// CountObjects counts exactly what one listing of the whole bucket counts,
// listing parallel ranges side by side.
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
			// Ranges, and gaps around them, side by side: but one range,
			// "", is one listing.
			ranges, _ := splitKeys(mem, l, 4)
			store := &listsInFlight{Store: mem, want: 1}
			if len(ranges) > 1 {
				store.want = 4
			}
			got, err := CountObjects(t.Context(), store, l, 4, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("CountObjects = %+v, want %+v", got, want)
			}
			if len(ranges) > 1 && store.most.Load() != 4 {
				t.Errorf("at most %d listings in flight, want --parallel 4", store.most.Load())
			}
		})
	}
}

// A store that lists a range out of order has it listed again; the count
// is its last listing's, not the sum of them.
func TestCountObjectsListedAgain(t *testing.T) {
	l := Layout{Geometry{Size: 16 * mib, BlockSize: mib}, Naming{}}
	mem := memstore.New()
	for n := range int64(8) {
		if _, err := mem.Put(t.Context(), l.Naming.Key(n), []byte("block"), objstorePut(l.Geometry)); err != nil {
			t.Fatal(err)
		}
	}
	// One listing at a time: the first, of the one range, is damaged.
	store := &damagedListing{Store: mem, from: "00000003", to: "0000000c"}
	got, err := CountObjects(t.Context(), store, l, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ObjectCount{Blocks: 8, Bytes: 8 * 5}); got != want || store.listings != 4 {
		t.Errorf("CountObjects = %+v in %d listings, want %+v in 4: the range twice, and the gaps around it", got, store.listings, want)
	}
}

// A bucket with no device recorded is listed whole, as one gap.
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

// A store whose every listing reads all its keys is listed in one range,
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
