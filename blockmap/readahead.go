package blockmap

// noteRead remembers the blocks a read touched and, when the read continues
// a recent one, fetches the next ReadAhead blocks in the background.
// Several interleaved sequential streams (one per fio job, say) are told
// apart by remembering the last few blocks read.
func (d *Device) noteRead(first, last int64) {
	sequential := false
	for _, r := range d.recent {
		if r == first-1 || r == first {
			sequential = true
			break
		}
	}
	prev := d.recent[(d.recentNext+len(d.recent)-1)%len(d.recent)]
	if prev != last {
		d.recent[d.recentNext] = last
		d.recentNext = (d.recentNext + 1) % len(d.recent)
	}
	if !sequential {
		return
	}
	for blk := last + 1; blk <= last+int64(d.cfg.ReadAhead) && blk < d.geo.Blocks(); blk++ {
		d.prefetch(blk)
	}
}

// prefetch starts a background fetch of block blk if it is stored, not
// cached, and fits in the cache without waiting. Called with d.mu held.
func (d *Device) prefetch(blk int64) {
	if !d.mayExist(blk) || d.prefetches >= d.cfg.Parallel {
		return
	}
	if b := d.blocks[blk]; b != nil && (b.full || b.loading) {
		return
	}
	if !d.roomFor() {
		return
	}
	d.prefetches++
	d.busy++
	d.stats.ReadAheads++
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		defer d.leave()
		d.prefetches--
		b := d.lookup(blk)
		if !b.full && !b.loading && d.checkOpen() == nil && (b.buf != nil || d.roomFor()) {
			if err := d.load(b); err != nil {
				d.log.Warn("read-ahead failed", "block", blk, "err", err)
			}
		}
		d.settle(b)
	}()
}
