// Package blockmap is the device core shared by every front end: it maps a
// block device onto objects, one object per block, named as s3backer names
// them. It caches blocks in bounded memory, merges small writes into whole
// blocks (a partial block going out is read-modify-written), uploads in
// parallel, reads ahead on sequential access, and makes FLUSH mean that every
// write acknowledged before it is durable in the store.
//
// Device implements io.ReaderAt and io.WriterAt plus Sync, WriteAtFUA, Trim
// and ZeroAt, so it can back an NBD export directly.
package blockmap

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/objbacker/objbacker/internal/bytesize"
	"github.com/objbacker/objbacker/internal/slab"
	"github.com/objbacker/objbacker/objstore"
)

// Config describes a device to open.
type Config struct {
	Store objstore.Store
	// Geometry fields left zero are taken from what the bucket records; a
	// fresh bucket needs Size (BlockSize defaults to 1 MiB).
	Geometry Geometry
	// DefaultSize, if set, creates a fresh device of this size when
	// Geometry.Size is zero (the daemon's zero-flag quick start).
	DefaultSize int64
	// HashPrefix selects s3backer's hash-prefixed block names for a new
	// device; nil means as recorded (plain names for a new device).
	HashPrefix *bool
	// Force serves a bucket that carries a mount marker.
	Force bool

	// CacheSize bounds the memory held in block buffers, clean and dirty.
	// Writers wait (back-pressure) when dirty blocks fill it.
	CacheSize int64
	// Volatile keeps written blocks in the device's buffers only, never in
	// the store: a RAM disk (mem://), whose in-process store would hold a
	// second copy of the same bytes and cost a copy per upload. Nothing is
	// written back, so a FLUSH has nothing to wait for; no block is
	// evicted, so CacheSize does not apply and the memory grows with the
	// blocks written, up to the device size. The store keeps the device's
	// geometry and mount marker, and blocks already in it are read once.
	Volatile bool
	// Parallel bounds the store requests in flight.
	Parallel int
	// ReadAhead is the largest read-ahead window, in blocks, that a
	// sequential reader's grows to (readahead.go): 0 is Parallel, -1 is
	// off. A window is at most a quarter of the cache.
	ReadAhead int
	// WriteDelay is how long a partially written block may stay dirty before
	// it is read-modify-written to the store even without a FLUSH.
	WriteDelay time.Duration
	// ListInBackground opens the device once its geometry and mount
	// marker are settled, and lists the store's blocks while it serves:
	// a block not yet listed is fetched to find out (listing.go). Without
	// it Open returns once the listing is complete.
	ListInBackground bool

	Log *slog.Logger
}

// Defaults applied by Open to zero fields. Throughput at a store's latency
// is bytes in flight / round trip: 32 requests of 1 MiB keep one export at
// about 1 GiB/s at 30 ms and 320 MiB/s at 100 ms in theory, and measured
// (docs/benchmarks.md, section 6, mem://?latency=) 560-590 MiB/s writing
// and reading at 30 ms and 270-290 MiB/s at 100 ms on two cores, against
// 370-490 and 125-156 with 16; the request memory it takes from the cache
// (2 x 32 MiB under serve) leaves three quarters of the default cache.
const (
	DefaultCacheSize  = 256 << 20
	DefaultParallel   = 32
	DefaultWriteDelay = 2 * time.Second
)

// Device is an open block device. Its methods are safe for concurrent use.
type Device struct {
	store  objstore.Store
	geo    Geometry
	naming Naming
	cfg    Config
	log    *slog.Logger

	// sem bounds concurrent store requests to cfg.Parallel.
	sem chan struct{}
	// buffers holds the block buffers (memory.go).
	buffers *slab.Arena
	// uploadReserve is the cache writers leave for the read-modify-write
	// fetches of the upload workers (memory.go).
	uploadReserve int64

	// mu guards the fields below and every block's fields. Holding one lock
	// keeps the state machine simple; critical sections are map updates and
	// memory copies, never store requests.
	mu         sync.Mutex
	changed    *sync.Cond // broadcast on every block state change
	blocks     map[int64]*block
	clean      list.List // evictable blocks, least recently used first
	dirty      list.List // dirty blocks, oldest first
	present    presence
	listing    listing
	memUsed    int64
	work       *sync.Cond // signalled when queue grows or the device closes
	queue      []*block   // blocks waiting for an upload worker
	prefetches int        // a multi-block read's fetches not yet begun

	// streams are the sequential readers' read-ahead (readahead.go), up to
	// maxWindow blocks a window. aheadFetches counts the read-ahead fetches
	// in flight, aheadHeld those and the blocks they brought in that no
	// read or write has used yet, up to aheadCap.
	streams             [streamSlots]stream
	readClock           uint64
	maxWindow, aheadCap int64
	aheadFetches        int
	aheadHeld           int64

	// busy counts the operations and read-ahead fetches under way, which
	// may touch block buffers: Close releases the buffers once it is 0.
	busy int
	// closing is set when Close begins: from then on operations fail, so
	// that no write is acknowledged after the final flush took the list of
	// blocks to store. closed is set once that flush is over, and stops
	// the workers.
	closing, closed bool
	// aborted is set by Abort: every wait fails, and the upload workers
	// stop.
	aborted bool

	stats Stats

	// meta is the user metadata every block object carries.
	meta map[string]string

	// ctx is for store requests; Close cancels it after the final flush.
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// mount is the claim on the bucket that Close gives back.
	mount *Mount
}

