package blockmap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

// enqueue asks an upload worker to write b back. Uploads of one block never
// overlap, and each one sends the block's current content, so the store
// always ends with the latest version.
func (d *Device) enqueue(b *block) {
	switch {
	case d.cfg.Volatile:
		// Nothing is written back.
	case b.uploading:
		b.wantUpload = true
	case b.queued:
	default:
		b.queued = true
		d.queue = append(d.queue, b)
		d.work.Signal()
	}
}

func (d *Device) uploadWorker() {
	defer d.workers.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for len(d.queue) == 0 && !d.closed && !d.aborted {
			d.work.Wait()
		}
		if d.closed || d.aborted {
			// After Abort, every upload would fail at once: retrying
			// them would only spin.
			return
		}
		b := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		b.queued = false
		d.upload(b)
		d.settle(b)
	}
}

// createOnlyAttempts bounds the sends of one upload of a block presumed
// absent. The store does not retry a create-only PUT (objstore.Retrying),
// so the upload does, the way Retrying retries others: up to 6 times, each
// after a GET, itself retried with backoff, that settles whether the
// failed try was stored after all.
const createOnlyAttempts = 6

// upload writes b's current content to the store: a PUT, or a DELETE when
// the block is all zeros. Called with d.mu held; released during requests.
func (d *Device) upload(b *block) {
	// absentSeen: a GET made during this upload found no object.
	absentSeen := false
	for attempt := 1; ; attempt++ {
		if !b.full {
			for !b.full && b.dirty && !b.uploading {
				if b.loading {
					d.changed.Wait()
					continue
				}
				// Read-modify-write: merge the stored object under a
				// partial block.
				if err := d.load(b); err != nil {
					b.attemptsStarted++
					d.uploadFailed(b, b.attemptsStarted, err)
					return
				}
			}
			// The GET that completed the block, ours or a reader's, was
			// sent after it became partial.
			absentSeen = b.presumedAbsent
		}
		if !b.dirty || b.uploading {
			return
		}
		again, err := d.send(b, absentSeen)
		if !again {
			return
		}
		if attempt == createOnlyAttempts {
			// Transient failures all along, or a store that reports an
			// object to a conditional PUT and none to the GET after it:
			// leave it to a later retry.
			b.attemptsStarted++
			d.uploadFailed(b, b.attemptsStarted, fmt.Errorf("writing block %d (%s) create-only: giving up after %d attempts: %w (%w)", b.n, d.naming.Key(b.n), attempt, errIO, err))
			return
		}
	}
}

