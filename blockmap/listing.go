package blockmap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/objstore"
)

// The presence map is filled by listing the store. A bucket of 10^8 blocks
// is 10^5 pages of 1000 keys, hours one page after another: so the key
// space is split into ranges listed side by side, and with
// Config.ListInBackground the device serves while they run. Until the
// listing is done, a block it has not reached is unknown: it may exist,
// so a read fetches it (no object: zeros, and the device has learned that
// it is absent), a trim deletes it, and a partial write merges it (a
// create-only PUT if the fetch found nothing, upload.go). What the device
// learns of a block itself (a fetch, a PUT, a DELETE) is newer than what
// a listing page says of it, so the listing leaves such a block alone.
type listing struct {
	// done: every range has been listed; present is the whole truth, and
	// the fields below are dropped.
	done bool
	// learned holds the blocks whose presence the device learned itself
	// while the listing ran.
	learned presence
	// rangeDone[i], for plain names, is set once the blocks
	// [i<<shift, (i+1)<<shift) have been listed. Hash-prefixed names
	// scatter a range's blocks over the device: known only when done.
	rangeDone []bool
	shift     uint
	// Progress: keys listed, and ranges finished of all.
	keys                int64
	rangesDone, ranges  int
	started, finishedAt time.Time
	// finished is closed once done is set (WaitListed).
	finished chan struct{}
}

