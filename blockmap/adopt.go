package blockmap

import "fmt"

// A write of one whole, aligned block (ZFS with recordsize=1M, a
// sequential 1 MiB writer) would be copied twice on its way to the store:
// from the network into a request buffer, then into the block's buffer.
// BlockBuffer and WriteBlockBuffer let a server read the payload straight
// into a block buffer, which the device then keeps as the block's content.

// BlockSize is the size of the device's blocks, and of BlockBuffer's.
func (d *Device) BlockSize() int64 { return d.geo.BlockSize }

// BlockBuffer returns a buffer of one block to read a whole-block write
// into, or nil once Close has begun. It must go back through
// WriteBlockBuffer or ReturnBlockBuffer; Close waits until it has.
func (d *Device) BlockBuffer() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.enter() != nil {
		return nil
	}
	return d.getBuf()
}

// ReturnBlockBuffer takes back a buffer from BlockBuffer that will not be
// written.
func (d *Device) ReturnBlockBuffer(buf []byte) {
	d.putBuf(buf)
	d.mu.Lock()
	d.leave()
	d.mu.Unlock()
}

// WriteBlockBuffer writes buf, a buffer from BlockBuffer, at off, which
// must be a multiple of the block size; the device owns buf from the call
// on, whatever the result. With fua it returns once the block is durable,
// as WriteAtFUA does.
func (d *Device) WriteBlockBuffer(buf []byte, off int64, fua bool) error {
	bs := d.geo.BlockSize
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.leave()
	if err := d.checkRange("write", off, bs); err != nil {
		d.putBuf(buf)
		return err
	}
	if off%bs != 0 || int64(len(buf)) != bs {
		d.putBuf(buf)
		return fmt.Errorf("block write of %d bytes at %d: not one aligned block of %d: %w", len(buf), off, bs, errMisaligned)
	}
	d.stats.WriteOps++
	t, err := d.adoptBlock(off/bs, buf)
	if err != nil {
		return err
	}
	d.stats.BytesWritten += bs
	if fua {
		return d.waitTargets([]target{t})
	}
	return nil
}

// adoptBlock makes buf the content of block blk: writeBlock for a whole
// block, without the copy.
func (d *Device) adoptBlock(blk int64, buf []byte) (target, error) {
	for {
		if err := d.checkOpen(); err != nil {
			d.putBuf(buf)
			return target{}, err
		}
		b := d.lookup(blk)
		switch {
		case b.buf != nil && b.loan == nil:
			d.putBuf(b.buf) // replaced: its memory is now buf's
		case !d.roomForWrite(b):
			if err := d.waitForRoom(); err != nil {
				d.putBuf(buf)
				return target{}, err
			}
			continue
		default:
			// No buffer yet, or an upload or a reply is reading the old
			// one and the last of them frees it: buf is more memory for
			// the cache.
			if b.buf != nil {
				d.letGo(b)
			}
			d.memUsed += d.geo.BlockSize
		}
		b.buf = buf
		b.setKnown()
		d.markDirty(b)
		d.enqueue(b)
		d.settle(b)
		return target{b, b.version, b.attemptsStarted}, nil
	}
}
