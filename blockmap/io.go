package blockmap

import (
	"fmt"
	"time"
)

// checkRange refuses requests beyond the device or not sector-aligned; the
// errors wrap syscall.EINVAL.
func (d *Device) checkRange(op string, off, n int64) error {
	if off < 0 || n < 0 || off > d.geo.Size || n > d.geo.Size-off {
		return fmt.Errorf("%s [%d, +%d) outside the device (size %d): %w", op, off, n, d.geo.Size, errOutOfRange)
	}
	if off%SectorSize != 0 || n%SectorSize != 0 {
		return fmt.Errorf("%s [%d, +%d) not aligned to %d-byte sectors: %w", op, off, n, SectorSize, errMisaligned)
	}
	return nil
}

// span calls fn for each block piece of [off, off+n): block number, offset
// in the block, and the piece's offset in the request.
func (d *Device) span(off, n int64, fn func(blk, inBlock, inReq, length int64) error) error {
	bs := d.geo.BlockSize
	for done := int64(0); done < n; {
		pos := off + done
		blk, in := pos/bs, pos%bs
		l := min(bs-in, n-done)
		if err := fn(blk, in, done, l); err != nil {
			return err
		}
		done += l
	}
	return nil
}

// ReadAt reads len(p) bytes at off (io.ReaderAt).
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkRange("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(); err != nil {
		return 0, err
	}
	defer d.leave()
	first, last := d.startRead(off, int64(len(p)))
	if err := d.copyOut(p, off); err != nil {
		return 0, err
	}
	d.endRead(first, last, int64(len(p)))
	return len(p), nil
}

// startRead counts a read of n bytes at off and returns its first and last
// blocks. A request over several blocks fetches them in parallel, not in
// turn.
func (d *Device) startRead(off, n int64) (first, last int64) {
	first, last = off/d.geo.BlockSize, (off+n-1)/d.geo.BlockSize
	d.stats.ReadOps++
	for blk := first + 1; blk <= min(last, first+d.spanAhead()); blk++ {
		d.prefetch(blk, false)
	}
	return first, last
}

// spanAhead is how many blocks past the one it copies a long read keeps
// fetching: half the cache, so that they are not evicted before it gets
// to them (fetched again, they cost a second GET each).
func (d *Device) spanAhead() int64 {
	if d.cfg.Volatile {
		return d.geo.Blocks()
	}
	return max(1, d.cfg.CacheSize/d.geo.BlockSize/2)
}

// endRead records a read that succeeded, for read-ahead and the stats.
func (d *Device) endRead(first, last, n int64) {
	d.noteRead(first, last)
	d.stats.BytesRead += n
}

// copyOut copies the device's bytes at off into p. A read longer than the
// blocks it fetches ahead is a stream through the cache: each block it has
// copied goes to the front of the eviction order, so that the blocks
// fetched for it and not yet copied are not evicted first (and fetched
// again), as the kernel drops behind a large read.
func (d *Device) copyOut(p []byte, off int64) error {
	first, last := off/d.geo.BlockSize, (off+int64(len(p))-1)/d.geo.BlockSize
	stream := last-first > d.spanAhead()
	return d.span(off, int64(len(p)), func(blk, in, at, l int64) error {
		if next := blk + d.spanAhead(); next <= last {
			d.prefetch(next, false)
		}
		if err := d.readBlock(blk, in, p[at:at+l]); err != nil {
			return err
		}
		if b := d.blocks[blk]; stream && b != nil {
			d.dropBehind(b)
		}
		return nil
	})
}

// readBlock copies block blk's bytes [in, in+len(p)) into p.
func (d *Device) readBlock(blk, in int64, p []byte) error {
	b, err := d.resident(blk, in, int64(len(p)))
	if err != nil {
		return err
	}
	if b.buf == nil {
		clear(p)
	} else {
		copy(p, b.buf[in:])
	}
	return nil
}

// resident returns block blk once its bytes [in, in+l) can be read: from
// b.buf, or, when b.buf is nil, zeros. It fetches the block if it must.
func (d *Device) resident(blk, in, l int64) (*block, error) {
	missed := false
	for {
		b := d.lookup(blk)
		switch {
		case b.full || (b.buf != nil && b.written.covers(in, l)):
		case d.aborted:
			return nil, ErrAborted
		case b.loading:
			missed = true
			d.changed.Wait()
			continue
		default:
			missed = true
			if b.buf == nil && !d.roomFor() {
				if err := d.waitForRoom(); err != nil {
					return nil, err
				}
				continue
			}
			if err := d.load(b); err != nil {
				d.settle(b)
				return nil, err
			}
			continue
		}
		if missed {
			d.stats.CacheMisses++
		} else {
			d.stats.CacheHits++
		}
		if d.aheadDone(b) {
			d.stats.ReadAheadHits++
		}
		d.touch(b)
		d.settle(b)
		return b, nil
	}
}

