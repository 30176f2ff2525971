package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/objbacker/objbacker/internal/inflight"
)

// session is one registered channel. A single reader (serve and its
// callees) parses and checks requests, reads WRITE payloads and starts a
// goroutine per admitted request; replies go out in completion order
// through the replyWriter.
type session struct {
	dev     io.ReadWriteCloser
	r       *bufio.Reader
	log     *slog.Logger
	exports []*export // by id
	maxIO   uint32

	w        *replyWriter
	limit    *inflight.Limiter
	inflight sync.WaitGroup
	hdr      [HeaderLen]byte
	stats    stats
}

type stats struct {
	reads, writes, trims, flushes atomic.Uint64
	bytesRead, bytesWritten       atomic.Uint64
	// rejected counts requests refused before reaching a backend; failed
	// counts backend errors.
	rejected, failed atomic.Uint64
}

func newSession(dev io.ReadWriteCloser, r *bufio.Reader, exports []*export, maxIO uint32, maxInflight int, maxBuffered int64, log *slog.Logger) *session {
	return &session{
		dev:     dev,
		r:       r,
		log:     log,
		exports: exports,
		maxIO:   maxIO,
		w:       newReplyWriter(dev),
		limit:   inflight.NewLimiter(maxInflight, inflight.NewBudget(maxBuffered)),
	}
}

// serve runs the channel until ctx is cancelled or the channel fails, then
// shuts down as Server.Serve describes.
func (s *session) serve(ctx context.Context) error {
	start := time.Now()
	reason, err := s.readRequests(ctx)
	s.inflight.Wait()
	if werr := s.w.failure(); werr != nil && err == nil {
		reason, err = "reply failed", werr
	}
	syncErr := s.goodbye()
	s.dev.Close()

	level, attrs := slog.LevelInfo, []any{"reason", reason}
	if err != nil || syncErr != nil {
		level, attrs = slog.LevelWarn, append(attrs, "err", errors.Join(err, syncErr))
	}
	s.log.Log(context.Background(), level, "kernel: channel closed", append(attrs,
		"duration", time.Since(start).Round(time.Millisecond),
		"reads", s.stats.reads.Load(), "bytes_read", s.stats.bytesRead.Load(),
		"writes", s.stats.writes.Load(), "bytes_written", s.stats.bytesWritten.Load(),
		"flushes", s.stats.flushes.Load(), "trims", s.stats.trims.Load(),
		"rejected", s.stats.rejected.Load(), "failed", s.stats.failed.Load())...)
	if err != nil {
		err = fmt.Errorf("kernel: %s: %w", reason, err)
	}
	return errors.Join(err, syncErr)
}

// goodbye makes every export durable and tells the kernel, export by
// export, whether every write it acknowledged is. Each export is synced
// even if nothing was written on this channel: Sync is cheap on a clean
// device, and the BYE vouches for writes acknowledged by anyone.
func (s *session) goodbye() error {
	var errs []error
	for _, e := range s.exports {
		var errno syscall.Errno
		if err := e.Backend.Sync(); err != nil {
			s.log.Error("kernel: final sync failed; acknowledged writes may be lost", "export", e.Name, "err", err)
			errs = append(errs, fmt.Errorf("kernel: export %s: final sync: %w", e.Name, err))
			errno = syscall.EIO
		}
		// Fails only if the channel is broken; then the kernel sees no
		// BYE, which it must treat as "writes may be lost" anyway.
		s.w.bye(e.id, errno)
	}
	return errors.Join(errs...)
}

// readRequests reads until the channel should end and says why.
func (s *session) readRequests(ctx context.Context) (reason string, err error) {
	for {
		if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
			return s.readFailed(ctx, err)
		}
		h := DecodeHeader(s.hdr[:])
		if h.Magic != RequestMagic {
			// Framing is lost, and with it the id to answer.
			return "protocol error", fmt.Errorf("bad request magic %#x", h.Magic)
		}
		if reason, err := s.admit(ctx, h); reason != "" {
			return reason, err
		}
	}
}

func (s *session) readFailed(ctx context.Context, err error) (string, error) {
	switch {
	case ctx.Err() != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed)):
		return "shutdown", nil
	case s.w.failure() != nil:
		// The reply writer closed the device; serve reports its error.
		return "reply failed", nil
	case errors.Is(err, io.EOF):
		return "end of stream", errChannelEnded
	default:
		return "read failed", err
	}
}

// admit checks one request and starts it, or answers it with an error. A
// non-empty reason ends the channel.
func (s *session) admit(ctx context.Context, h Header) (reason string, err error) {
	e, errno := s.check(h)
	if errno != 0 {
		if h.HasPayload() {
			if _, err := io.CopyN(io.Discard, s.r, int64(h.Length)); err != nil {
				return s.readFailed(ctx, err)
			}
		}
		s.stats.rejected.Add(1)
		s.log.Debug("kernel: request refused", "op", h.Op, "id", h.ID, "export", h.Export,
			"flags", h.Flags, "offset", h.Offset, "length", h.Length, "status", errno)
		if s.w.status(h, errno) != nil {
			return "reply failed", nil
		}
		return "", nil
	}

	var payload uint32
	if h.Op == OpRead || h.Op == OpWrite {
		payload = h.Length
	}
	held, ok := s.limit.Acquire(ctx, payload)
	if !ok {
		return "shutdown", nil
	}
	var buf *[]byte
	if payload > 0 && !(h.Op == OpRead && e.lender != nil && payload >= lendMin) {
		buf = payloads.Get(int(payload))
	}
	if h.Op == OpWrite {
		if _, err := io.ReadFull(s.r, (*buf)[HeaderLen:]); err != nil {
			payloads.Put(buf)
			s.limit.Release(held)
			return s.readFailed(ctx, err)
		}
	}

	// Sequence numbers are taken here, in the order of receipt, so a
	// FLUSH covers exactly the writes received before it.
	var seq uint64
	switch h.Op {
	case OpWrite, OpTrim:
		seq = e.barrier.Begin()
	case OpFlush:
		seq = e.barrier.Mark()
	}
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		s.run(e, h, buf, seq, held)
	}()
	return "", nil
}

// check returns the request's export, or the status of a request that
// must not reach a backend (the header file's ERRORS).
func (s *session) check(h Header) (*export, syscall.Errno) {
	if h.Version != Version {
		return nil, syscall.EPROTO
	}
	switch h.Op {
	case OpRead, OpWrite, OpTrim, OpFlush:
	default:
		return nil, syscall.EOPNOTSUPP
	}
	if h.Status != 0 {
		return nil, syscall.EINVAL
	}
	if uint64(h.Export) >= uint64(len(s.exports)) {
		return nil, syscall.ENXIO
	}
	e := s.exports[h.Export]
	var allowed uint32
	if h.Op == OpWrite {
		allowed = FlagFUA
	}
	if h.Flags&^allowed != 0 {
		return nil, syscall.EINVAL
	}
	if h.Op == OpFlush {
		if h.Offset != 0 || h.Length != 0 {
			return nil, syscall.EINVAL
		}
		return e, 0
	}
	if h.Op != OpRead && e.ReadOnly {
		return nil, syscall.EROFS
	}
	if h.Op == OpTrim && e.trim == nil {
		return nil, syscall.EOPNOTSUPP
	}
	switch {
	case h.Length == 0,
		h.Op != OpTrim && h.Length > s.maxIO,
		h.Offset%SectorSize != 0 || h.Length%SectorSize != 0,
		h.Offset > e.size || uint64(h.Length) > e.size-h.Offset:
		return nil, syscall.EINVAL
	}
	return e, 0
}
