package blockmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// A bucket of 10^8 blocks is 10^5 pages of 1000 keys, hours one page after
// another: so the key space is listed in parts side by side. The device
// fills its presence map this way (listing.go), and CountObjects counts a
// bucket's objects.
//
// How many parts pay depends on the store. At S3 a LIST page costs a
// round trip and nothing else, so 32 listings side by side list 32 times
// faster. A store that walks its keys to answer (MinIO walks the bucket's
// one directory for every new listing, then reads each object's metadata)
// is bound by its own CPU: there every new listing costs a walk of the
// whole bucket, and more listings in flight than its cores only add walks.
// So the lister starts with one listing of the whole key space and splits
// it, doubling the listings in flight while that makes keys arrive
// faster, up to --parallel; a listing that ends takes over half of the
// largest part still to list.

// keyChunks divides the key space into chunks, the units a listing is
// split at: chunk i holds the keys from bounds[i] up to bounds[i+1], the
// last every key after it. bounds[0] is "", so the chunks hold every key.
type keyChunks struct {
	bounds []string
	// shift, for plain names, places the chunks in the device: chunk i
	// holds the blocks [i<<shift, (i+1)<<shift). 0 for hash-prefixed
	// names, which scatter a chunk's blocks over the device.
	shift uint
}

// of returns the chunk that holds key.
func (c keyChunks) of(key string) int {
	return sort.Search(len(c.bounds), func(i int) bool { return c.bounds[i] > key }) - 1
}

// startAfter is where a listing of chunk i starts: just before its first
// key, bounds[i], hex digits. Keys between the two belong to chunk i-1;
// the listing meets them (rarely: a key of chunk i-1 that sorts after it)
// and leaves them out.
func (c keyChunks) startAfter(i int) string {
	if i == 0 {
		return ""
	}
	b := c.bounds[i]
	return b[:len(b)-1] + string(b[len(b)-1]-1) + "~"
}

// chunkKeys divides the key space of a device by the first k hex digits
// of the block names: at least 4 chunks per listing in flight where the
// device is large enough, each of at least a few pages. Plain names are 8
// hex digits, so a prefix of k digits is 16^(8-k) consecutive blocks, and
// shift is 4*(8-k); hash-prefixed names start with 8 hex digits of a hash,
// uniform over the device, so a prefix of k digits is 1/16^k of its
// blocks. A store whose every listing reads all its keys, whatever where
// it starts (objstore.ListScansAll: file://), is one chunk: split, it
// would be read once per part. A zero layout (no device recorded) is one
// chunk too.
func chunkKeys(store objstore.Store, l Layout, parallel int) keyChunks {
	if l.BlockSize == 0 || objstore.ListScansAll(store) {
		if l.Naming.HashPrefix {
			return keyChunks{bounds: []string{""}}
		}
		// Plain names: blocks [0, 1<<32), every block.
		return keyChunks{bounds: []string{""}, shift: 32}
	}
	blocks, want := l.Blocks(), int64(4*parallel)
	var prefixes []string
	var shift uint
	if l.Naming.HashPrefix {
		k := 0
		for k < 4 && int64(1)<<(4*(k+1)) <= want && blocks>>(4*(k+1)) >= 4000 {
			k++
		}
		for i := range 1 << (4 * k) {
			prefixes = append(prefixes, fmt.Sprintf("%0*x", k, i)[:k])
		}
	} else {
		k := 1
		for ; k < 5; k++ {
			if per := int64(1) << (4 * (8 - k)); (blocks+per-1)/per >= want {
				break
			}
		}
		shift = uint(4 * (8 - k))
		for i := range int((blocks + (1 << shift) - 1) >> shift) {
			prefixes = append(prefixes, fmt.Sprintf("%0*x", k, i))
		}
	}
	prefixes[0] = "" // the first chunk holds every key before the second
	return keyChunks{bounds: prefixes, shift: shift}
}

// chunkLister lists a store's key space, split into parts listed side by
// side.
type chunkLister struct {
	store    objstore.Store
	chunks   keyChunks
	parallel int
	log      *slog.Logger
	// background: a part whose listing fails (after the store layer's
	// retries) is listed again after a pause, until ctx ends; otherwise
	// the first failure ends the listing.
	background bool
	// keys receives the keys of one chunk, a batch at a time, in the
	// order listed; it is called from several goroutines at once.
	keys func(chunk int, batch []objstore.ObjectInfo)
	// reset, if set, is told that the chunks [lo, hi) are listed again
	// from their start (after a failure, or out of order): their keys
	// come again. Called with the lister's lock held.
	reset func(lo, hi int)
	// listed, if set, is told once chunk i has been listed for good, after
	// its every key went to keys. Called with the lister's lock held.
	listed func(i int)

	mu sync.Mutex
	// parts are the parts being listed, each by a goroutine of its own.
	parts []*listPart
	// keysSeen counts every key handed to keys; listings, the List calls
	// made; inFlight, the most parts listed side by side. Under mu.
	keysSeen, listings int64
	inFlight           int
}