// WriteAt writes p at off (io.WriterAt). The data is in the cache when it
// returns; Sync makes it durable.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := d.write(p, off, int64(len(p)), nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAtFUA writes p at off and returns once it is durable in the store.
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) {
	var touched []target
	if err := d.write(p, off, int64(len(p)), &touched); err != nil {
		return 0, err
	}
	if err := d.waitAll(touched); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ZeroAt writes zeros over [off, off+n): whole blocks become holes (their
// objects are deleted), partial blocks get zeros written.
func (d *Device) ZeroAt(off, n int64, noHole bool) error {
	return d.discard("zero", off, n)
}

// Trim discards [off, off+n); it reads back as zeros.
func (d *Device) Trim(off, n int64) error {
	return d.discard("trim", off, n)
}

// target is a block version a FUA write waits for.
type target struct {
	b       *block
	version uint64
	start   uint64
}

// write applies p (nil: zeros) to [off, off+n). With touched set, it
// appends the block versions a FUA write must wait for; a plain write
// collects none, which spares a slice per small write.
func (d *Device) write(p []byte, off, n int64, touched *[]target) error {
	if err := d.checkRange("write", off, n); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	d.stats.WriteOps++
	err := d.span(off, n, func(blk, in, at, l int64) error {
		var data []byte
		if p != nil {
			data = p[at : at+l]
		}
		t, err := d.writeBlock(blk, in, l, data)
		if touched != nil && t.b != nil {
			*touched = append(*touched, t)
		}
		return err
	})
	d.stats.BytesWritten += n
	return err
}

// writeBlock copies data (nil: zeros) into block blk at in.
func (d *Device) writeBlock(blk, in, l int64, data []byte) (target, error) {
	bs := d.geo.BlockSize
	for {
		if err := d.checkOpen(); err != nil {
			return target{}, err
		}
		b := d.lookup(blk)
		if data == nil && b.full && b.buf == nil {
			// Zeros into a hole change nothing.
			t := target{b, b.version, b.attemptsStarted}
			d.settle(b)
			return t, nil
		}
		if (b.buf == nil || b.loan != nil) && !d.roomForWrite(b) {
			if err := d.waitForRoom(); err != nil {
				return target{}, err
			}
			continue
		}
		switch {
		case b.buf == nil:
			b.buf = d.allocBuf()
			if b.full {
				// A hole: zero only what this write does not cover.
				clear(b.buf[:in])
				clear(b.buf[in+l:])
			}
		case b.loan != nil:
			// An upload or a reply is reading buf: copy on write.
			nb := d.allocBuf()
			copy(nb, b.buf)
			d.letGo(b)
			b.buf = nb
		}
		if data == nil {
			clear(b.buf[in : in+l])
		} else {
			copy(b.buf[in:], data)
		}
		if !b.full || b.presumedAbsent {
			if b.written.words == nil {
				b.written = newSectorSet(bs)
			}
			b.written.add(in, l)
			if b.written.full() {
				b.setKnown()
			}
		}
		d.markDirty(b)
		b.sinceUpload += l
		// A writer that went through a whole block is done with it: upload
		// now rather than wait for a FLUSH. This is what turns eight 128 KiB
		// writes into one PUT. Counting bytes rather than looking for a
		// write that ends the block keeps random small writes, which end a
		// block one time in 256, from each sending the whole block again.
		if b.full && b.sinceUpload >= bs {
			d.enqueue(b)
		}
		d.settle(b)
		return target{b, b.version, b.attemptsStarted}, nil
	}
}

func (d *Device) markDirty(b *block) {
	d.aheadDone(b) // written before it was read: neither used nor wasted
	b.version++
	if d.cfg.Volatile {
		// As durable as this device gets.
		b.durable = b.version
		return
	}
	if !b.dirty {
		b.dirty = true
		b.dirtySince = time.Now()
	}
}

// discard zeros [off, off+n), turning whole blocks into holes.
func (d *Device) discard(op string, off, n int64) error {
	if err := d.checkRange(op, off, n); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	d.stats.TrimOps++
	return d.span(off, n, func(blk, in, _, l int64) error {
		if l < d.geo.BlockSize {
			_, err := d.writeBlock(blk, in, l, nil)
			return err
		}
		d.holeBlock(blk)
		return nil
	})
}

// holeBlock makes block blk a hole; its object is deleted by the upload.
func (d *Device) holeBlock(blk int64) {
	b := d.lookup(blk)
	if b.full && b.buf == nil && !b.busy() && !d.mayExist(blk) {
		// Never written, or already deleted: nothing to do.
		d.settle(b)
		return
	}
	if b.buf != nil {
		d.letGo(b)
	}
	if d.cfg.Volatile {
		// No upload deletes its object: the hole must not read it again.
		d.learn(blk, false)
	}
	b.setKnown()
	d.markDirty(b)
	d.enqueue(b)
	d.settle(b)
}
