package blockmap

import (
	"fmt"
	"slices"
)

// extent is a run of the device whose bytes are all of one kind (see
// Extents).
type extent struct {
	length int64
	hole   bool
}

// maxExtentBlocks bounds the blocks one Extents call looks at one by one
// (runs of absent blocks with nothing cached are skipped a presence chunk
// at a time), so that the device's lock is never held for long: about a
// millisecond.
const maxExtentBlocks = 1 << 16

// Extents describes the device from off on, up to off+n at most, as
// consecutive extents, at most maxExtents of them, calling fn for each in
// order (after the device's lock is let go). A hole reads as zeros and
// costs no store request: its blocks have no object and hold nothing
// written or cached. Anything else is data: a block with an object, with
// written bytes not yet stored, or one whose presence the start-up
// listing has not yet established (it may have an object). It answers
// from the presence map and the cache alone, without a store request; it
// may stop short of off+n (a client asks again from where it stopped),
// but describes at least one byte when n > 0. The answer is a snapshot: a
// write may change it at once.
func (d *Device) Extents(off, n int64, maxExtents int, fn func(length int64, hole bool)) error {
	exts, err := d.extents(off, n, maxExtents)
	for _, e := range exts {
		fn(e.length, e.hole)
	}
	return err
}

func (d *Device) extents(off, n int64, maxExtents int) ([]extent, error) {
	if off < 0 || n < 0 || off > d.geo.Size || n > d.geo.Size-off {
		return nil, fmt.Errorf("extents [%d, +%d) outside the device (size %d): %w", off, n, d.geo.Size, errOutOfRange)
	}
	if n == 0 {
		return nil, nil
	}
	maxExtents = max(maxExtents, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	bs := d.geo.BlockSize
	first, last := off/bs, (off+n-1)/bs
	// The cached blocks of the range, in order, when there are fewer of
	// them than blocks in the range; otherwise each block is looked up.
	var cached []int64
	sparse := last-first+1 > int64(len(d.blocks))
	if sparse {
		for blk := range d.blocks {
			if blk >= first && blk <= last {
				cached = append(cached, blk)
			}
		}
		slices.Sort(cached)
	}

	var out []extent
	end := off + n
	add := func(from, to int64, hole bool) bool {
		from, to = max(from, off), min(to, end)
		if k := len(out); k > 0 && out[k-1].hole == hole {
			out[k-1].length += to - from
			return true
		}
		if len(out) == maxExtents {
			return false
		}
		out = append(out, extent{length: to - from, hole: hole})
		return true
	}
	looked := 0
	for blk := first; blk <= last; {
		for len(cached) > 0 && cached[0] < blk {
			cached = cached[1:]
		}
		// A whole presence chunk without objects, listed, with no block
		// cached in it, is one hole.
		if sparse && d.present.chunks[blk/chunkBlocks] == nil {
			chunkEnd := (blk/chunkBlocks + 1) * chunkBlocks
			if d.knownRange(blk, chunkEnd-1) && (len(cached) == 0 || cached[0] >= chunkEnd) {
				if !add(blk*bs, chunkEnd*bs, true) {
					break
				}
				blk = chunkEnd
				continue
			}
		}
		if looked == maxExtentBlocks {
			break
		}
		looked++
		if !add(blk*bs, (blk+1)*bs, d.isHole(blk)) {
			break
		}
		blk++
	}
	return out, nil
}

// isHole reports whether block blk reads as zeros without a store request.
// Called with d.mu held.
func (d *Device) isHole(blk int64) bool {
	if b := d.blocks[blk]; b != nil {
		return b.full && b.buf == nil
	}
	return !d.mayExist(blk)
}

// knownRange reports whether the presence map is the truth about every
// block of [lo, hi]. Called with d.mu held.
func (d *Device) knownRange(lo, hi int64) bool {
	l := &d.listing
	if l.done {
		return true
	}
	if l.chunkDone == nil {
		return false
	}
	for i := lo >> l.shift; i <= hi>>l.shift; i++ {
		if i >= int64(len(l.chunkDone)) || !l.chunkDone[i] {
			return false
		}
	}
	return true
}

// Alignment is the alignment of the offsets and lengths the device takes:
// its sector size. A front end splits an unaligned request itself (the
// NBD server reads and merges the partial sectors).
func (d *Device) Alignment() int64 { return SectorSize }

// Cache starts fetching the stored blocks of [off, off+n) that are not
// cached, in the background, as a read would (NBD_CMD_CACHE): as many as
// may be fetched at once without waiting, and no more than a quarter of
// the cache. It returns at once.
func (d *Device) Cache(off, n int64) error {
	if off < 0 || n < 0 || off > d.geo.Size || n > d.geo.Size-off {
		return fmt.Errorf("cache [%d, +%d) outside the device (size %d): %w", off, n, d.geo.Size, errOutOfRange)
	}
	if n == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	bs := d.geo.BlockSize
	first, last := off/bs, (off+n-1)/bs
	if !d.cfg.Volatile {
		last = min(last, first+max(1, d.cfg.CacheSize/bs/4)-1)
	}
	for blk := first; blk <= last; blk++ {
		if !d.prefetch(blk, false) {
			break
		}
	}
	return nil
}

// ZeroIsFast reports whether zeroing [off, off+n) costs less than writing
// it (NBD_CMD_FLAG_FAST_ZERO): every block it covers whole becomes a hole,
// with a DELETE at most, and a block it covers in part is one already (zeros
// into a hole change nothing). Zeroing part of a block with data is a
// read-modify-write, slower than a write.
func (d *Device) ZeroIsFast(off, n int64) bool {
	if off < 0 || n < 0 || off > d.geo.Size || n > d.geo.Size-off {
		return false
	}
	bs := d.geo.BlockSize
	d.mu.Lock()
	defer d.mu.Unlock()
	if off%bs != 0 && !d.isHole(off/bs) {
		return false
	}
	if end := off + n; end%bs != 0 && !d.isHole(end/bs) {
		return false
	}
	return true
}