// listPart is a part of the key space being listed: the chunks [lo, hi).
// lo grows as chunks are listed for good; hi shrinks when the part is
// split.
type listPart struct {
	lo, hi int
	// reached is the highest chunk the part's current listing handed keys
	// of; chunks after it may be given to a new part.
	reached int
	// started: the part's first listing has handed its first key.
	started bool
}

// listBatch is how many listed keys are handed to keys at once.
const listBatch = 1000

// listAttempts bounds the listings of one part made of a store that lists
// keys out of order.
const listAttempts = 3

// Growing the listings in flight: after a split, the new listings' first
// keys are awaited (at most growWarmUp: at MinIO a new listing's first
// page costs a walk of the bucket), then keys are counted for a window of
// at least growWindow and about growPages pages per listing, at most
// growWindowMax. Listings double while a window counts growGain times the
// keys per second of the one before; two windows short of that end the
// growth.
const (
	growTick      = 20 * time.Millisecond
	growWarmUp    = 2 * time.Second
	growWindow    = 250 * time.Millisecond
	growWindowMax = 2 * time.Second
	growPages     = 3
	growGain      = 1.25
	growMisses    = 2
)

// list lists the whole key space and returns the first failure (not in
// the background) or ctx's error.
func (l *chunkLister) list(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	// finished is closed when the last part is listed: grow stops.
	finished := make(chan struct{})
	work := func(p *listPart) {
		for p != nil {
			if err := l.listPartRetrying(ctx, p); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
				return
			}
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.parts = deletePart(l.parts, p)
			p = l.splitLocked()
			if len(l.parts) == 0 {
				close(finished)
			}
			l.mu.Unlock()
		}
	}
	first := &listPart{lo: 0, hi: len(l.chunks.bounds), reached: -1}
	l.mu.Lock()
	l.parts, l.inFlight = []*listPart{first}, 1
	l.mu.Unlock()
	wg.Go(func() { work(first) })
	wg.Go(func() {
		l.grow(ctx, finished, func(p *listPart) { wg.Go(func() { work(p) }) })
	})
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func deletePart(parts []*listPart, p *listPart) []*listPart {
	for i, q := range parts {
		if q == p {
			return append(parts[:i], parts[i+1:]...)
		}
	}
	return parts
}

// splitLocked splits the part with the most chunks its listing has not
// reached yet, at least two, and returns the new part, the second half of
// them; nil if none has two. Called with l.mu held.
func (l *chunkLister) splitLocked() *listPart {
	var donor *listPart
	most := 1
	for _, p := range l.parts {
		if left := p.hi - max(p.reached+1, p.lo); left > most {
			donor, most = p, left
		}
	}
	if donor == nil {
		return nil
	}
	m := donor.hi - most/2
	p := &listPart{lo: m, hi: donor.hi, reached: m - 1}
	donor.hi = m
	l.parts = append(l.parts, p)
	l.inFlight = max(l.inFlight, len(l.parts))
	return p
}

// grow doubles the parts listed side by side while keys come faster for
// it, up to l.parallel, starting each new part with start. It returns
// when growing no longer pays, when finished is closed, or when ctx ends.
func (l *chunkLister) grow(ctx context.Context, finished <-chan struct{}, start func(*listPart)) {
	tick := time.NewTicker(growTick)
	defer tick.Stop()
	var (
		want              = 1
		last              float64 // keys per second at the last level that paid
		misses            int
		warming           = true
		since             = time.Now()
		windowAt          time.Time
		windowKeys, parts int64
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-finished:
			return
		case <-tick.C:
		}
		l.mu.Lock()
		now := time.Now()
		if warming {
			started := true
			for _, p := range l.parts {
				started = started && p.started
			}
			if started || now.Sub(since) > growWarmUp {
				warming, windowAt, windowKeys, parts = false, now, l.keysSeen, int64(len(l.parts))
			}
			l.mu.Unlock()
			continue
		}
		took, keys := now.Sub(windowAt), l.keysSeen-windowKeys
		if took < growWindow || (keys < growPages*listBatch*parts && took < growWindowMax) {
			l.mu.Unlock()
			continue
		}
		rate := float64(keys) / took.Seconds()
		if last > 0 && rate < growGain*last {
			misses++
			if misses >= growMisses {
				l.mu.Unlock()
				l.log.Debug("listing side by side", "listings", want, "keys_per_second", int64(rate), "best", int64(last))
				return
			}
			windowAt, windowKeys = now, l.keysSeen
			l.mu.Unlock()
			continue
		}
		last, misses = max(last, rate), 0
		if want >= l.parallel {
			l.mu.Unlock()
			return
		}
		want = min(2*want, l.parallel)
		for len(l.parts) < want {
			p := l.splitLocked()
			if p == nil {
				break
			}
			start(p)
		}
		warming, since = true, now
		l.mu.Unlock()
		l.log.Debug("listing side by side", "listings", want, "keys_per_second", int64(rate))
	}
}

