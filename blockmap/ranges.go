package blockmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// A bucket of 10^8 blocks is 10^5 pages of 1000 keys, hours one page after
// another: so the key space is split into ranges of keys, each listed by a
// List call of its own, side by side. The device fills its presence map
// this way (listing.go), and CountObjects counts a bucket's objects.

// keyRange is one part of the key space, one List call: the keys that
// start with prefix, come after startAfter and before before ("": no end).
type keyRange struct {
	prefix, startAfter, before string
	// rangeBefore, when set, is the prefix of the range that precedes a
	// gap range (see gaps): its keys that the listing meets are that
	// range's, and are left out.
	rangeBefore string
	// index, for plain names, is the range's place in the device: it
	// holds the blocks [index<<shift, (index+1)<<shift). -1 otherwise.
	index int
}

// splitKeys splits the key space of a device into ranges by the first k
// hex digits of the block names: at least 4 ranges per listing in flight
// where the device is large enough, each of at least a few pages. Plain
// names are 8 hex digits, so a prefix of k digits is a range of 16^(8-k)
// consecutive blocks, and shift is 4*(8-k); hash-prefixed names start with
// 8 hex digits of a hash, uniform over the device, so a prefix of k digits
// is 1/16^k of its blocks. A store whose every listing reads all its keys,
// whatever the prefix (objstore.ListScansAll: file://), is one range, "":
// split, it would be read once per range.
//
// The ranges hold every block of the device (and, for plain names, of the
// last range's prefix), but not the keys outside their prefixes: other
// objects, and blocks beyond the end of a device of plain names.
func splitKeys(store objstore.Store, l Layout, parallel int) (ranges []keyRange, shift uint) {
	if objstore.ListScansAll(store) {
		if l.Naming.HashPrefix {
			return []keyRange{{index: -1}}, 0
		}
		// Plain names: blocks [0, 1<<32), every block.
		return []keyRange{{index: 0}}, 32
	}
	blocks, want := l.Blocks(), int64(4*parallel)
	if l.Naming.HashPrefix {
		k := 0
		for k < 4 && int64(1)<<(4*(k+1)) <= want && blocks>>(4*(k+1)) >= 4000 {
			k++
		}
		for i := range 1 << (4 * k) {
			ranges = append(ranges, keyRange{prefix: fmt.Sprintf("%0*x", k, i)[:k], index: -1})
		}
		return ranges, 0
	}
	k := 1
	for ; k < 5; k++ {
		if per := int64(1) << (4 * (8 - k)); (blocks+per-1)/per >= want {
			break
		}
	}
	shift = uint(4 * (8 - k))
	for i := range int((blocks + (1 << shift) - 1) >> shift) {
		ranges = append(ranges, keyRange{prefix: fmt.Sprintf("%0*x", k, i), index: i})
	}
	return ranges, shift
}

// rangeEndMark follows a range's prefix to make the startAfter of the gap
// after it: the range's block names (hex digits, '-') and any key that
// follows the prefix with printable ASCII sort before it, so that the gap
// listing starts past them; the rare key of the range that sorts after it
// is listed again and left out (keyRange.rangeBefore). Stores take it:
// printable ASCII, unlike a byte 0xff, which is no UTF-8.
const rangeEndMark = "~"

// gaps returns the ranges that hold the keys outside ranges, which must be
// prefixes of one length, in order: before the first, after the last, and
// between two that are not neighbours in key order ("…9" and "…a", "0f"
// and "10": a key "09x" or "0fx" lies between them). Each starts within
// the range before it, at rangeEndMark, so that it does not list that
// range again.
func gaps(ranges []keyRange) []keyRange {
	if len(ranges) == 0 {
		return []keyRange{{index: -1}}
	}
	if ranges[0].prefix == "" {
		return nil // one range holds every key
	}
	out := []keyRange{{before: ranges[0].prefix, index: -1}}
	for i := 1; i < len(ranges); i++ {
		prev, next := ranges[i-1].prefix, ranges[i].prefix
		if next == prefixEnd(prev) {
			continue
		}
		out = append(out, keyRange{startAfter: prev + rangeEndMark, before: next, rangeBefore: prev, index: -1})
	}
	last := ranges[len(ranges)-1].prefix
	return append(out, keyRange{startAfter: last + rangeEndMark, rangeBefore: last, index: -1})
}

