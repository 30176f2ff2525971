package blockmap

// Stats are the device's counters since it opened, and a few gauges.
type Stats struct {
	ReadOps, WriteOps, TrimOps, FlushOps int64
	BytesRead, BytesWritten              int64
	CacheHits, CacheMisses               int64
	ReadAheads                           int64 // blocks read ahead
	Puts, Deletes                        int64 // block uploads that succeeded
	ReadErrors, UploadErrors             int64
	Evictions                            int64
	Stalls                               int64 // waits for dirty blocks to drain

	// ReadAheadHits counts the blocks read ahead that a read then used,
	// ReadAheadWasted those evicted unused.
	ReadAheadHits, ReadAheadWasted int64

	// Gauges at the time of the call.
	BlocksPresent int64 // objects in the store, as far as the device knows
	// ListedKeys is how many keys the listing has seen so far, and
	// Listing whether it is still under way (Config.ListInBackground).
	ListedKeys   int64
	Listing      bool
	CacheBytes   int64
	DirtyBlocks  int64
	UploadQueue  int64
	CachedBlocks int64
	// BufferBytes is the memory of block buffers in use: the cache, the
	// copies uploads hold, fetches under way. BufferPeakBytes is its
	// highest value so far, the device's share of the process's RSS.
	BufferBytes, BufferPeakBytes int64
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.CacheBytes = d.memUsed
	s.DirtyBlocks = int64(d.dirty.Len())
	s.UploadQueue = int64(len(d.queue))
	s.CachedBlocks = int64(len(d.blocks))
	s.BlocksPresent = d.present.count
	s.ListedKeys, s.Listing = d.listing.keys, !d.listing.done
	s.BufferBytes, s.BufferPeakBytes = d.buffers.Usage()
	return s
}
