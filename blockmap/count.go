package blockmap

import (
	"context"
	"log/slog"
	"sync"

	"github.com/objbacker/objbacker/objstore"
)

// ObjectCount is what a bucket holds, as CountObjects counts it.
type ObjectCount struct {
	// Blocks are the objects named as l.Naming names blocks, beyond the
	// device's end too; Bytes is their size.
	Blocks, Bytes int64
	// Other is every other object: the device's records, the mount
	// marker, anything else.
	Other int64
}

// CountObjects counts the objects of store, which holds a device of layout
// l (zero when none is recorded), listing parallel ranges side by side:
// the ranges the device lists, and the gaps between and around them,
// which hold the keys that are no block of the device. A range listed
// again (out of order, rangeLister.listRange) counts as its last listing.
func CountObjects(ctx context.Context, store objstore.Store, l Layout, parallel int, log *slog.Logger) (ObjectCount, error) {
	var ranges []keyRange
	if l.BlockSize > 0 {
		ranges, _ = splitKeys(store, l, parallel)
	}
	ranges = append(ranges, gaps(ranges)...)
	type tally struct {
		listing int
		ObjectCount
	}
	var (
		mu      sync.Mutex
		tallies = make(map[keyRange]*tally, len(ranges))
	)
	for _, r := range ranges {
		tallies[r] = new(tally)
	}
	lister := rangeLister{store: store, parallel: parallel, log: log,
		keys: func(r keyRange, listing int, batch []objstore.ObjectInfo) {
			var c ObjectCount
			for _, info := range batch {
				if _, ok := l.Naming.Parse(info.Key); ok {
					c.Blocks++
					c.Bytes += info.Size
				} else {
					c.Other++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			t := tallies[r]
			if t.listing != listing {
				*t = tally{listing: listing}
			}
			t.Blocks += c.Blocks
			t.Bytes += c.Bytes
			t.Other += c.Other
		}}
	if err := lister.list(ctx, ranges); err != nil {
		return ObjectCount{}, err
	}
	var total ObjectCount
	for _, t := range tallies {
		total.Blocks += t.Blocks
		total.Bytes += t.Bytes
		total.Other += t.Other
	}
	return total, nil
}
