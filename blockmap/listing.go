package blockmap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
)

// The presence map is filled by listing the store. A bucket of 10^8 blocks
// is 10^5 pages of 1000 keys, hours one page after another: so the key
// space is split into parts listed side by side (ranges.go), and with
// Config.ListInBackground the device serves while they run. Until the
// listing is done, a block it has not reached is unknown: it may exist,
// so a read fetches it (no object: zeros, and the device has learned that
// it is absent), a trim deletes it, and a partial write merges it (a
// create-only PUT if the fetch found nothing, upload.go). What the device
// learns of a block itself (a fetch, a PUT, a DELETE) is newer than what
// a listing page says of it, so the listing leaves such a block alone.
type listing struct {
	// done: every chunk has been listed; present is the whole truth, and
	// the fields below are dropped.
	done bool
	// learned holds the blocks whose presence the device learned itself
	// while the listing ran.
	learned presence
	// chunkDone[i], for plain names, is set once the blocks
	// [i<<shift, (i+1)<<shift), chunk i (keyChunks), have been listed.
	// Hash-prefixed names scatter a chunk's blocks over the device: known
	// only when done.
	chunkDone []bool
	shift     uint
	// Progress: keys listed, and chunks (keyChunks) finished of all.
	keys int64
	// beyond counts the blocks listed beyond the device's end.
	beyond              int64
	chunksDone, chunks  int
	started, finishedAt time.Time
	// finished is closed once done is set (WaitListed).
	finished chan struct{}
}

// known reports whether the presence map is the truth about block n.
// Called with d.mu held.
func (d *Device) known(n int64) bool {
	l := &d.listing
	return l.done || l.learned.has(n) || (l.chunkDone != nil && l.chunkDone[n>>l.shift])
}

// mayExist reports whether block n may have an object: a block the map
// does not know yet must be looked at. Called with d.mu held.
func (d *Device) mayExist(n int64) bool { return d.present.has(n) || !d.known(n) }

// learn records what the device found out itself about block n's object.
// Called with d.mu held.
func (d *Device) learn(n int64, present bool) {
	d.present.set(n, present)
	if !d.listing.done {
		d.listing.learned.set(n, true)
	}
}

// startListing probes the encoding of the first block listed, unless
// block 0 exists and was probed already (block 0 may be a hole in a bucket
// s3backer encrypted, whose blocks this device cannot read: better refused
// at start than failing every read), then lists the store: before
// returning, or, with Config.ListInBackground, in the background, until
// done or the device closes.
func (d *Device) startListing(ctx context.Context, block0Probed bool) error {
	if !block0Probed {
		if err := d.probeFirstBlock(ctx); err != nil {
			return err
		}
	}
	chunks := chunkKeys(d.store, Layout{d.geo, d.naming}, d.cfg.Parallel)
	d.listing = listing{learned: newPresence(), started: time.Now(), finished: make(chan struct{}),
		chunks: len(chunks.bounds), shift: chunks.shift}
	if !d.naming.HashPrefix {
		d.listing.chunkDone = make([]bool, len(chunks.bounds))
	}
	if !d.cfg.ListInBackground {
		return d.listAll(ctx, chunks, false)
	}
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		d.listAll(d.ctx, chunks, true)
	}()
	return nil
}

// errFirstFound stops probeFirstBlock's listing at its first block.
var errFirstFound = errors.New("first block found")

