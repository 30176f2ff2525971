package nbd

import (
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
}

func newReplyWriter(conn net.Conn) *replyWriter {
	w := &replyWriter{}
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
func (w *replyWriter) status(cookie uint64, errno uint32) error {
	hdr := make([]byte, replyHeaderLen)
	encodeReply(hdr, replyHeader(cookie, errno))
	return w.Send(hdr, nil)
}

// data sends a successful READ reply. buf holds replyHeaderLen bytes of
// headroom followed by the data; done is called once it is sent, to give
// buf and its budget back.
func (w *replyWriter) data(cookie uint64, buf *[]byte, done func()) error {
	encodeReply(*buf, replyHeader(cookie, 0))
	return w.Send(*buf, done)
}

// lent sends a successful READ reply whose data is parts[1:]; parts[0]
// has room for the header. done is called once it is sent.
func (w *replyWriter) lent(cookie uint64, parts [][]byte, done func()) error {
	encodeReply(parts[0], replyHeader(cookie, 0))
	return w.SendParts(parts, done)
}

func (w *replyWriter) failure() error { return w.Err() }

func replyHeader(cookie uint64, errno uint32) protocol.TransmissionReplyHeader {
	return protocol.TransmissionReplyHeader{
		ReplyMagic: protocol.TRANSMISSION_MAGIC_REPLY,
		Error:      errno,
		Handle:     cookie,
	}
}
