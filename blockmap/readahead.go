package blockmap

// Read-ahead follows the Linux kernel's: a reader whose reads continued
// each other sequentialReads times gets a first window of initialWindow
// blocks fetched in the background; each later window is twice the one before, up to the
// device's maximum (resolveReadAhead), and starts as the reader reaches the
// first block of the window before it, the marker, rather than once it has
// consumed it. So a window is on its way while the reader reads the one
// before, and a reader at queue depth 1 keeps up to a maximum window of
// fetches in flight: its throughput is that window per round trip. A reader
// that is not sequential gets none, and costs nothing but its stream slot.
// A window grows only while the stream's reader has read at least half of
// the blocks the stream has passed over: random reads that land in a
// stream's windows by chance move it forward, but do not feed it (without
// this, one connection's random reads at depth 16 kept 8 streams growing
// and spent half as many fetches again on blocks no one read).
//
// Several interleaved sequential readers (one per fio job, say) each keep
// their own stream in a small table. A read belongs to the stream it
// continues; one that continues none takes the slot read least recently.
// Reads of a stream may complete out of order at queue depths above 1, so a
// read up to a window behind the stream's position, or into what it has
// read ahead, still belongs to it.
//
// Blocks read ahead and not yet read are counted (aheadHeld) and bounded by
// half the cache, across streams, so that read-ahead never evicts its own
// blocks before they are read: the cache also holds the readers' working
// set, the dirty blocks, and the blocks of other readers.

// initialWindow is a stream's first window, as the kernel's for a reader of
// one page at a time (4 × the request).
const initialWindow = 4

// sequentialReads is how many reads in a row, each continuing the one
// before, make a stream sequential. Two happen to random readers: a random
// read continues one of streamSlots streams with a chance of streamSlots
// in the blocks it reads from (3 % over 256 blocks, each time a window of
// initialWindow fetched for nothing); three seldom do.
const sequentialReads = 3

// streamSlots is how many sequential readers are told apart.
const streamSlots = 8

// stream is one sequential reader's read-ahead, in block numbers.
type stream struct {
	next   int64  // the block after the last one read
	window int64  // the size of the latest window; 0 until the stream is sequential
	marker int64  // reading it starts the next window: the latest window's first block
	end    int64  // the end of the latest window
	issued int64  // the blocks up to it are fetched, or needed no fetch
	used   uint64 // when the stream was last read, for replacing the oldest
	// begin is the stream's first block, and read how many blocks its
	// reads have covered since (reads of a block twice count twice), so
	// that read < (next-begin)/2 says its reads skip more than they read.
	begin, read int64
	reads       int // reads that continued the stream while it had no window
}

// resolveReadAhead returns the largest window a stream grows to, from
// cfg.ReadAhead: -1 is off, 0 is the default of Parallel blocks (as many
// as the device fetches at a time), and any window is at most a quarter of
// the cache, as a stream holds up to two windows ahead of its reader and
// all of them together hold at most half the cache.
func resolveReadAhead(cfg Config, blockSize int64) int64 {
	limit := cfg.CacheSize / blockSize / 4
	switch {
	case cfg.ReadAhead < 0:
		return 0
	case cfg.ReadAhead == 0:
		return max(1, min(int64(cfg.Parallel), limit))
	default:
		return max(1, min(int64(cfg.ReadAhead), limit))
	}
}

