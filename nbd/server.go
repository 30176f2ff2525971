package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objbacker/objbacker/internal/inflight"
)

// DefaultMaxInflight is the per-connection request concurrency when
// Server.MaxInflight is zero. The Linux client keeps up to 128 requests in
// flight per connection; 64 already hides tens of milliseconds of backend
// latency at 1 MiB per request.
const DefaultMaxInflight = 64

// DefaultMaxBuffered bounds the payload bytes of the requests a Server has
// admitted, across all its connections, when Server.MaxBuffered is zero.
const DefaultMaxBuffered = inflight.DefaultBudget

// DefaultPayloadTimeout is how long a WRITE payload may stop arriving
// before the connection is closed, when Server.PayloadTimeout is zero. A
// live client sends a payload it has begun at network speed; 30 s without
// a byte is a dead or stuck peer, yet long enough for a congested link.
const DefaultPayloadTimeout = 30 * time.Second

// A Server serves Exports over NBD. Set its fields before the first Serve
// or ServeConn call and leave them unchanged afterwards.
type Server struct {
	Exports []*Export
	// Log receives one line per connection event (connect, export chosen,
	// disconnect with counts, errors); nil means slog.Default().
	Log *slog.Logger
	// MaxInflight bounds the requests one connection has in progress at
	// once; zero means DefaultMaxInflight.
	MaxInflight int
	// MaxBuffered bounds the payload bytes of the requests admitted at
	// once on all connections together (READ data until its reply is sent,
	// WRITE data until it is written); zero means DefaultMaxBuffered. A
	// WRITE is admitted only once its payload has been received: until
	// then the payload is held by its connection alone, one at a time and
	// at most the export's MaxBlockSize, so a client that stops sending
	// holds nothing other clients wait for.
	MaxBuffered int64
	// PayloadTimeout is how long a WRITE payload may go without a byte
	// arriving; then the connection is closed (logged at Warn) and the
	// write is dropped unanswered. Zero means DefaultPayloadTimeout.
	// Between requests a connection may stay idle for any time.
	PayloadTimeout time.Duration

	connIDs    atomic.Uint64
	budgetOnce sync.Once
	budget     *inflight.Budget
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is cancelled. Then it closes ln, lets every connection finish
// the requests it has already read (their replies are sent), syncs each
// connection's export if it wrote since its last flush, closes the
// connections and returns nil. It returns an error for invalid Exports or
// when ln fails; open connections are then drained the same way.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	exports, err := resolveExports(s.Exports)
	if err != nil {
		ln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var conns sync.WaitGroup
	defer conns.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("nbd: accept: %w", err)
			}
			// Anything else (EMFILE and the like) is likely to pass;
			// retry with backoff as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("nbd: accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		conns.Go(func() { s.serveConn(ctx, nc, exports) })
	}
}

// ServeConn serves one client connection and closes it. Cancelling ctx
// ends it as in Serve. It returns nil when the client disconnects or
// aborts, or at shutdown, and the error otherwise (also logged).
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	exports, err := resolveExports(s.Exports)
	if err != nil {
		nc.Close()
		return err
	}
	return s.serveConn(ctx, nc, exports)
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn, exports []*export) error {
	defer nc.Close()
	log := s.logger().With("conn", s.connIDs.Add(1), "remote", nc.RemoteAddr().String())
	log.Info("nbd: client connected")

	r := bufio.NewReaderSize(nc, 32<<10)
	sess, err := negotiate(ctx, nc, r, exports, log)
	switch {
	case errors.Is(err, errClientAborted):
		log.Info("nbd: client ended the handshake")
		return nil
	case ctx.Err() != nil:
		log.Info("nbd: handshake interrupted by shutdown")
		return nil
	case err != nil:
		log.Warn("nbd: handshake failed", "err", err)
		return err
	}
	log = log.With("export", sess.export.Name)
	log.Info("nbd: export selected", "size", sess.size, "flags", fmt.Sprintf("%#x", sess.export.flags),
		"aligned", sess.strictAlign)
	return newConn(nc, r, sess, s.maxInflight(), s.payloadBudget(), s.payloadTimeout(), log).serve(ctx)
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *Server) payloadBudget() *inflight.Budget {
	s.budgetOnce.Do(func() {
		size := s.MaxBuffered
		if size <= 0 {
			size = DefaultMaxBuffered
		}
		s.budget = inflight.NewBudget(size)
	})
	return s.budget
}

func (s *Server) maxInflight() int {
	if s.MaxInflight <= 0 {
		return DefaultMaxInflight
	}
	return s.MaxInflight
}

func (s *Server) payloadTimeout() time.Duration {
	if s.PayloadTimeout <= 0 {
		return DefaultPayloadTimeout
	}
	return s.PayloadTimeout
}
