package nbd

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/inflight"
)

// replyTimeout bounds one reply write. A client that stops reading for this
// long is treated as gone; without it, a stuck client would also stall a
// graceful shutdown forever.
const replyTimeout = time.Minute

// replyWriter sends the replies of concurrent requests, combined into one
// writev per batch (see inflight.Combiner).
type replyWriter struct {
	inflight.Combiner
	// structured: every reply is a structured one (the client negotiated
	// them, which forbids simple replies to READ).
	structured bool
}

func newReplyWriter(conn net.Conn, structured bool) *replyWriter {
	w := &replyWriter{structured: structured}
	w.Write = func(batch [][]byte) error {
		if err := conn.SetWriteDeadline(time.Now().Add(replyTimeout)); err != nil {
			return err
		}
		if tc, ok := conn.(*tlsConn); ok {
			return tc.writeBatch(batch)
		}
		bufs := net.Buffers(batch)
		_, err := bufs.WriteTo(conn)
		return err
	}
	// Closing the connection stops the request reader too.
	w.Fail = func(error) { conn.Close() }
	return w
}

// status sends a reply without data: success, or an error for any command.
// Structured, that is an NBD_REPLY_TYPE_NONE or an NBD_REPLY_TYPE_ERROR
// chunk.
func (w *replyWriter) status(cookie uint64, errno uint32) error {
	if !w.structured {
		hdr := make([]byte, replyHeaderLen)
		encodeReply(hdr, replyHeader(cookie, errno))
		return w.Send(hdr, nil)
	}
	if errno == 0 {
		hdr := make([]byte, chunkHeaderLen)
		encodeChunk(hdr, replyFlagDone, replyTypeNone, cookie, 0)
		return w.Send(hdr, nil)
	}
	// The error, then a message length of 0.
	msg := make([]byte, chunkHeaderLen+6)
	encodeChunk(msg, replyFlagDone, replyTypeError, cookie, 6)
	binary.BigEndian.PutUint32(msg[chunkHeaderLen:], errno)
	return w.Send(msg, nil)
}

// data sends a successful READ reply of the data at off. buf holds
// payloadHeadroom bytes of headroom followed by the data; done is called
// once it is sent, to give buf and its budget back.
func (w *replyWriter) data(cookie, off uint64, buf *[]byte, done func()) error {
	msg := *buf
	if w.structured {
		encodeDataChunk(msg, cookie, off, len(msg)-payloadHeadroom)
	} else {
		msg = msg[payloadHeadroom-replyHeaderLen:]
		encodeReply(msg, replyHeader(cookie, 0))
	}
	return w.Send(msg, done)
}

// lent sends a successful READ reply whose data, at off, is parts[1:];
// parts[0] is replaced by the header. done is called once it is sent.
func (w *replyWriter) lent(cookie, off uint64, length uint32, parts [][]byte, done func()) error {
	if w.structured {
		parts[0] = make([]byte, dataChunkHeaderLen)
		encodeDataChunk(parts[0], cookie, off, int(length))
	} else {
		parts[0] = make([]byte, replyHeaderLen)
		encodeReply(parts[0], replyHeader(cookie, 0))
	}
	return w.SendParts(parts, done)
}

// encodeDataChunk writes into b the header of an NBD_REPLY_TYPE_OFFSET_DATA
// chunk, the last of its reply, of n bytes at off.
func encodeDataChunk(b []byte, cookie, off uint64, n int) {
	encodeChunk(b, replyFlagDone, replyTypeOffsetData, cookie, uint32(8+n))
	binary.BigEndian.PutUint64(b[chunkHeaderLen:], off)
}

// holeChunk returns an NBD_REPLY_TYPE_OFFSET_HOLE chunk of n bytes at off.
func holeChunk(cookie, off uint64, n uint32, flags uint16) []byte {
	b := make([]byte, chunkHeaderLen+12)
	encodeChunk(b, flags, replyTypeOffsetHole, cookie, 12)
	binary.BigEndian.PutUint64(b[chunkHeaderLen:], off)
	binary.BigEndian.PutUint32(b[chunkHeaderLen+8:], n)
	return b
}

func (w *replyWriter) failure() error { return w.Err() }

func replyHeader(cookie uint64, errno uint32) protocol.TransmissionReplyHeader {
	return protocol.TransmissionReplyHeader{
		ReplyMagic: protocol.TRANSMISSION_MAGIC_REPLY,
		Error:      errno,
		Handle:     cookie,
	}
}
