package blockmap

// Block buffers are the device's memory. memUsed counts every buffer a
// block holds plus the copies uploads keep while a writer has moved on;
// transient fetch buffers of a read-modify-write are not counted (at most
// Parallel of them exist).

func (d *Device) allocBuf() []byte {
	d.memUsed += d.geo.BlockSize
	return *d.bufs.Get().(*[]byte)
}

func (d *Device) freeBuf(buf []byte) {
	d.memUsed -= d.geo.BlockSize
	d.bufs.Put(&buf)
}

// fetchBuf and dropFetchBuf handle the uncounted buffers of fetches.
func (d *Device) fetchBuf() []byte        { return *d.bufs.Get().(*[]byte) }
func (d *Device) dropFetchBuf(buf []byte) { d.bufs.Put(&buf) }

// adopt counts a fetch buffer that becomes a block's buffer.
func (d *Device) adopt(buf []byte) []byte {
	d.memUsed += d.geo.BlockSize
	return buf
}

// roomFor reports whether one more buffer fits, evicting the least recently
// used clean block if that is what it takes.
func (d *Device) roomFor() bool {
	for d.memUsed+d.geo.BlockSize > d.cfg.CacheSize {
		e := d.clean.Front()
		if e == nil {
			return false
		}
		b := e.Value.(*block)
		d.unlist(b)
		d.freeBuf(b.buf)
		b.buf = nil
		delete(d.blocks, b.n)
		d.stats.Evictions++
	}
	return true
}

// waitForRoom is called when roomFor failed: dirty blocks fill the cache.
// It starts their write-back and waits for a state change; the caller then
// looks its block up again, as anything may have changed.
func (d *Device) waitForRoom() error {
	if d.closed {
		return ErrClosed
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
