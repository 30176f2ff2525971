package blockmap

import (
	"errors"
	"fmt"
	"io"

	"github.com/objbacker/objbacker/objstore"
)

// load makes b full: it fetches the stored object and merges it under the
// sectors written so far; if there is none, b is presumed absent. Called
// with d.mu held; it is released during the fetch, and b.loading keeps b in
// the map meanwhile.
func (d *Device) load(b *block) error {
	b.loading = true
	// The fetch buffer counts against the cache from now on: it becomes
	// the block's buffer, or is given back below. It evicts a clean block
	// if it must and can; callers that may not wait (an upload's
	// read-modify-write, which is how room is made) otherwise go over.
	d.roomFor()
	d.memUsed += d.geo.BlockSize
	kept := false
	defer func() {
		if !kept {
			d.memUsed -= d.geo.BlockSize
		}
	}()
	d.mu.Unlock()
	data, absent, err := d.fetch(b.n)
	d.mu.Lock()
	b.loading = false
	d.changed.Broadcast()
	if err != nil {
		d.stats.ReadErrors++
		return err
	}
	if b.full {
		// Trimmed or fully overwritten while we fetched: the fetch is stale,
		// and so is what it says of the object, which an upload may have
		// written or deleted since. Setting the presence bit from it could
		// mark a stored block absent, and it would then read as zeros.
		if data != nil {
			d.dropFetchBuf(data)
		}
		return nil
	}
	d.learn(b.n, !absent)
	switch {
	case b.buf == nil:
		if data != nil {
			b.buf, kept = data, true
		}
	default:
		dst := b.buf
		if b.loan != nil {
			// A presumed-absent block that went back to partial may be lent
			// to a reply (LendAt): merge into a buffer of our own, as a
			// writer copies first, counted as the fetch's room (kept).
			dst = d.getBuf()
			copy(dst, b.buf)
		}
		b.written.gaps(func(off, n int64) {
			if data == nil {
				clear(dst[off : off+n])
			} else {
				copy(dst[off:off+n], data[off:off+n])
			}
		})
		if data != nil {
			d.dropFetchBuf(data)
		}
		if b.loan != nil {
			d.letGo(b)
			b.buf, kept = dst, true
		}
	}
	if absent {
		// The sectors written stay recorded: the answer may be wrong.
		b.full, b.presumedAbsent = true, !d.cfg.Volatile
	} else {
		b.setKnown()
	}
	return nil
}

// fetchAttempts bounds re-reads of a block whose bytes did not match the
// store's checksum: corruption in flight is transient, worth as many tries
// as objstore.DefaultRetryPolicy gives any other transient failure
// (Retrying cannot retry this one itself: the damage shows only at the end
// of the body, after the bytes were delivered). With a fifth of all bodies
// damaged, six reads fail together once in 15,000 fetches, three once in
// 125. If the damage persists the reader gets EIO, never the bad bytes.
const fetchAttempts = 6

// fetch GETs block n into a fetch buffer. absent means there is no object:
// the block is zeros.
func (d *Device) fetch(n int64) (data []byte, absent bool, err error) {
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	key := d.naming.Key(n)
	buf := d.fetchBuf()
	for attempt := 1; ; attempt++ {
		absent, err = d.fetchInto(key, buf)
		if errors.Is(err, objstore.ErrCorrupt) && attempt < fetchAttempts {
			d.log.Warn("block failed its checksum; reading it again", "block", n, "key", key, "attempt", attempt, "err", err)
			continue
		}
		break
	}
	if err != nil || absent {
		d.dropFetchBuf(buf)
		if err != nil {
			return nil, false, fmt.Errorf("reading block %d (%s): %w (%w)", n, key, errIO, err)
		}
		return nil, true, nil
	}
	return buf, false, nil
}

func (d *Device) fetchInto(key string, buf []byte) (absent bool, err error) {
	rc, attrs, err := d.store.Get(d.ctx, key, 0, -1)
	if errors.Is(err, objstore.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	if attrs.ContentEncoding != "" || attrs.Metadata[MetaHMAC] != "" {
		return false, decodeBlock(rc, attrs, buf)
	}
	got, err := io.ReadFull(rc, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return false, fmt.Errorf("object has %d bytes, want the block size %d", got, len(buf))
	case err != nil:
		return false, err
	}
	// The object must be exactly one block; a longer one means the bucket
	// holds another geometry or foreign data. Reading to the end also lets
	// a store verify the whole body against its checksum.
	var extra [1]byte
	if k, err := io.ReadFull(rc, extra[:]); k > 0 {
		return false, fmt.Errorf("object is longer than the block size %d", len(buf))
	} else if err != nil && err != io.EOF {
		return false, err
	}
	return false, nil
}