func (d *Device) probeFirstBlock(ctx context.Context) error {
	var first string
	err := d.store.List(ctx, "", "", func(info objstore.ObjectInfo) error {
		if _, ok := d.naming.Parse(info.Key); ok {
			first = info.Key
			return errFirstFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFirstFound) {
		return fmt.Errorf("listing blocks: %w", err)
	}
	if first == "" {
		return nil
	}
	a, err := d.store.Stat(ctx, first)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		// Listed, but gone or never there (a damaged listing): its reads
		// will find no object either.
		d.log.Warn("the first block listed has no object; its encoding was not probed", "key", first)
		return nil
	case err != nil:
		return fmt.Errorf("probing %s: %w", first, err)
	}
	return checkEncoding(first, a)
}

// listAll lists every chunk into the presence map. In the background a
// part whose listing fails (after the store layer's retries) is listed
// again after a pause, for as long as the device is open: a block the map
// does not know costs a GET, never a wrong answer. Before serving, the
// first failure is Open's.
func (d *Device) listAll(ctx context.Context, chunks keyChunks, background bool) error {
	stopProgress := d.logListingProgress(ctx)
	defer stopProgress()
	l := chunkLister{store: d.store, chunks: chunks, parallel: d.cfg.Parallel, log: d.log, background: background,
		keys: func(_ int, batch []objstore.ObjectInfo) { d.applyListed(batch) },
		listed: func(i int) {
			d.mu.Lock()
			if d.listing.chunkDone != nil {
				d.listing.chunkDone[i] = true
			}
			d.listing.chunksDone++
			d.mu.Unlock()
		}}
	if err := l.list(ctx); err != nil {
		if err == ctx.Err() {
			return err // the device closes
		}
		return fmt.Errorf("listing blocks: %w", err)
	}
	d.mu.Lock()
	ls := &d.listing
	ls.done, ls.learned, ls.chunkDone = true, presence{}, nil
	ls.finishedAt = time.Now()
	count, keys, beyond := d.present.count, ls.keys, ls.beyond
	took := ls.finishedAt.Sub(ls.started)
	close(ls.finished)
	d.mu.Unlock()
	l.mu.Lock()
	listings, inFlight := l.listings, l.inFlight
	l.mu.Unlock()
	args := []any{"size", bytesize.Format(d.geo.Size), "block_size", bytesize.Format(d.geo.BlockSize),
		"blocks_present", count, "keys", keys, "chunks", len(chunks.bounds), "listings", listings, "in_flight", inFlight,
		"list_time", took.Round(time.Millisecond)}
	if beyond > 0 {
		args = append(args, "blocks_beyond_end", beyond)
	}
	d.log.Info("listing complete", args...)
	return nil
}

// applyListed marks the blocks of a batch of listed keys present, but
// those whose presence the device learned itself: that is newer than the
// listing. A store listed out of order lists a range again: every block
// any listing showed is kept (a block listed wrongly as present costs a
// GET that finds no object; writes over it are create-only PUTs,
// upload.go).
func (d *Device) applyListed(batch []objstore.ObjectInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, info := range batch {
		n, ok := d.naming.Parse(info.Key)
		switch {
		case !ok:
		case n >= d.geo.Blocks():
			if d.listing.beyond++; d.listing.beyond == 1 {
				d.log.Warn("object beyond the device end ignored (the listing's end counts them all)", "key", info.Key, "blocks", d.geo.Blocks())
			}
		case !d.listing.learned.has(n):
			d.present.set(n, true)
		}
	}
	d.listing.keys += int64(len(batch))
}

// listingProgressEvery is how often a listing under way logs its progress.
const listingProgressEvery = 10 * time.Second

// logListingProgress logs the listing's progress (keys, rate, chunks,
// estimated time left) every listingProgressEvery until stopped.
func (d *Device) logListingProgress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(listingProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			d.mu.Lock()
			l := d.listing
			d.mu.Unlock()
			elapsed := time.Since(l.started)
			args := []any{"keys", l.keys, "keys_per_second", int64(float64(l.keys) / elapsed.Seconds()),
				"chunks_done", l.chunksDone, "chunks", l.chunks}
			if l.chunksDone > 0 {
				left := time.Duration(float64(elapsed) * float64(l.chunks-l.chunksDone) / float64(l.chunksDone))
				args = append(args, "eta", left.Round(time.Second))
			}
			d.log.Info("listing blocks", args...)
		}
	}()
	return func() { cancel(); <-done }
}

// WaitListed waits until the listing is complete (Config.ListInBackground),
// or ctx ends.
func (d *Device) WaitListed(ctx context.Context) error {
	d.mu.Lock()
	finished := d.listing.finished
	d.mu.Unlock()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
