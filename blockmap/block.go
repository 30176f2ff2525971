package blockmap

import (
	"container/list"
	"time"
)

// block is the cached state of one block. All fields are guarded by
// Device.mu. The content of a block is:
//   - full && buf == nil: all zeros (a hole, or trimmed);
//   - full && buf != nil: buf;
//   - !full: buf where written says so, the stored object elsewhere.
//
// A full block may rest on a belief: presumedAbsent says that its sectors
// outside written are zeros only because the device believes there is no
// object (the presence map says so, or a GET found none), not because it
// wrote them. The map can be wrong (a listing that missed keys), and a PUT
// of such a block would replace the object's data with those zeros, so it
// is PUT create-only; if an object exists, the block goes back to !full,
// and the object is merged under the sectors written (upload.go).
type block struct {
	n   int64
	buf []byte
	// written holds the sectors written since the block's whole content
	// was last known; meaningful while !full or presumedAbsent.
	written        sectorSet
	full           bool
	presumedAbsent bool

	// version counts mutations; durable is the highest version known to be
	// in the store. A FLUSH waits until durable reaches the version it saw.
	version, durable uint64
	// dirty stays set until an upload of the current version succeeds, so
	// the dirty list holds every acknowledged write that is not yet durable.
	dirty      bool
	dirtySince time.Time
	// sinceUpload counts the bytes written since the last upload started:
	// a block's worth means a writer went through the whole block.
	sinceUpload int64

	// ahead marks a block read ahead that no read or write has used yet,
	// counted in Device.aheadHeld (readahead.go).
	ahead bool

	loading   bool
	uploading bool
	queued    bool
	// wantUpload: an upload was asked for while one was running.
	wantUpload bool
	// loan is set while buf is read outside the lock (loan.go): a writer
	// must copy it first.
	loan *loan

	// Upload attempts are numbered; a waiter that saw attempt k started
	// fails when a later attempt fails.
	attemptsStarted uint64
	failedAttempt   uint64
	uploadErr       error

	elem    *list.Element // in Device.clean or Device.dirty
	inDirty bool
}

// busy blocks stay in the map: a worker holds a pointer across a wait.
func (b *block) busy() bool { return b.loading || b.uploading || b.queued || b.dirty }

// setKnown records that b's content is entirely what the device holds,
// rests on no belief about the store, and needs no merge.
func (b *block) setKnown() { b.full, b.presumedAbsent, b.written = true, false, sectorSet{} }

// lookup returns block n, creating it. A block absent from the store starts
// out as a hole, so reading it costs nothing; it is presumed absent, as
// the presence map may be wrong (a volatile device never uploads, so it
// need not track what it wrote).
func (d *Device) lookup(n int64) *block {
	b := d.blocks[n]
	if b == nil {
		absent := !d.mayExist(n)
		b = &block{n: n, full: absent, presumedAbsent: absent && !d.cfg.Volatile}
		d.blocks[n] = b
	}
	return b
}

// settle files b after a state change: dirty blocks in the dirty list in the
// order they became dirty, idle blocks holding a buffer in the clean LRU,
// idle blocks without one dropped (the presence map remembers holes).
func (d *Device) settle(b *block) {
	if b.dirty {
		if !b.inDirty {
			d.unlist(b)
			b.elem, b.inDirty = d.dirty.PushBack(b), true
		}
		return
	}
	switch {
	case b.busy():
		d.unlist(b)
	case b.buf != nil && b.elem != nil && !b.inDirty:
		// Already clean: moving it allocates nothing, where every write to
		// a volatile device would otherwise allocate a list element.
		d.clean.MoveToBack(b.elem)
	case b.buf != nil:
		d.unlist(b)
		b.elem = d.clean.PushBack(b)
	default:
		d.unlist(b)
		delete(d.blocks, b.n)
	}
}

func (d *Device) unlist(b *block) {
	if b.elem == nil {
		return
	}
	if b.inDirty {
		d.dirty.Remove(b.elem)
	} else {
		d.clean.Remove(b.elem)
	}
	b.elem, b.inDirty = nil, false
}

// touch marks a clean block as recently used.
func (d *Device) touch(b *block) {
	if b.elem != nil && !b.inDirty {
		d.clean.MoveToBack(b.elem)
	}
}

// dropBehind makes a clean block the next to evict: a block a long read
// has copied, which it will not read again.
func (d *Device) dropBehind(b *block) {
	if b.elem != nil && !b.inDirty && !b.busy() {
		d.clean.MoveToFront(b.elem)
	}
}