// noteRead records a read of blocks first..last in its stream, and starts
// or tops up that stream's read-ahead. Called with d.mu held.
func (d *Device) noteRead(first, last int64) {
	if d.maxWindow == 0 {
		return
	}
	d.readClock++
	s := d.streamOf(first)
	if s == nil {
		s = &d.streams[0]
		for i := range d.streams {
			if d.streams[i].used < s.used {
				s = &d.streams[i]
			}
		}
		*s = stream{next: last + 1, used: d.readClock, begin: first, read: last - first + 1, reads: 1}
		return
	}
	s.used = d.readClock
	s.read += last - first + 1
	if last >= s.next {
		s.next = last + 1
		switch {
		case s.window == 0:
			// The read follows the one before: once it has done so often
			// enough, the stream is sequential.
			if s.reads++; s.reads < sequentialReads {
				break
			}
			s.window = min(initialWindow, d.maxWindow)
			s.marker, s.end = s.next, s.next+s.window
			s.issued = s.next
		case last >= s.marker && 2*s.read >= s.next-s.begin:
			// The reader reached the latest window: start the next one.
			s.window = min(2*s.window, d.maxWindow)
			s.marker = max(s.end, s.next)
			s.end = s.marker + s.window
		}
	}
	// Start what the windows hold and has not started: a new window, and
	// fetches refused earlier for want of a fetch slot or of room.
	for s.issued = max(s.issued, s.next); s.issued < min(s.end, d.geo.Blocks()); s.issued++ {
		if !d.prefetch(s.issued, true) {
			break
		}
	}
}

// streamOf returns the stream a read starting at block first belongs to,
// or nil. A stream the read continues, or reads ahead of, wins over one it
// is behind: a stream that reached the end of what its reader read before
// must not claim the reader's next pass over the same blocks. Between
// equals, the larger window wins.
func (d *Device) streamOf(first int64) *stream {
	var found *stream
	foundAhead := false
	for i := range d.streams {
		s := &d.streams[i]
		if s.next == 0 || first < s.next-max(1, s.window) || first > max(s.next, s.end) {
			continue
		}
		ahead := first >= s.next-1
		if found == nil || ahead && !foundAhead || ahead == foundAhead && s.window > found.window {
			found, foundAhead = s, ahead
		}
	}
	return found
}

// prefetch starts a background fetch of block blk if it is stored and not
// cached or being fetched. It reports false if it needed to start one and
// could not: a read-ahead (ahead) waits while Parallel of them are in
// flight or the blocks read ahead and unread fill their half of the cache;
// the other blocks of a multi-block read wait while Parallel fetches have
// not yet begun. Either waits while the cache has no room. Called with d.mu
// held.
func (d *Device) prefetch(blk int64, ahead bool) bool {
	if !d.mayExist(blk) {
		return true
	}
	if b := d.blocks[blk]; b != nil && (b.full || b.loading) {
		return true
	}
	if ahead && (d.aheadFetches >= d.cfg.Parallel || d.aheadHeld >= d.aheadCap) ||
		!ahead && d.prefetches >= d.cfg.Parallel {
		return false
	}
	if !d.roomFor() {
		return false
	}
	if ahead {
		d.aheadFetches++
		d.aheadHeld++
		d.stats.ReadAheads++
	} else {
		d.prefetches++
	}
	d.busy++
	// The block is taken now: if a reader gets to it first, loads it and
	// it is evicted before this goroutine runs, the goroutine finds
	// another block in the map and leaves it be, rather than fetch again
	// a block that was just read (seen with a read larger than the cache).
	taken := d.lookup(blk)
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		defer d.leave()
		if !ahead {
			d.prefetches--
		}
		b := d.blocks[blk]
		if b != taken {
			if ahead {
				d.aheadFetches--
				d.aheadHeld--
			}
			return
		}
		loaded := false
		if !b.full && !b.loading && d.checkOpen() == nil && (b.buf != nil || d.roomFor()) {
			err := d.load(b)
			if err != nil {
				d.log.Warn("read-ahead failed", "block", blk, "err", err)
			}
			loaded = err == nil
		}
		if ahead {
			d.aheadFetches--
			if loaded && b.full && b.buf != nil && !b.dirty {
				// Held until a read or a write uses it, or it is evicted.
				b.ahead = true
			} else {
				d.aheadHeld--
			}
		}
		d.settle(b)
	}()
	return true
}

// aheadDone ends b's standing as a block read ahead and not yet used, and
// reports whether it had it. Called with d.mu held.
func (d *Device) aheadDone(b *block) bool {
	if !b.ahead {
		return false
	}
	b.ahead = false
	d.aheadHeld--
	return true
}
