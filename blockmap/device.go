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
	"errors"
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
	// ReadAhead is how many blocks a sequential reader fetches ahead.
	ReadAhead int
	// WriteDelay is how long a partially written block may stay dirty before
	// it is read-modify-written to the store even without a FLUSH.
	WriteDelay time.Duration

	Log *slog.Logger
}

// Defaults applied by Open to zero fields.
const (
	DefaultCacheSize  = 256 << 20
	DefaultParallel   = 16
	DefaultReadAhead  = 4
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
	memUsed    int64
	work       *sync.Cond // signalled when queue grows or the device closes
	queue      []*block   // blocks waiting for an upload worker
	recent     [8]int64   // recently read block numbers, for sequential detection
	recentNext int
	prefetches int
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
// it on first use), lists the blocks present, and starts the upload workers.
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
	if cfg.ReadAhead < 0 {
		cfg.ReadAhead = 0
	} else if cfg.ReadAhead == 0 {
		cfg.ReadAhead = DefaultReadAhead
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
	for i := range d.recent {
		d.recent[i] = -2 // no block: a first read of block 0 is not a sequel
	}
	d.meta = blockMetadata(geo)
	d.buffers = slab.New(int(geo.BlockSize), cfg.CacheSize)
	d.uploadReserve = min(int64(cfg.Parallel), cfg.CacheSize/geo.BlockSize/4) * geo.BlockSize
	if err := d.listPresent(ctx); err != nil {
		return nil, err
	}

	d.ctx, d.cancel = context.WithCancel(context.Background())
	for range cfg.Parallel {
		d.workers.Add(1)
		go d.uploadWorker()
	}
	d.workers.Add(1)
	go d.writeDelayFlusher(d.ctx)
	return d, nil
}

// listAttempts bounds the listings listPresent makes of a store that lists
// keys out of order.
const listAttempts = 3

// listPresent fills the presence map from a listing of the store, and
// checks that the first block found is one we can read (block 0 may be a
// hole in a bucket s3backer encrypted).
//
// A block the listing misses reads as zeros, so a listing that breaks the
// stores' promise of ascending keys is not trusted alone: a key damaged in
// transit (plain HTTP, a broken proxy) both invents a block and hides the
// real one. The store is listed again, keeping every block any listing
// showed, until a listing comes back in order or listAttempts were made
// (a store that never orders its listings, such as S3's directory
// buckets, gets the union). A block listed wrongly as present costs a GET
// that finds no object; one listed wrongly as absent is what must not
// happen. Damage that keeps the order cannot be seen here; writes over such
// a block are still safe (create-only PUTs, upload.go).
func (d *Device) listPresent(ctx context.Context) error {
	start := time.Now()
	var count int64
	var first string
	for listing := 1; ; listing++ {
		var last string
		ordered := true
		err := d.store.List(ctx, "", "", func(info objstore.ObjectInfo) error {
			if last != "" && info.Key <= last {
				ordered = false
			}
			last = info.Key
			n, ok := d.naming.Parse(info.Key)
			if !ok {
				return nil
			}
			if first == "" || info.Key < first {
				first = info.Key
			}
			if n >= d.geo.Blocks() {
				d.log.Warn("object beyond the device end ignored", "key", info.Key, "blocks", d.geo.Blocks())
				return nil
			}
			if !d.present.has(n) {
				d.present.set(n, true)
				count++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("listing blocks: %w", err)
		}
		if ordered {
			break
		}
		if listing == listAttempts {
			d.log.Warn("the store listed keys out of order in every listing; serving every block any of them showed", "listings", listing)
			break
		}
		d.log.Warn("the store listed keys out of order; listing again, keeping every block seen", "listing", listing)
	}
	if first != "" {
		a, err := d.store.Stat(ctx, first)
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			// Listed, but gone or never there (a damaged listing): its
			// reads will find no object either.
			d.log.Warn("the first block listed has no object; its encoding was not probed", "key", first)
		case err != nil:
			return fmt.Errorf("probing %s: %w", first, err)
		default:
			if err := checkEncoding(first, a); err != nil {
				return err
			}
		}
	}
	d.log.Info("device opened", "size", bytesize.Format(d.geo.Size), "block_size", bytesize.Format(d.geo.BlockSize),
		"blocks_present", count, "list_time", time.Since(start).Round(time.Millisecond))
	return nil
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
	return d.mount.Release(ctx)
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
