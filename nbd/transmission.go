package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pojntfx/go-nbd/pkg/protocol"

	"github.com/objbacker/objbacker/internal/inflight"
)

// conn is one connection in the transmission phase. A single reader (serve
// and its callees) parses and validates requests, reads WRITE payloads and
// starts a goroutine per admitted request; replies go out in completion
// order through the replyWriter.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader
	log    *slog.Logger
	export *export
	size   uint64
	// strictAlign, structured, blockStatus: see session.
	strictAlign, structured, blockStatus bool

	// payloadTimeout: see Server.PayloadTimeout.
	payloadTimeout time.Duration

	w        *replyWriter
	limit    *inflight.Limiter
	barrier  *inflight.WriteBarrier
	inflight sync.WaitGroup
	// dirty is set when a write, trim or zero completes and cleared when a
	// flush starts, so the final Sync is skipped after a clean flush.
	dirty atomic.Bool
	hdr   [requestHeaderLen]byte
	stats stats
	// observe: see Server.Observe.
	observe func(export, cmd string, bytes uint32, d time.Duration, err error)
}

type stats struct {
	reads, writes, flushes, trims, zeroes atomic.Uint64
	bytesRead, bytesWritten               atomic.Uint64
	// rejected counts requests answered with an error before reaching the
	// backend; failed counts backend errors.
	rejected, failed atomic.Uint64
}

func newConn(nc net.Conn, r *bufio.Reader, sess *session, limit *inflight.Limiter, payloadTimeout time.Duration, log *slog.Logger) *conn {
	return &conn{
		nc:             nc,
		r:              r,
		log:            log,
		export:         sess.export,
		size:           sess.size,
		strictAlign:    sess.strictAlign,
		structured:     sess.structured,
		blockStatus:    sess.blockStatus,
		payloadTimeout: payloadTimeout,
		w:              newReplyWriter(nc, sess.structured),
		limit:          limit,
		barrier:        inflight.NewWriteBarrier(),
	}
}

// serve runs the transmission phase until the client disconnects, the
// connection fails or ctx is cancelled. In every case it waits for the
// requests in progress, syncs if anything was written since the last
// flush, and closes the connection.
func (c *conn) serve(ctx context.Context) error {
	start := time.Now()
	// Cancelling stops the reader only; replies still go out.
	stop := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Now()) })
	defer stop()

	reason, err := c.readRequests(ctx)
	c.inflight.Wait()
	if werr := c.w.failure(); werr != nil && err == nil {
		reason, err = "reply failed", werr
	}
	synced := c.dirty.Load()
	if synced {
		if serr := c.export.Backend.Sync(); serr != nil {
			c.log.Error("nbd: sync at disconnect failed; recent writes may not be durable", "err", serr)
			err = errors.Join(err, fmt.Errorf("sync at disconnect: %w", serr))
		}
	}
	c.nc.Close()

	level, attrs := slog.LevelInfo, []any{"reason", reason, "synced", synced}
	if err != nil {
		level, attrs = slog.LevelWarn, append(attrs, "err", err)
	}
	c.log.Log(context.Background(), level, "nbd: client disconnected", append(attrs,
		"duration", time.Since(start).Round(time.Millisecond),
		"reads", c.stats.reads.Load(), "bytes_read", c.stats.bytesRead.Load(),
		"writes", c.stats.writes.Load(), "bytes_written", c.stats.bytesWritten.Load(),
		"flushes", c.stats.flushes.Load(), "trims", c.stats.trims.Load(), "zeroes", c.stats.zeroes.Load(),
		"rejected", c.stats.rejected.Load(), "failed", c.stats.failed.Load())...)
	return err
}

// readRequests reads until the connection should end and says why.
func (c *conn) readRequests(ctx context.Context) (reason string, err error) {
	for {
		if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return "client closed the connection without NBD_CMD_DISC", nil
			}
			return c.readFailed(ctx, err)
		}
		req := decodeRequest(&c.hdr)
		if req.RequestMagic != protocol.TRANSMISSION_MAGIC_REQUEST {
			// Framing is lost; nothing after this can be parsed.
			return "protocol error", fmt.Errorf("bad request magic %#x", req.RequestMagic)
		}
		if req.Type == protocol.TRANSMISSION_TYPE_REQUEST_DISC {
			return "client disconnect", nil
		}
		if reason, err := c.admit(ctx, req); reason != "" {
			return reason, err
		}
	}
}

func (c *conn) readFailed(ctx context.Context, err error) (string, error) {
	switch {
	case ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return "server shutdown", nil
	case c.w.failure() != nil:
		// The reply writer closed the connection; serve reports its error.
		return "reply failed", nil
	case errors.Is(err, errPayloadStalled):
		return "payload stalled", err
	default:
		return "read failed", err
	}
}