// prefixEnd is the first string after every key that starts with p, a
// range's prefix of hex digits: its last digit plus one.
func prefixEnd(p string) string { return p[:len(p)-1] + string(p[len(p)-1]+1) }

// rangeLister lists ranges of a store's keys, parallel side by side.
type rangeLister struct {
	store    objstore.Store
	parallel int
	log      *slog.Logger
	// background: a range whose listing fails (after the store layer's
	// retries) is listed again after a pause, until ctx ends; otherwise
	// the first failure ends the listing.
	background bool
	// keys receives the keys of the listing-th listing of r (1, 2, …), a
	// batch at a time, in the order listed. A range listed out of order
	// is listed again (see listRange), and its keys come again. keys is
	// called from several goroutines at once.
	keys func(r keyRange, listing int, batch []objstore.ObjectInfo)
	// listed, if set, is told once r has been listed for good.
	listed func(r keyRange)
}

// listBatch is how many listed keys are handed to keys at once.
const listBatch = 1000

// listAttempts bounds the listings of one range made of a store that lists
// keys out of order.
const listAttempts = 3

// list lists every range, l.parallel at a time, and returns the first
// failure (not in the background) or ctx's error.
func (l *rangeLister) list(ctx context.Context, ranges []keyRange) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan keyRange)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(l.parallel, len(ranges)) {
		wg.Go(func() {
			for r := range next {
				for pause := time.Second; ; pause = min(2*pause, time.Minute) {
					err := l.listRange(ctx, r)
					if err == nil || ctx.Err() != nil {
						break
					}
					if !l.background {
						errOnce.Do(func() { firstErr = err; cancel() })
						break
					}
					l.log.Error("listing blocks failed; trying that part again", "prefix", r.prefix, "pause", pause, "err", err)
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
		return firstErr
	}
	return ctx.Err()
}

// listRange lists range r. A listing out of order is not trusted alone: a
// key damaged in transit (plain HTTP, a broken proxy) both invents a block
// and hides the real one, which would read as zeros. The range is listed
// again until a listing comes back in order or listAttempts were made (a
// store that never orders its listings, such as S3's directory buckets,
// gets them all: the device keeps every block any of them showed). Damage
// that keeps the order cannot be seen here.
func (l *rangeLister) listRange(ctx context.Context, r keyRange) error {
	for listing := 1; ; listing++ {
		ordered, err := l.listOnce(ctx, r, listing)
		if err != nil {
			return err
		}
		if ordered {
			break
		}
		if listing == listAttempts {
			l.log.Warn("the store listed keys out of order in every listing; serving every block any of them showed", "prefix", r.prefix, "listings", listing)
			break
		}
		l.log.Warn("the store listed keys out of order; listing again, keeping every block seen", "prefix", r.prefix, "listing", listing)
	}
	if l.listed != nil {
		l.listed(r)
	}
	return nil
}

// errRangeEnd stops a listing at its range's end.
var errRangeEnd = errors.New("end of the range")

// listOnce lists r once, handing its keys to l.keys in batches, and
// reports whether they came in ascending order.
func (l *rangeLister) listOnce(ctx context.Context, r keyRange, listing int) (ordered bool, err error) {
	ordered = true
	var last string
	batch := make([]objstore.ObjectInfo, 0, listBatch)
	err = l.store.List(ctx, r.prefix, r.startAfter, func(info objstore.ObjectInfo) error {
		if last != "" && info.Key <= last {
			ordered = false
		}
		last = info.Key
		switch {
		case r.before != "" && info.Key >= r.before:
			return errRangeEnd
		case r.rangeBefore != "" && len(info.Key) >= len(r.rangeBefore) && info.Key[:len(r.rangeBefore)] == r.rangeBefore:
			return nil
		}
		if batch = append(batch, info); len(batch) == listBatch {
			l.keys(r, listing, batch)
			batch = batch[:0]
		}
		return nil
	})
	if len(batch) > 0 {
		l.keys(r, listing, batch)
	}
	if errors.Is(err, errRangeEnd) {
		err = nil
	}
	return ordered, err
}