// known reports whether the presence map is the truth about block n.
// Called with d.mu held.
func (d *Device) known(n int64) bool {
	l := &d.listing
	return l.done || l.learned.has(n) || (l.rangeDone != nil && l.rangeDone[n>>l.shift])
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

// listAttempts bounds the listings of one range made of a store that lists
// keys out of order.
const listAttempts = 3

// listRange is one part of the key space: the keys starting with prefix;
// for plain names, the blocks of rangeDone[index].
type listRange struct {
	prefix string
	index  int
}

// ranges splits the key space into at least 4 ranges per store request in
// flight where the device is large enough, each of at least a few pages.
// Plain names are 8 hex digits, so a prefix of k digits is a range of
// 16^(8-k) consecutive blocks; hash-prefixed names start with 8 hex digits
// of a hash, uniform over the device, so a prefix of k digits is 1/16^k of
// its blocks. It sets the listing's shift and rangeDone for plain names.
func (d *Device) ranges() []listRange {
	blocks, want := d.geo.Blocks(), int64(4*d.cfg.Parallel)
	var out []listRange
	if d.naming.HashPrefix {
		k := 0
		for k < 4 && int64(1)<<(4*(k+1)) <= want && blocks>>(4*(k+1)) >= 4000 {
			k++
		}
		for i := range 1 << (4 * k) {
			out = append(out, listRange{prefix: fmt.Sprintf("%0*x", k, i)[:k], index: -1})
		}
		return out
	}
	k := 1
	for ; k < 5; k++ {
		if per := int64(1) << (4 * (8 - k)); (blocks+per-1)/per >= want {
			break
		}
	}
	d.listing.shift = uint(4 * (8 - k))
	n := int((blocks + (1 << d.listing.shift) - 1) >> d.listing.shift)
	d.listing.rangeDone = make([]bool, n)
	for i := range n {
		out = append(out, listRange{prefix: fmt.Sprintf("%0*x", k, i), index: i})
	}
	return out
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
	d.listing = listing{learned: newPresence(), started: time.Now(), finished: make(chan struct{})}
	ranges := d.ranges()
	d.listing.ranges = len(ranges)
	if !d.cfg.ListInBackground {
		return d.listAll(ctx, ranges, false)
	}
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		d.listAll(d.ctx, ranges, true)
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

// listAll lists every range, Parallel at a time. In the background a range
// whose listing fails (after the store layer's retries) is listed again
// after a pause, for as long as the device is open: a block the map does
// not know costs a GET, never a wrong answer. Before serving, the first
// failure is Open's.
func (d *Device) listAll(ctx context.Context, ranges []listRange, background bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := d.logListingProgress(ctx)
	defer stopProgress()
	next := make(chan listRange)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(d.cfg.Parallel, len(ranges)) {
		wg.Go(func() {
			for r := range next {
				for pause := time.Second; ; pause = min(2*pause, time.Minute) {
					err := d.listOne(ctx, r)
					if err == nil || ctx.Err() != nil {
						break
					}
					if !background {
						errOnce.Do(func() { firstErr = err; cancel() })
						break
					}
					d.log.Error("listing blocks failed; trying that part again", "prefix", r.prefix, "pause", pause, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(rand.N(pause) + pause/2):
					}
				}
			}
		})
	}
feed:
	for _, r := range ranges {
		select {
		case next <- r:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("listing blocks: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	l := &d.listing
	l.done, l.learned, l.rangeDone = true, presence{}, nil
	l.finishedAt = time.Now()
	count, keys := d.present.count, l.keys
	took := l.finishedAt.Sub(l.started)
	close(l.finished)
	d.mu.Unlock()
	d.log.Info("listing complete", "size", bytesize.Format(d.geo.Size), "block_size", bytesize.Format(d.geo.BlockSize),
		"blocks_present", count, "keys", keys, "ranges", len(ranges), "list_time", took.Round(time.Millisecond))
	return nil
}

// listOne lists range r into the presence map. A listing out of order is
// not trusted alone: a key damaged in transit (plain HTTP, a broken proxy)
// both invents a block and hides the real one, which would read as zeros.
// The range is listed again, keeping every block any listing showed, until
// a listing comes back in order or listAttempts were made (a store that
// never orders its listings, such as S3's directory buckets, gets the
// union). A block listed wrongly as present costs a GET that finds no
// object. Damage that keeps the order cannot be seen here; writes over
// such a block are still safe (create-only PUTs, upload.go).
func (d *Device) listOne(ctx context.Context, r listRange) error {
	for attempt := 1; ; attempt++ {
		ordered, err := d.listPage(ctx, r.prefix)
		if err != nil {
			return err
		}
		if ordered {
			break
		}
		if attempt == listAttempts {
			d.log.Warn("the store listed keys out of order in every listing; serving every block any of them showed", "prefix", r.prefix, "listings", attempt)
			break
		}
		d.log.Warn("the store listed keys out of order; listing again, keeping every block seen", "prefix", r.prefix, "listing", attempt)
	}
	d.mu.Lock()
	if r.index >= 0 {
		d.listing.rangeDone[r.index] = true
	}
	d.listing.rangesDone++
	d.mu.Unlock()
	return nil
}

// listBatch is how many listed blocks are applied under one lock.
const listBatch = 1000

// listPage lists the keys under prefix once, applying them in batches,
// and reports whether they came in ascending order.
func (d *Device) listPage(ctx context.Context, prefix string) (ordered bool, err error) {
	ordered = true
	var last string
	batch := make([]int64, 0, listBatch)
	keys := int64(0)
	flush := func() {
		d.mu.Lock()
		for _, n := range batch {
			// What the device learned itself is newer than this page.
			if !d.listing.learned.has(n) {
				d.present.set(n, true)
			}
		}
		d.listing.keys += keys
		d.mu.Unlock()
		batch, keys = batch[:0], 0
	}
	err = d.store.List(ctx, prefix, "", func(info objstore.ObjectInfo) error {
		if last != "" && info.Key <= last {
			ordered = false
		}
		last = info.Key
		keys++
		n, ok := d.naming.Parse(info.Key)
		switch {
		case !ok:
		case n >= d.geo.Blocks():
			d.log.Warn("object beyond the device end ignored", "key", info.Key, "blocks", d.geo.Blocks())
		default:
			batch = append(batch, n)
		}
		if len(batch) == listBatch {
			flush()
		}
		return nil
	})
	flush()
	return ordered, err
}

// listingProgressEvery is how often a listing under way logs its progress.
const listingProgressEvery = 10 * time.Second

// logListingProgress logs the listing's progress (keys, rate, ranges,
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
				"ranges_done", l.rangesDone, "ranges", l.ranges}
			if l.rangesDone > 0 {
				left := time.Duration(float64(elapsed) * float64(l.ranges-l.rangesDone) / float64(l.rangesDone))
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