// send makes one attempt to store b's current content. A block presumed
// absent is PUT create-only, and is not DELETEd unless this upload's GET
// found no object: an object the device did not know of must not lose the
// sectors the device did not write. send reports again when such an object
// was found, or may exist (a create-only PUT failed for a reason that may
// pass, and may have been stored), with the reason; b is then partial
// again (!full, its sectors written kept), for the caller to merge the
// object under them and send again. A create-only PUT whose answer was
// lost heals this way: the object found is its own, and merging the
// sectors written over it gives the block's content.
// Called with d.mu held; released during the request.
func (d *Device) send(b *block, absentSeen bool) (again bool, err error) {
	b.attemptsStarted++
	attempt, version, buf := b.attemptsStarted, b.version, b.buf
	createOnly := b.presumedAbsent
	b.uploading, b.wantUpload, b.sinceUpload = true, false, 0
	var lent *loan
	if buf != nil {
		lent = d.lend(b)
	}
	d.mu.Unlock()

	zero := buf == nil || isZero(buf)
	// Zeros over a block presumed absent: a DELETE could remove an
	// object the device did not know of. Look first.
	look := zero && createOnly && !absentSeen
	key := d.naming.Key(b.n)
	if !look {
		d.sem <- struct{}{}
		if zero {
			err = d.store.Delete(d.ctx, key)
		} else {
			_, err = d.store.Put(d.ctx, key, buf, objstore.PutOptions{
				ContentType: BlockContentType,
				Metadata:    d.meta,
				IfNoneMatch: createOnly,
			})
		}
		<-d.sem
	}

	d.mu.Lock()
	b.uploading = false
	if lent != nil {
		d.repay(lent)
	}
	defer d.changed.Broadcast()
	exists := createOnly && errors.Is(err, objstore.ErrPreconditionFailed)
	unsure := createOnly && objstore.IsTransient(err)
	switch {
	case exists:
		d.learn(b.n, true)
	case unsure:
		d.log.Warn("create-only block PUT failed; reading the block back before trying again", "block", b.n, "key", key, "err", err)
	}
	if look || exists || unsure {
		if b.presumedAbsent {
			// Still resting on the belief (no write since covered the
			// whole block): merge what the store holds under it.
			b.full, b.presumedAbsent = false, false
		}
		return true, err
	}
	if err != nil {
		d.uploadFailed(b, attempt, fmt.Errorf("writing block %d (%s): %w (%w)", b.n, key, errIO, err))
		return false, err
	}
	d.learn(b.n, !zero)
	if zero {
		d.stats.Deletes++
	} else {
		d.stats.Puts++
	}
	if b.presumedAbsent {
		// The store holds what was sent, and the buffer is that with
		// the writes since: nothing rests on a belief any more.
		b.setKnown()
	}
	b.durable = max(b.durable, version)
	if b.version == version {
		b.dirty = false
		if zero && b.buf != nil {
			d.letGo(b)
		}
	}
	if b.dirty && b.wantUpload {
		d.enqueue(b)
	}
	return false, nil
}

func (d *Device) uploadFailed(b *block, attempt uint64, err error) {
	b.failedAttempt, b.uploadErr = attempt, err
	d.stats.UploadErrors++
	d.changed.Broadcast()
	if !errors.Is(err, context.Canceled) {
		d.log.Error("block upload failed; it stays dirty and will be retried", "block", b.n, "err", err)
	}
}

// waitAll waits until each target version is durable, or an upload attempt
// started after the target was taken fails.
func (d *Device) waitAll(ts []target) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitTargets(ts)
}

func (d *Device) waitTargets(ts []target) error {
	var errs []error
	for _, t := range ts {
		if t.b == nil {
			continue
		}
		for t.b.durable < t.version {
			if d.closed || d.aborted {
				err := ErrClosed
				if d.aborted {
					err = ErrAborted
				}
				errs = append(errs, fmt.Errorf("block %d not stored: %w", t.b.n, err))
				break
			}
			if t.b.failedAttempt > t.start {
				errs = append(errs, t.b.uploadErr)
				break
			}
			d.enqueue(t.b)
			d.changed.Wait()
		}
	}
	return errors.Join(errs...)
}

// Sync returns when every write acknowledged before it is durable in the
// store (go-nbd's backend.Backend; NBD FLUSH). It fails if any of those
// writes could not be stored; they stay dirty and a later Sync retries them.
func (d *Device) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.FlushOps++
	var ts []target
	for e := d.dirty.Front(); e != nil; e = e.Next() {
		b := e.Value.(*block)
		ts = append(ts, target{b, b.version, b.attemptsStarted})
		d.enqueue(b)
	}
	return d.waitTargets(ts)
}

// writeDelayFlusher uploads blocks that stayed dirty longer than WriteDelay,
// so that data does not sit in memory indefinitely without a FLUSH, and
// retries failed uploads at that pace.
func (d *Device) writeDelayFlusher(ctx context.Context) {
	defer d.workers.Done()
	tick := time.NewTicker(max(d.cfg.WriteDelay/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			d.mu.Lock()
			for e := d.dirty.Front(); e != nil; e = e.Next() {
				b := e.Value.(*block)
				if now.Sub(b.dirtySince) < d.cfg.WriteDelay {
					break
				}
				d.enqueue(b)
			}
			d.mu.Unlock()
		}
	}
}
