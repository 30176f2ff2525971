package kernel

import (
	"io"
	"syscall"
	"time"

	"github.com/objbacker/objbacker/internal/inflight"
)

// replyTimeout bounds one write to the device. The kernel consumes replies
// as they are written, so a write that stalls this long means the channel
// is broken; without the bound, a graceful shutdown could hang on it.
const replyTimeout = time.Minute

// coalesceMax is the largest message copied into a shared buffer so that
// the replies completing together go out in one write(2): status replies
// and small READs. Larger READ replies are written from their own buffer.
const coalesceMax = 8 << 10

// replyWriter sends the messages of concurrent requests, combined into
// batches (see inflight.Combiner); small messages of a batch are coalesced
// into one write(2), as a character device has no writev.
type replyWriter struct {
	inflight.Combiner
	dev io.WriteCloser
	// deadline is dev's SetWriteDeadline, or nil.
	deadline func(time.Time) error
	scratch  []byte // the writer's coalescing buffer
}

func newReplyWriter(dev io.WriteCloser) *replyWriter {
	w := &replyWriter{dev: dev}
	if d, ok := dev.(interface{ SetWriteDeadline(time.Time) error }); ok && d.SetWriteDeadline(time.Time{}) == nil {
		w.deadline = d.SetWriteDeadline
	}
	w.Write = w.write
	// Closing the device stops the request reader too.
	w.Fail = func(error) { dev.Close() }
	return w
}

// status sends a reply without data: an error for any request, or the
// success of anything but READ.
func (w *replyWriter) status(req Header, errno syscall.Errno) error {
	return w.Send(AppendHeader(nil, replyTo(req, errno)), nil)
}

// data sends a successful READ reply. buf holds HeaderLen bytes of
// headroom followed by the data; done is called once it is sent, to give
// buf and its budget back.
func (w *replyWriter) data(req Header, buf *[]byte, done func()) error {
	h := replyTo(req, 0)
	h.Encode(*buf)
	return w.Send(*buf, done)
}

// lent sends a successful READ reply whose data is parts[1:]; parts[0] has
// room for the header. done is called once it is written.
func (w *replyWriter) lent(req Header, parts [][]byte, done func()) error {
	h := replyTo(req, 0)
	h.Encode(parts[0])
	return w.SendParts(parts, done)
}

// bye sends the BYE of one export.
func (w *replyWriter) bye(export uint32, errno syscall.Errno) error {
	return w.Send(AppendHeader(nil, Header{Magic: RequestMagic, Version: Version, Op: OpBye, Export: export, Status: errno}), nil)
}

// replyTo is the reply header for req: its id, op, flags, export and
// range echoed, in the version of this daemon, with a status.
func replyTo(req Header, errno syscall.Errno) Header {
	req.Magic, req.Version, req.Status = ReplyMagic, Version, errno
	return req
}

// write sends a batch, small messages coalesced. A message in parts (a
// READ reply from lent views) may be split across write(2)s, which the
// stream allows; other messages go whole.
func (w *replyWriter) write(batch [][]byte) error {
	if w.deadline != nil {
		if err := w.deadline(time.Now().Add(replyTimeout)); err != nil {
			return err
		}
	}
	small := w.scratch[:0]
	defer func() { w.scratch = small[:0] }()
	for _, m := range batch {
		if len(m) <= coalesceMax {
			small = append(small, m...)
			continue
		}
		if len(small) > 0 {
			if _, err := w.dev.Write(small); err != nil {
				return err
			}
			small = small[:0]
		}
		if _, err := w.dev.Write(m); err != nil {
			return err
		}
	}
	if len(small) > 0 {
		_, err := w.dev.Write(small)
		return err
	}
	return nil
}

func (w *replyWriter) failure() error { return w.Err() }
