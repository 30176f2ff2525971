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
// its data are never interleaved with another reply. It combines them: the
// request that finds the writer idle becomes the writer and sends every
// reply queued meanwhile in one writev, so a busy connection makes one
// system call per batch rather than one per reply.
type replyWriter struct {
	conn net.Conn

	mu      sync.Mutex
	queue   net.Buffers
	owned   []*[]byte // buffers to release once the queue is written
	writing bool
	err     error // first write error; later replies are dropped
}

// status sends a reply without data: success, or an error for any command.
func (w *replyWriter) status(cookie uint64, errno uint32) error {
	hdr := make([]byte, replyHeaderLen)
	encodeReply(hdr, replyHeader(cookie, errno))
	return w.send(hdr, nil)
}

// data sends a successful READ reply. buf holds replyHeaderLen bytes of
// headroom followed by the data; the writer releases it once sent.
func (w *replyWriter) data(cookie uint64, buf *[]byte) error {
	encodeReply(*buf, replyHeader(cookie, 0))
	return w.send(*buf, buf)
}

// send queues b and, unless another request is writing, writes the queue
// until it is empty. An error means the connection has failed.
func (w *replyWriter) send(b []byte, owned *[]byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		release(owned)
		return err
	}
	w.queue = append(w.queue, b)
	if owned != nil {
		w.owned = append(w.owned, owned)
	}
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	for len(w.queue) > 0 && w.err == nil {
		batch, bufs := w.queue, w.owned
		w.queue, w.owned = nil, nil
		w.mu.Unlock()
		err := w.conn.SetWriteDeadline(time.Now().Add(replyTimeout))
		if err == nil {
			_, err = batch.WriteTo(w.conn)
		}
		for _, b := range bufs {
			putBuffer(b)
		}
		w.mu.Lock()
		if err != nil {
			w.fail(err)
		}
	}
	for _, b := range w.owned {
		putBuffer(b)
	}
	w.queue, w.owned = nil, nil
	w.writing = false
	err := w.err
	w.mu.Unlock()
	return err
}

func release(b *[]byte) {
	if b != nil {
		putBuffer(b)
	}
}

// fail closes the connection so the request reader stops too: with the
// reply stream broken, nothing more can be answered. Called with mu held.
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
