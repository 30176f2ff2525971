package blockmap

import "errors"

// A block buffer is read outside the device lock by an upload sending it to
// the store, and by replies sending it to a client (LendAt). While it is,
// it neither changes nor goes back to the arena: a writer copies the block
// to a new buffer first, and a block that lets go of a lent buffer
// (rewritten, trimmed, evicted) leaves it to the last reader to free.
type loan struct {
	buf  []byte
	refs int
	// owner is the block whose buffer this is, nil once it has let go.
	owner *block
}

// lend marks b.buf as read outside the lock until repay.
func (d *Device) lend(b *block) *loan {
	if b.loan == nil {
		b.loan = &loan{buf: b.buf, owner: b}
	}
	b.loan.refs++
	return b.loan
}

// repay ends one reader's use of a lent buffer.
func (d *Device) repay(l *loan) {
	l.refs--
	if l.refs > 0 {
		return
	}
	if l.owner != nil {
		l.owner.loan = nil
	} else {
		d.freeBuf(l.buf)
	}
}

// letGo drops b's buffer: it is freed now, or by its last reader.
func (d *Device) letGo(b *block) {
	if b.loan != nil {
		b.loan.owner = nil
		b.loan = nil
	} else {
		d.freeBuf(b.buf)
	}
	b.buf = nil
}

// LendAt returns the n bytes at off as views of the device's own buffers,
// appended to views, so that a server can send them without first copying
// them out. The views stay as they are until release is called, which
// must be exactly once; Close waits for it. Writes meanwhile go to copies.
//
// It holds no loan while it waits for a block: requests that each held some
// blocks of a full cache while waiting for room for the next would wait for
// one another forever. So it first makes every block readable, then lends
// them all at once; if loading the later blocks evicted an earlier one (a
// request nearly as large as the cache), it tries again, and after that
// copies instead. A request larger than half the cache is copied at once.
func (d *Device) LendAt(off, n int64, views [][]byte) (_ [][]byte, release func(), err error) {
	if err := d.checkRange("read", off, n); err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return views, func() {}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(); err != nil {
		return nil, nil, err
	}
	first, last := d.startRead(off, n)
	var loans []*loan
	// A request too large to hold whole beside the rest of the cache is
	// copied at once, block by block, each fetched once: loading every
	// block before lending them evicts the first ones, and each attempt
	// fetched them all again (three GETs per block for a 32 MiB read
	// through a 16 MiB cache).
	copyAll := !d.cfg.Volatile && n > d.cfg.CacheSize/2
	for attempt := 0; ; attempt++ {
		if copyAll || attempt == 2 {
			p := make([]byte, n)
			if err := d.copyOut(p, off); err != nil {
				d.leave()
				return nil, nil, err
			}
			views = append(views, p)
			break
		}
		err := d.span(off, n, func(blk, in, _, l int64) error {
			_, err := d.resident(blk, in, l)
			return err
		})
		if err != nil {
			d.leave()
			return nil, nil, err
		}
		if lent, l, ok := d.lendResident(off, n, views); ok {
			views, loans = lent, l
			break
		}
	}
	d.endRead(first, last, n)
	return views, func() {
		d.mu.Lock()
		for _, l := range loans {
			d.repay(l)
		}
		d.leave()
		// A repaid buffer may be room a reader or writer waits for.
		d.changed.Broadcast()
		d.mu.Unlock()
	}, nil
}

// lendResident lends the pieces of [off, off+n), appended to views, if
// every one is readable now; if one is not, it takes back what it lent and
// reports false.
func (d *Device) lendResident(off, n int64, views [][]byte) (_ [][]byte, loans []*loan, ok bool) {
	err := d.span(off, n, func(blk, in, _, l int64) error {
		b := d.lookup(blk)
		defer d.settle(b)
		switch {
		case b.full && b.buf == nil:
			for ; l > 0; l -= min(l, int64(len(zeroChunk))) {
				views = append(views, zeroChunk[:min(l, int64(len(zeroChunk)))])
			}
		case b.full || (b.buf != nil && b.written.covers(in, l)):
			loans = append(loans, d.lend(b))
			views = append(views, b.buf[in:in+l])
		default:
			return errNotResident
		}
		return nil
	})
	if err != nil {
		for _, l := range loans {
			d.repay(l)
		}
		return nil, nil, false
	}
	return views, loans, true
}

// errNotResident stops lendResident at a block it cannot lend.
var errNotResident = errors.New("block not resident")
