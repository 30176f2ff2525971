package nbd

import (
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// run executes one admitted request on the backend and replies. buf holds
// the payload of READ and WRITE, or block that of a whole-block WRITE (see
// BlockWriter); seq is the request's place in the write barrier (see admit).
// tokens is the request's share of the payload budget, given back once its
// payload is no longer needed: for a READ, when its reply has been sent,
// which may be after run returns. start is when the request was admitted,
// for Server.Observe.
func (c *conn) run(req protocol.TransmissionRequestHeader, buf *[]byte, block []byte, seq uint64, tokens int64, start time.Time) {
	if req.Type == protocol.TRANSMISSION_TYPE_REQUEST_READ {
		c.read(req, buf, tokens, start)
		return
	}
	defer c.limit.Release(tokens)
	switch req.Type {
	case cmdBlockStatus:
		err := c.sendBlockStatus(req)
		if err != nil {
			c.reply(req, err)
		}
		c.observed(req, start, err)
		return
	case cmdCache:
		err := c.export.cache.Cache(int64(req.Offset), int64(req.Length))
		c.reply(req, err)
		c.observed(req, start, err)
		return
	}
	var err error
	switch req.Type {
	case protocol.TRANSMISSION_TYPE_REQUEST_WRITE:
		if block != nil {
			err = c.export.blocks.WriteBlockBuffer(block, int64(req.Offset), req.CommandFlags&cmdFlagFUA != 0)
		} else {
			err = c.write(req, (*buf)[payloadHeadroom:])
			payloads.Put(buf)
		}
		c.stats.writes.Add(1)
		c.stats.bytesWritten.Add(uint64(req.Length))
	case cmdFlush:
		err = c.flush(seq)
		c.stats.flushes.Add(1)
	case cmdTrim:
		err = c.fua(req, c.trim(int64(req.Offset), int64(req.Length)))
		c.stats.trims.Add(1)
	case cmdWriteZeroes:
		err = c.fua(req, c.zero(req))
		c.stats.zeroes.Add(1)
	}
	if req.Type != cmdFlush {
		// Set even on failure: part of the range may have changed.
		c.dirty.Store(true)
		c.barrier.End(seq)
	}
	c.reply(req, err)
	c.observed(req, start, err)
}

// read replies only once the data is complete: a simple reply cannot
// report an error after a success header.
func (c *conn) read(req protocol.TransmissionRequestHeader, buf *[]byte, tokens int64, start time.Time) {
	if c.structured && req.Length >= holeMin && c.readSparse(req, buf, tokens, start) {
		return
	}
	if buf == nil {
		c.readLent(req, tokens, start)
		return
	}
	data := (*buf)[payloadHeadroom:]
	if err := c.readAt(data, int64(req.Offset)); err != nil {
		payloads.Put(buf)
		c.limit.Release(tokens)
		c.reply(req, err)
		c.observed(req, start, err)
		return
	}
	c.stats.reads.Add(1)
	c.stats.bytesRead.Add(uint64(len(data)))
	c.w.data(req.Handle, req.Offset, buf, func() {
		payloads.Put(buf)
		c.limit.Release(tokens)
		c.observed(req, start, nil)
	})
}

// readLent sends a READ reply from views the backend lends. The request
// keeps its budget until they are sent, as a copied reply does: a reply
// still queued may hold a buffer the backend's cache has already let go.
func (c *conn) readLent(req protocol.TransmissionRequestHeader, tokens int64, start time.Time) {
	views, release, err := c.export.lender.LendAt(int64(req.Offset), int64(req.Length), make([][]byte, 1, 2))
	if err != nil {
		c.limit.Release(tokens)
		c.reply(req, err)
		c.observed(req, start, err)
		return
	}
	c.stats.reads.Add(1)
	c.stats.bytesRead.Add(uint64(req.Length))
	c.w.lent(req.Handle, req.Offset, req.Length, views, func() {
		release()
		c.limit.Release(tokens)
		c.observed(req, start, nil)
	})
}

func (c *conn) write(req protocol.TransmissionRequestHeader, data []byte) error {
	off := int64(req.Offset)
	if !c.aligned(req) {
		return c.writeUnaligned(data, off, req.CommandFlags&cmdFlagFUA != 0)
	}
	return c.writeAt(data, off, req.CommandFlags&cmdFlagFUA != 0)
}

// writeAt writes aligned data at off, durably with fua.
func (c *conn) writeAt(data []byte, off int64, fua bool) error {
	if !fua {
		_, err := c.export.Backend.WriteAt(data, off)
		return err
	}
	if c.export.fua != nil {
		_, err := c.export.fua.WriteAtFUA(data, off)
		return err
	}
	_, err := c.export.Backend.WriteAt(data, off)
	if err != nil {
		return err
	}
	return c.export.Backend.Sync()
}

// fua makes a successful write-like command durable when the client asked
// for FUA. Sync is wider than needed but always available.
func (c *conn) fua(req protocol.TransmissionRequestHeader, err error) error {
	if err != nil || req.CommandFlags&cmdFlagFUA == 0 {
		return err
	}
	return c.export.Backend.Sync()
}

// flush waits for the writes received before it on this connection, which
// may still be running, then syncs. Sync itself covers every write already
// completed on any connection.
func (c *conn) flush(seq uint64) error {
	c.barrier.Wait(seq)
	c.dirty.Store(false)
	err := c.export.Backend.Sync()
	if err != nil {
		c.dirty.Store(true)
	}
	return err
}

// observed tells Server.Observe, if set, that req, admitted at start, has
// ended with err.
func (c *conn) observed(req protocol.TransmissionRequestHeader, start time.Time, err error) {
	if c.observe != nil {
		c.observe(c.export.Name, commandName(req.Type), req.Length, time.Since(start), err)
	}
}

// commandName is a command's name for Server.Observe.
func commandName(t uint16) string {
	switch t {
	case protocol.TRANSMISSION_TYPE_REQUEST_READ:
		return "read"
	case protocol.TRANSMISSION_TYPE_REQUEST_WRITE:
		return "write"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write_zeroes"
	case cmdCache:
		return "cache"
	case cmdBlockStatus:
		return "block_status"
	}
	return "unknown"
}

func (c *conn) reply(req protocol.TransmissionRequestHeader, err error) {
	var errno uint32
	if err != nil {
		errno = nbdErrno(err)
		if c.stats.failed.Add(1) == 1 {
			c.log.Error("nbd: backend error (later ones on this connection are only counted)",
				"type", req.Type, "offset", req.Offset, "length", req.Length, "err", err, "errno", errno)
		}
	}
	c.w.status(req.Handle, errno)
}
