package nbd

import (
	"net"
	"sync"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"
)

// replyTimeout bounds one reply write. A client that stops reading for this
// long is treated as gone; without it, a stuck client would also stall a
// graceful shutdown forever.
const replyTimeout = time.Minute

// replyWriter serializes replies from concurrent requests so a header and
// its data are never interleaved with another reply. Each reply is a single
// Write.
type replyWriter struct {
	mu   sync.Mutex
	conn net.Conn
	hdr  [replyHeaderLen]byte
	err  error // first write error; later replies are dropped
}

// status sends a reply without data: success, or an error for any command.
func (w *replyWriter) status(cookie uint64, errno uint32) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	encodeReply(w.hdr[:], replyHeader(cookie, errno))
	return w.write(w.hdr[:])
}

// data sends a successful READ reply. buf holds replyHeaderLen bytes of
// headroom followed by the data.
func (w *replyWriter) data(cookie uint64, buf []byte) error {
	encodeReply(buf, replyHeader(cookie, 0))
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(buf)
}

func (w *replyWriter) write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if err := w.conn.SetWriteDeadline(time.Now().Add(replyTimeout)); err != nil {
		w.fail(err)
		return err
	}
	if _, err := w.conn.Write(b); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

// fail closes the connection so the request reader stops too: with the
// reply stream broken, nothing more can be answered.
func (w *replyWriter) fail(err error) {
	w.err = err
	w.conn.Close()
}

func (w *replyWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func replyHeader(cookie uint64, errno uint32) protocol.TransmissionReplyHeader {
	return protocol.TransmissionReplyHeader{
		ReplyMagic: protocol.TRANSMISSION_MAGIC_REPLY,
		Error:      errno,
		Handle:     cookie,
	}
}