// admit validates one request and starts it, or answers it with an error.
// A non-empty reason ends the connection.
func (c *conn) admit(ctx context.Context, req protocol.TransmissionRequestHeader) (reason string, err error) {
	isWrite := req.Type == protocol.TRANSMISSION_TYPE_REQUEST_WRITE
	if isWrite && req.Length > MaxPayload {
		// The spec lets a server treat larger payloads as denial of
		// service; draining up to 4 GiB would be one.
		return "protocol error", fmt.Errorf("WRITE payload of %d bytes", req.Length)
	}
	if errno := c.check(req); errno != 0 || req.Length == 0 && req.Type != cmdFlush && req.Type != cmdBlockStatus {
		if isWrite {
			if err := c.receive(ctx, nil, int(req.Length)); err != nil {
				return c.readFailed(ctx, err)
			}
		}
		if errno != 0 {
			c.stats.rejected.Add(1)
			c.log.Debug("nbd: request rejected", "type", req.Type, "flags", req.CommandFlags,
				"offset", req.Offset, "length", req.Length, "errno", errno)
		}
		if err := c.w.status(req.Handle, errno); err != nil {
			return "reply failed", nil
		}
		return "", nil
	}

	// A WRITE is admitted only once its whole payload is here. Until then
	// the payload is this connection's alone, outside the shared budget:
	// admitting first reserved the budget for bytes the client had not
	// sent, and a client that declared a large WRITE and stopped sending
	// held it, and with it every other connection, until it hung up.
	// Taking the budget piece by piece as bytes arrive would bound memory
	// more tightly, but connections each holding part of the budget while
	// waiting for the rest can deadlock. What a connection holds here is
	// at most one payload (this reader takes one request at a time), of at
	// most its export's maximum block size, and only while the payload
	// keeps arriving: one that stops for the payload timeout is dropped
	// with the connection.
	var buf *[]byte
	var block []byte
	if isWrite {
		if buf, block, err = c.receiveWrite(ctx, req); err != nil {
			return c.readFailed(ctx, err)
		}
	}
	var payload uint32
	if isWrite || req.Type == protocol.TRANSMISSION_TYPE_REQUEST_READ {
		payload = req.Length
	}
	var start time.Time
	if c.observe != nil {
		start = time.Now()
	}
	tokens, ok := c.limit.Acquire(ctx, payload)
	if !ok {
		// Dropped unanswered: the client was never told it was written.
		c.dropWrite(buf, block)
		return "server shutdown", nil
	}
	if !isWrite && payload > 0 && !(c.export.lender != nil && payload >= lendMin && c.aligned(req)) {
		buf = payloads.Get(int(payload))
	}
	// Otherwise a READ's reply is sent from the backend's buffers (read).

	// Sequence numbers are taken here, in the order of receipt, so a
	// FLUSH covers exactly the writes received before it.
	var seq uint64
	switch req.Type {
	case protocol.TRANSMISSION_TYPE_REQUEST_WRITE, cmdTrim, cmdWriteZeroes:
		seq = c.barrier.Begin()
	case cmdFlush:
		seq = c.barrier.Mark()
	}
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		c.run(req, buf, block, seq, tokens, start)
	}()
	return "", nil
}

// receiveWrite reads a WRITE's payload into a buffer of the backend's when
// it takes whole blocks (see BlockWriter), into a payload buffer otherwise.
func (c *conn) receiveWrite(ctx context.Context, req protocol.TransmissionRequestHeader) (buf *[]byte, block []byte, err error) {
	if c.export.blocks != nil && req.Length == c.export.blockSize && req.Offset%uint64(req.Length) == 0 {
		block = c.export.blocks.BlockBuffer()
	}
	if block != nil {
		err = c.receive(ctx, block, len(block))
	} else {
		buf = payloads.Get(int(req.Length))
		err = c.receive(ctx, (*buf)[payloadHeadroom:], int(req.Length))
	}
	if err != nil {
		c.dropWrite(buf, block)
		return nil, nil, err
	}
	return buf, block, nil
}

func (c *conn) dropWrite(buf *[]byte, block []byte) {
	if block != nil {
		c.export.blocks.ReturnBlockBuffer(block)
	}
	if buf != nil {
		payloads.Put(buf)
	}
}

// errPayloadStalled: a WRITE payload stopped arriving for the payload
// timeout.
var errPayloadStalled = errors.New("WRITE payload stalled")

