package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/objbacker/objbacker/internal/inflight"
)

// Defaults for the Server's zero fields.
const (
	// DefaultMaxInflight is the number of requests served at once. ZFS
	// keeps up to zfs_vdev_max_active (1000) I/Os outstanding per vdev;
	// more than a hundred in flight already hides object-store latency.
	DefaultMaxInflight = 128
	// DefaultMaxBuffered bounds the payload bytes held at once, as for
	// NBD: the daemon's memory overhead is the same whichever front end
	// serves. A larger request (up to MaxIO) is admitted alone.
	DefaultMaxBuffered = inflight.DefaultBudget
)

// A Server serves Exports to the kernel over the objbacker device. Set its
// fields before Serve and leave them unchanged afterwards.
type Server struct {
	// Exports are registered in this order; an export's id is its index.
	Exports []*Export
	// Log receives the channel's events (registration, first backend
	// error, shutdown with counts); nil means slog.Default().
	Log *slog.Logger
	// MaxInflight bounds the requests in progress at once; zero means
	// DefaultMaxInflight.
	MaxInflight int
	// MaxBuffered bounds the READ and WRITE payload bytes held at once;
	// zero means DefaultMaxBuffered.
	MaxBuffered int64
}

// Serve registers the exports on dev, the daemon's end of a channel
// (/dev/zfs_objbacker opened read-write, or one end of a socket pair), and
// serves the kernel's requests until ctx is cancelled or the channel fails.
// Then it stops reading, finishes the requests it has read (their replies
// are sent), syncs every export, sends one BYE per export, closes dev and
// returns. It returns nil when ctx stopped it and every export synced, and
// an error otherwise: the kernel refused the HELLO, the channel ended or
// broke, the kernel broke the protocol, or a final sync failed.
//
// Stopping without closing dev needs read deadlines (*os.File on a device
// that supports poll, or a net.Conn); on a dev without them, cancelling ctx
// closes dev, and the replies still due are lost (the kernel reissues
// their requests to the next daemon).
func (s *Server) Serve(ctx context.Context, dev io.ReadWriteCloser) error {
	log := s.logger()
	exports, err := resolveExports(s.Exports)
	if err != nil {
		dev.Close()
		return err
	}
	stopReading := interrupter(dev, log)
	defer context.AfterFunc(ctx, stopReading)()

	r := bufio.NewReaderSize(dev, 64<<10)
	hello, err := handshake(dev, r, exports)
	if err != nil {
		dev.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kernel: %w", err)
	}
	log.Info("kernel: exports registered", "exports", len(exports), "max_io", hello.MaxIO,
		"kernel_max_inflight", hello.MaxInflight, "kernel_timeout", time.Duration(hello.TimeoutMS)*time.Millisecond)
	sess := newSession(dev, r, exports, hello.MaxIO, s.maxInflight(), s.maxBuffered(), log)
	return sess.serve(ctx)
}

// interrupter returns what stops a read blocked on dev: an expired read
// deadline when dev has deadlines, closing dev otherwise.
func interrupter(dev io.ReadWriteCloser, log *slog.Logger) func() {
	if d, ok := dev.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Time{}) == nil {
		return func() { d.SetReadDeadline(time.Unix(1, 0)) }
	}
	log.Warn("kernel: the device has no read deadlines (no poll support); stopping will close it before replies in flight are sent")
	return func() { dev.Close() }
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *Server) maxInflight() int {
	if s.MaxInflight <= 0 {
		return DefaultMaxInflight
	}
	return s.MaxInflight
}

func (s *Server) maxBuffered() int64 {
	if s.MaxBuffered <= 0 {
		return DefaultMaxBuffered
	}
	return s.MaxBuffered
}

// errChannelEnded: the kernel's side of the channel reached end of stream,
// which it never does in normal operation.
var errChannelEnded = errors.New("the kernel ended the channel")