// Open resolves the device geometry against what the store records (writing
// it on first use), lists the blocks present (or starts to, see
// Config.ListInBackground), and starts the upload workers.
func Open(ctx context.Context, cfg Config) (*Device, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrInvalidConfig)
	}
	if cfg.Geometry.BlockSize != 0 {
		g := cfg.Geometry
		if g.Size == 0 {
			g.Size = g.BlockSize // validate the block size alone
		}
		if err := g.Validate(); err != nil {
			return nil, err
		}
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.WriteDelay <= 0 {
		cfg.WriteDelay = DefaultWriteDelay
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// Claim the bucket before reading or writing anything else in it, and
	// give the claim back if the device does not open.
	mount, err := ClaimMount(ctx, cfg.Store, cfg.Force)
	if err != nil {
		return nil, err
	}
	d, err := open(ctx, cfg)
	if err != nil {
		// With a context of its own: a start-up cancelled by SIGTERM
		// must not leave its marker behind.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReleaseTimeout)
		defer cancel()
		if rerr := mount.Release(rctx); rerr != nil {
			cfg.Log.Error("could not remove our mount marker", "err", rerr)
		}
		return nil, err
	}
	d.mount = mount
	return d, nil
}

func open(ctx context.Context, cfg Config) (*Device, error) {
	found, err := resolveLayout(ctx, cfg.Store, want{Geometry: cfg.Geometry, HashPrefix: cfg.HashPrefix, DefaultSize: cfg.DefaultSize})
	if err != nil {
		return nil, err
	}
	if found.Block0OK {
		if err := checkEncoding(found.Naming.Key(0), found.Block0); err != nil {
			return nil, err
		}
	}
	geo := found.Geometry
	if minCache := 4 * geo.BlockSize; cfg.CacheSize < minCache {
		return nil, fmt.Errorf("%w: cache size %s is below 4 blocks (%s)", ErrInvalidConfig, bytesize.Format(cfg.CacheSize), bytesize.Format(minCache))
	}

	d := &Device{
		store:   cfg.Store,
		geo:     geo,
		naming:  found.Naming,
		cfg:     cfg,
		log:     cfg.Log,
		sem:     make(chan struct{}, cfg.Parallel),
		blocks:  make(map[int64]*block),
		present: newPresence(),
	}
	d.changed = sync.NewCond(&d.mu)
	d.work = sync.NewCond(&d.mu)
	d.maxWindow = resolveReadAhead(cfg, geo.BlockSize)
	d.aheadCap = cfg.CacheSize / geo.BlockSize / 2
	d.meta = blockMetadata(geo)
	d.buffers = slab.New(int(geo.BlockSize), cfg.CacheSize)
	d.uploadReserve = min(int64(cfg.Parallel), cfg.CacheSize/geo.BlockSize/4) * geo.BlockSize
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if err := d.startListing(ctx, found.Block0OK); err != nil {
		d.cancel()
		d.workers.Wait()
		return nil, err
	}
	if !cfg.ListInBackground {
		d.log.Info("device opened", "size", bytesize.Format(geo.Size), "block_size", bytesize.Format(geo.BlockSize),
			"blocks_present", d.present.count, "read_ahead", d.maxWindow)
	}
	for range cfg.Parallel {
		d.workers.Add(1)
		go d.uploadWorker()
	}
	d.workers.Add(1)
	go d.writeDelayFlusher(d.ctx)
	return d, nil
}

// Geometry returns the device's size and block size.
func (d *Device) Geometry() Geometry { return d.geo }

// Naming returns how the device names its block objects.
func (d *Device) Naming() Naming { return d.naming }

// Size is the device size in bytes (go-nbd's backend.Backend).
func (d *Device) Size() (int64, error) { return d.geo.Size, nil }

// Close flushes every dirty block, stops the workers and reports a flush
// failure: data acknowledged to a client that did not reach the store.
// Operations that begin once Close has begun fail with ErrClosed. Once
// every write is stored it removes the mount marker, if still ours; a marker
// it could not remove is an error wrapping ErrMountNotReleased.
//
// Close runs once; later calls return the first one's result, and never
// touch a marker that another device may have set since.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

func (d *Device) close() error {
	d.mu.Lock()
	d.closing = true
	d.changed.Broadcast() // writers waiting for room fail now
	d.mu.Unlock()
	err := d.Sync()
	d.mu.Lock()
	d.closed = true
	d.changed.Broadcast()
	d.work.Broadcast()
	d.mu.Unlock()
	d.cancel()
	d.workers.Wait()
	d.mu.Lock()
	for d.busy > 0 {
		d.changed.Wait()
	}
	d.mu.Unlock()
	d.buffers.Release()
	if err != nil {
		// The marker stays: the next start must not pass silently over
		// writes that were acknowledged and lost.
		return fmt.Errorf("final flush: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReleaseTimeout)
	defer cancel()
	return d.mount.ReleaseClean(ctx)
}

// Abort cancels the store requests under way and fails every operation
// waiting, for room in the cache, a fetch or an upload, and every one that
// follows, so that a Close waiting on a store that does not answer, or
// keeps failing, returns: it then reports the writes that did not reach
// the store, and the mount marker stays. The upload workers stop rather
// than retry. For a shutdown that must end; the device is of no further
// use.
func (d *Device) Abort() {
	d.mu.Lock()
	d.aborted = true
	d.changed.Broadcast()
	d.work.Broadcast()
	d.mu.Unlock()
	d.cancel()
}

// checkOpen fails an operation, or the next step of one, once Close has
// begun or Abort was called.
func (d *Device) checkOpen() error {
	switch {
	case d.aborted:
		return ErrAborted
	case d.closing:
		return ErrClosed
	}
	return nil
}

// enter begins an operation that may touch block buffers, unless Close has
// begun or Abort was called; leave ends it. Both are called with d.mu held.
func (d *Device) enter() error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	d.busy++
	return nil
}

func (d *Device) leave() {
	d.busy--
	if d.closed && d.busy == 0 {
		d.changed.Broadcast()
	}
}