// receive reads n payload bytes into p, or discards them if p is nil. The
// client must keep them coming: a read that would wait has a deadline of
// payloadTimeout, so a payload that stops arriving for that long fails
// with errPayloadStalled, while one that arrives slowly but steadily is
// received whatever its size. Waiting between requests has no deadline.
func (c *conn) receive(ctx context.Context, p []byte, n int) error {
	armed := false
	for got := 0; got < n; {
		// Only a read of an empty buffer can wait for the client.
		if c.r.Buffered() == 0 {
			c.setReadDeadline(ctx, time.Now().Add(c.payloadTimeout))
			armed = true
		}
		var k int
		var err error
		if p != nil {
			k, err = c.r.Read(p[got:n])
		} else if _, err = c.r.Peek(1); err == nil {
			k, err = c.r.Discard(min(n-got, c.r.Buffered()))
		}
		got += k
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
			return fmt.Errorf("%w: %d of %d bytes received, none for %v", errPayloadStalled, got, n, c.payloadTimeout)
		case errors.Is(err, io.EOF):
			return io.ErrUnexpectedEOF
		default:
			return err
		}
	}
	if armed {
		c.setReadDeadline(ctx, time.Time{})
	}
	return nil
}

// setReadDeadline sets the read deadline to t, unless ctx has ended: then
// the deadline that stops the reader at shutdown (see serve) stays, even
// if the two calls race. A failure to set it means the connection is
// closed, which the next read reports.
func (c *conn) setReadDeadline(ctx context.Context, t time.Time) {
	c.nc.SetReadDeadline(t)
	if ctx.Err() != nil {
		c.nc.SetReadDeadline(time.Now())
	}
}

// check returns the NBD error for a request that must not reach the
// backend, or 0.
func (c *conn) check(req protocol.TransmissionRequestHeader) uint32 {
	allowedFlags := cmdFlagFUA // valid on every command, per the spec
	writes := true
	switch req.Type {
	case protocol.TRANSMISSION_TYPE_REQUEST_READ:
		writes = false
	case protocol.TRANSMISSION_TYPE_REQUEST_WRITE:
	case cmdFlush:
		// Offset and length are reserved; nothing to check.
		return checkFlags(req, allowedFlags)
	case cmdTrim:
		if c.export.trim == nil && !c.export.ReadOnly {
			return protocol.TRANSMISSION_ERROR_EINVAL
		}
	case cmdWriteZeroes:
		if c.export.zero == nil && !c.export.ReadOnly {
			return protocol.TRANSMISSION_ERROR_EINVAL
		}
		allowedFlags |= cmdFlagNoHole | cmdFlagFastZero
	case cmdCache:
		if c.export.cache == nil {
			return protocol.TRANSMISSION_ERROR_EINVAL
		}
		writes = false
	case cmdBlockStatus:
		// Only after base:allocation was selected for this export, and
		// never of length 0: a successful reply must describe an extent.
		if !c.blockStatus || req.Length == 0 {
			return protocol.TRANSMISSION_ERROR_EINVAL
		}
		allowedFlags |= cmdFlagReqOne
		writes = false
	default:
		return protocol.TRANSMISSION_ERROR_EINVAL
	}
	if errno := checkFlags(req, allowedFlags); errno != 0 {
		return errno
	}
	if writes && c.export.ReadOnly {
		return protocol.TRANSMISSION_ERROR_EPERM
	}
	if req.Length == 0 {
		return 0
	}
	hasPayload := req.Type == protocol.TRANSMISSION_TYPE_REQUEST_READ || req.Type == protocol.TRANSMISSION_TYPE_REQUEST_WRITE
	// TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS carry no payload and may
	// exceed the maximum, as the spec allows: the kernel sends discards of
	// up to 4 GiB.
	if hasPayload && req.Length > c.export.max {
		return protocol.TRANSMISSION_ERROR_EINVAL
	}
	if req.Offset > c.size || uint64(req.Length) > c.size-req.Offset {
		if req.Type == protocol.TRANSMISSION_TYPE_REQUEST_WRITE || req.Type == cmdWriteZeroes {
			return errENOSPC // the spec's choice for writes past the end
		}
		return protocol.TRANSMISSION_ERROR_EINVAL
	}
	if c.strictAlign && (req.Offset|uint64(req.Length))%uint64(c.export.min) != 0 {
		return protocol.TRANSMISSION_ERROR_EINVAL
	}
	return 0
}

// checkFlags rejects flags the command does not define, as the spec asks.
func checkFlags(req protocol.TransmissionRequestHeader, allowed uint16) uint32 {
	if req.CommandFlags&^allowed != 0 {
		return protocol.TRANSMISSION_ERROR_EINVAL
	}
	return 0
}
