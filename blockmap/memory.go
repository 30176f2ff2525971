package blockmap

// Block buffers are the device's memory. memUsed counts every buffer a
// block holds, the buffers uploads and replies still read after their block
// moved on (loan.go), and the buffers of fetches in progress. Reads wait for room before they fetch; a
// read-modify-write on the upload path cannot (it is how room is made), so
// writers leave room for one such fetch per upload worker: the cache size
// bounds the buffers unless reads fill the cache at the same time.
//
// The buffers come from the device's arena (internal/slab), outside the Go
// heap, and go back to it for reuse: a steady stream of blocks allocates
// nothing, and the process stays at the size its cache says.

func (d *Device) getBuf() []byte  { return d.buffers.Get() }
func (d *Device) putBuf(b []byte) { d.buffers.Put(b) }

func (d *Device) allocBuf() []byte {
	d.memUsed += d.geo.BlockSize
	return d.getBuf()
}

func (d *Device) freeBuf(buf []byte) {
	d.memUsed -= d.geo.BlockSize
	d.putBuf(buf)
}

// fetchBuf and dropFetchBuf handle the uncounted buffers of fetches.
func (d *Device) fetchBuf() []byte        { return d.getBuf() }
func (d *Device) dropFetchBuf(buf []byte) { d.putBuf(buf) }

// roomFor reports whether one more buffer fits, evicting the least recently
// used clean block if that is what it takes.
func (d *Device) roomFor() bool { return d.roomLeaving(0, nil) }

// roomForWrite is roomFor for a buffer that a write to b will dirty. b
// itself is not evicted: a clean block whose buffer is lent takes a new
// buffer to be written, and evicting it would leave the writer holding a
// block that is no longer in the map.
func (d *Device) roomForWrite(b *block) bool { return d.roomLeaving(d.uploadReserve, b) }

func (d *Device) roomLeaving(reserve int64, keep *block) bool {
	if d.cfg.Volatile {
		// The buffers are the only copy of the blocks.
		return true
	}
	for d.memUsed+d.geo.BlockSize+reserve > d.cfg.CacheSize {
		e := d.clean.Front()
		if e != nil && e.Value == keep {
			e = e.Next()
		}
		if e == nil {
			return false
		}
		b := e.Value.(*block)
		if b.busy() {
			// A block being written, fetched or uploaded in the clean
			// list is a bug elsewhere; evicting it could drop an
			// acknowledged write. File it where it belongs instead.
			d.log.Error("BUG: a busy block in the clean list; not evicted", "block", b.n, "dirty", b.dirty,
				"loading", b.loading, "uploading", b.uploading, "queued", b.queued)
			d.unlist(b)
			d.settle(b)
			continue
		}
		if d.aheadDone(b) {
			d.stats.ReadAheadWasted++
		}
		d.unlist(b)
		d.letGo(b)
		delete(d.blocks, b.n)
		d.stats.Evictions++
	}
	return true
}

// waitForRoom is called when roomFor failed: dirty blocks fill the cache.
// It starts their write-back and waits for a state change; the caller then
// looks its block up again, as anything may have changed.
func (d *Device) waitForRoom() error {
	if err := d.checkOpen(); err != nil {
		return err
	}
	d.stats.Stalls++
	queued := 0
	for e := d.dirty.Front(); e != nil && queued < 2*d.cfg.Parallel; e = e.Next() {
		b := e.Value.(*block)
		if !b.uploading {
			d.enqueue(b)
			queued++
		}
	}
	d.changed.Wait()
	return nil
}
