package nbd

import (
	"encoding/binary"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

const (
	// holeMin is the shortest READ whose holes are sent as hole chunks:
	// for a smaller one the zeros cost less than asking the backend.
	holeMin = 64 << 10
	// maxReadChunks bounds the extents one READ reply is cut into; the
	// rest of the request is sent as data.
	maxReadChunks = 64
	// maxStatusExtents bounds the descriptors of a BLOCK_STATUS reply,
	// 512 KiB of them: well under the spec's 2^20.
	maxStatusExtents = 1 << 16
)

// sendBlockStatus answers NBD_CMD_BLOCK_STATUS for base:allocation, the
// one context a client can have selected: one NBD_REPLY_TYPE_BLOCK_STATUS
// chunk whose extents start at the request's offset and stay within its
// length. A backend without Extenter is all data.
func (c *conn) sendBlockStatus(req protocol.TransmissionRequestHeader) error {
	limit := maxStatusExtents
	if req.CommandFlags&cmdFlagReqOne != 0 {
		limit = 1
	}
	msg := make([]byte, chunkHeaderLen+4, chunkHeaderLen+4+8*16)
	binary.BigEndian.PutUint32(msg[chunkHeaderLen:], metaBaseAllocationID)
	add := func(length int64, hole bool) {
		flags := uint32(0)
		if hole {
			flags = stateHole | stateZero
		}
		msg = binary.BigEndian.AppendUint32(msg, uint32(length))
		msg = binary.BigEndian.AppendUint32(msg, flags)
	}
	if c.export.extents == nil {
		add(int64(req.Length), false)
	} else if err := c.export.extents.Extents(int64(req.Offset), int64(req.Length), limit, add); err != nil {
		return err
	}
	if len(msg) == chunkHeaderLen+4 { // a backend that described nothing
		add(int64(req.Length), false)
	}
	encodeChunk(msg, replyFlagDone, replyTypeBlockStatus, req.Handle, uint32(len(msg)-chunkHeaderLen))
	c.w.Send(msg, nil)
	return nil
}

// readSparse answers a READ with structured replies whose range holds
// holes: each hole is an NBD_REPLY_TYPE_OFFSET_HOLE chunk, with no zeros
// on the wire and no backend read, and each run of data an OFFSET_DATA
// chunk. It reports false, having done nothing, when the range is all
// data (or the backend cannot tell): the plain path serves it.
func (c *conn) readSparse(req protocol.TransmissionRequestHeader, buf *[]byte, tokens int64, start time.Time) bool {
	if c.export.extents == nil {
		return false
	}
	type piece struct {
		off, n int64
		hole   bool
	}
	var pieces []piece
	at, holes := int64(req.Offset), false
	end := at + int64(req.Length)
	err := c.export.extents.Extents(at, end-at, maxReadChunks, func(length int64, hole bool) {
		pieces = append(pieces, piece{at, length, hole})
		at += length
		holes = holes || hole
	})
	if err != nil || !holes {
		return false
	}
	if at < end {
		pieces = append(pieces, piece{at, end - at, false})
	}

	release := func() {
		if buf != nil {
			payloads.Put(buf)
		}
		c.limit.Release(tokens)
	}
	var parts [][]byte
	for i, p := range pieces {
		flags := uint16(0)
		if i == len(pieces)-1 {
			flags = replyFlagDone
		}
		if p.hole {
			parts = append(parts, holeChunk(req.Handle, uint64(p.off), uint32(p.n), flags))
			continue
		}
		if buf == nil {
			buf = payloads.Get(int(req.Length))
		}
		data := (*buf)[payloadHeadroom+p.off-int64(req.Offset):][:p.n]
		if err := c.readAt(data, p.off); err != nil {
			release()
			c.reply(req, err)
			c.observed(req, start, err)
			return true
		}
		hdr := make([]byte, dataChunkHeaderLen)
		encodeChunk(hdr, flags, replyTypeOffsetData, req.Handle, uint32(8+p.n))
		binary.BigEndian.PutUint64(hdr[chunkHeaderLen:], uint64(p.off))
		parts = append(parts, hdr, data)
	}
	c.stats.reads.Add(1)
	c.stats.bytesRead.Add(uint64(req.Length))
	c.w.SendParts(parts, func() {
		release()
		c.observed(req, start, nil)
	})
	return true
}
