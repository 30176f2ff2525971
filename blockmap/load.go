package blockmap

import (
	"errors"
	"fmt"
	"io"

	"github.com/objbacker/objbacker/objstore"
)

// load makes b full: it fetches the stored object and merges it under the
// sectors written so far. Called with d.mu held; it is released during the
// fetch, and b.loading keeps b in the map meanwhile.
func (d *Device) load(b *block) error {
	b.loading = true
	d.mu.Unlock()
	data, absent, err := d.fetch(b.n)
	d.mu.Lock()
	b.loading = false
	d.changed.Broadcast()
	if err != nil {
		d.stats.ReadErrors++
		return err
	}
	d.present.set(b.n, !absent)
	switch {
	case b.full:
		// Trimmed or fully overwritten while we fetched: the fetch is stale.
		if data != nil {
			d.dropFetchBuf(data)
		}
		return nil
	case b.buf == nil:
		if data != nil {
			b.buf = d.adopt(data)
		}
	default:
		b.valid.gaps(func(off, n int64) {
			if data == nil {
				clear(b.buf[off : off+n])
			} else {
				copy(b.buf[off:off+n], data[off:off+n])
			}
		})
		if data != nil {
			d.dropFetchBuf(data)
		}
	}
	b.full, b.valid = true, sectorSet{}
	return nil
}

// fetch GETs block n into a fetch buffer. absent means there is no object:
// the block is zeros.
func (d *Device) fetch(n int64) (data []byte, absent bool, err error) {
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	key := BlockKey(n)
	rc, _, err := d.store.Get(d.ctx, key, 0, -1)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading block %d (%s): %w (%w)", n, key, errIO, err)
	}
	defer rc.Close()
	buf := d.fetchBuf()
	got, err := io.ReadFull(rc, buf)
	if err == nil {
		// The object must be exactly one block; a longer one means the
		// bucket holds another geometry or foreign data.
		var extra [1]byte
		if k, _ := rc.Read(extra[:]); k > 0 {
			err = fmt.Errorf("object is longer than the block size %d", d.geo.BlockSize)
		}
	} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = fmt.Errorf("object has %d bytes, want the block size %d", got, d.geo.BlockSize)
	}
	if err != nil {
		d.dropFetchBuf(buf)
		return nil, false, fmt.Errorf("reading block %d (%s): %w (%w)", n, key, errIO, err)
	}
	return buf, false, nil
}
