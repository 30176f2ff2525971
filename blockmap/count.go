package blockmap

import (
	"context"
	"errors"
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
// l (zero when none is recorded), listing parts of the key space side by
// side as the device does, at most parallel at a time. A part listed again
// (after a failure, or out of order: chunkLister.listPart) counts as its
// last listing.
func CountObjects(ctx context.Context, store objstore.Store, l Layout, parallel int, log *slog.Logger) (ObjectCount, error) {
	chunks := chunkKeys(store, l, parallel)
	var (
		mu      sync.Mutex
		tallies = make([]ObjectCount, len(chunks.bounds))
	)
	lister := chunkLister{store: store, chunks: chunks, parallel: parallel, log: log,
		keys: func(chunk int, batch []objstore.ObjectInfo) {
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
			t := &tallies[chunk]
			t.Blocks += c.Blocks
			t.Bytes += c.Bytes
			t.Other += c.Other
		},
		reset: func(lo, hi int) {
			mu.Lock()
			defer mu.Unlock()
			clear(tallies[lo:hi])
		}}
	if err := lister.list(ctx); err != nil {
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

// ForEachKey lists every key of store as CountObjects does (parts side by
// side, at most parallel, split by the chunks of layout l, which may be
// zero) and hands them to fn a batch at a time, from several goroutines at
// once. A key may come more than once: a part is listed again after a
// failure or out of order. The first error of fn ends the listing and is
// returned.
func ForEachKey(ctx context.Context, store objstore.Store, l Layout, parallel int, log *slog.Logger, fn func(batch []objstore.ObjectInfo) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lister := chunkLister{store: store, chunks: chunkKeys(store, l, parallel), parallel: parallel, log: log,
		keys: func(_ int, batch []objstore.ObjectInfo) {
			if ctx.Err() == nil {
				if err := fn(batch); err != nil {
					cancel(err)
				}
			}
		}}
	err := lister.list(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}