// listPartRetrying lists part p. In the background a failure (after the
// store layer's retries) is followed by a pause and a new listing from the
// first chunk not listed for good; otherwise it is returned.
func (l *chunkLister) listPartRetrying(ctx context.Context, p *listPart) error {
	for pause := time.Second; ; pause = min(2*pause, time.Minute) {
		err := l.listPart(ctx, p)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !l.background {
			return err
		}
		l.mu.Lock()
		from := l.chunks.bounds[p.lo]
		l.mu.Unlock()
		l.log.Error("listing blocks failed; trying that part again", "from", from, "pause", pause, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(rand.N(pause) + pause/2):
		}
	}
}

// listPart lists part p. A listing out of order is not trusted alone: a
// key damaged in transit (plain HTTP, a broken proxy) both invents a block
// and hides the real one, which would read as zeros. The part is listed
// again until a listing comes back in order or listAttempts were made (a
// store that never orders its listings, such as S3's directory buckets,
// gets them all: the device keeps every block any of them showed). Damage
// that keeps the order cannot be seen here.
func (l *chunkLister) listPart(ctx context.Context, p *listPart) error {
	for listing := 1; ; listing++ {
		ordered, err := l.listOnce(ctx, p)
		if err != nil {
			return err
		}
		if !ordered && listing < listAttempts {
			l.log.Warn("the store listed keys out of order; listing again, keeping every block seen", "from", l.chunks.bounds[p.lo], "listing", listing)
			continue
		}
		if !ordered {
			l.log.Warn("the store listed keys out of order in every listing; keeping every block any of them showed", "from", l.chunks.bounds[p.lo], "listings", listing)
		}
		l.mu.Lock()
		l.listedLocked(p, p.hi)
		l.mu.Unlock()
		return nil
	}
}

// listedLocked records p's chunks before end as listed for good. Called
// with l.mu held.
func (l *chunkLister) listedLocked(p *listPart, end int) {
	for ; p.lo < end; p.lo++ {
		if l.listed != nil {
			l.listed(p.lo)
		}
	}
}

// errPartEnd stops a listing at its part's end.
var errPartEnd = errors.New("end of the part")

// listOnce lists p once, from its first chunk not listed for good, handing
// the keys to l.keys in batches, and reports whether they came in
// ascending order.
//
// Chunks are recorded as listed as the listing goes, one key late: once a
// key of a later chunk has come, and one more key in order after it. A
// key damaged into a later chunk is out of order with the key after it,
// which ends the recording: the chunks it skipped are listed again.
// Likewise the listing ends one key after its part's end, to check that
// key's order.
func (l *chunkLister) listOnce(ctx context.Context, p *listPart) (ordered bool, err error) {
	l.mu.Lock()
	lo := p.lo
	p.reached = lo - 1
	l.listings++
	if l.reset != nil {
		l.reset(lo, p.hi)
	}
	l.mu.Unlock()

	ordered = true
	var (
		last       string
		lastChunk  = -1
		pastEnd    bool
		batch      = make([]objstore.ObjectInfo, 0, listBatch)
		batchChunk = -1
	)
	flush := func() {
		if len(batch) > 0 {
			l.keys(batchChunk, batch)
			l.mu.Lock()
			l.keysSeen += int64(len(batch))
			p.started = true
			l.mu.Unlock()
			batch = batch[:0]
		}
	}
	err = l.store.List(ctx, "", l.chunks.startAfter(lo), func(info objstore.ObjectInfo) error {
		if last != "" && info.Key <= last {
			ordered = false
		}
		last = info.Key
		if pastEnd {
			return errPartEnd
		}
		c := l.chunks.of(info.Key)
		if c < lo {
			return nil // chunk lo-1's, listed by another part
		}
		if c != batchChunk || len(batch) == listBatch {
			flush()
		}
		l.mu.Lock()
		if c >= p.hi {
			pastEnd = true
			l.mu.Unlock()
			return nil
		}
		if ordered && lastChunk > p.lo {
			l.listedLocked(p, lastChunk)
		}
		p.reached = max(p.reached, c)
		l.mu.Unlock()
		batch, batchChunk, lastChunk = append(batch, info), c, c
		return nil
	})
	flush()
	if errors.Is(err, errPartEnd) {
		err = nil
	}
	return ordered, err
}
