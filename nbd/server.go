package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
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

// DefaultMaxBuffered bounds the payload bytes of the requests admitted on
// one export, across all its connections, when Export.MaxBuffered is zero.
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
	// PayloadTimeout is how long a WRITE payload may go without a byte
	// arriving; then the connection is closed (logged at Warn) and the
	// write is dropped unanswered. Zero means DefaultPayloadTimeout.
	// Between requests a connection may stay idle for any time.
	PayloadTimeout time.Duration
	// Observe, if set, is told of each request that reaches an export's
	// backend, once, when it ends: a READ once its reply is sent (or
	// dropped with a broken connection), any other command once its
	// reply is queued. cmd is "read", "write", "flush", "trim",
	// "write_zeroes", "cache" or "block_status"; bytes the request's length; d the time from its
	// admission (after a WRITE's payload has arrived, before the request
	// waits for the payload budget) to its end; err the backend's error,
	// nil on success. Requests answered without the backend (invalid,
	// read-only, of length zero) are not observed. It is called
	// concurrently, on the request's path: it must be cheap.
	Observe func(export, cmd string, bytes uint32, d time.Duration, err error)
	// TLSConfig, if set, lets clients upgrade a connection to TLS with
	// NBD_OPT_STARTTLS, as the spec's SELECTIVETLS mode with no TLS-only
	// export; nil answers STARTTLS NBD_REP_ERR_UNSUP. It needs a
	// certificate (Certificates, GetCertificate or GetConfigForClient,
	// which may change it between connections); ClientAuth and ClientCAs
	// make client certificates mandatory.
	TLSConfig *tls.Config
	// TLSRequired makes TLS mandatory (the spec's FORCEDTLS mode): before
	// STARTTLS every option but ABORT is answered NBD_REP_ERR_TLS_REQD,
	// and NBD_OPT_EXPORT_NAME ends the connection. It needs TLSConfig.
	TLSRequired bool

	connIDs atomic.Uint64
	// budgets are the exports' payload budgets (Export.MaxBuffered), made
	// on first use and shared by every connection to the export.
	budgetsMu sync.Mutex
	budgets   map[*Export]*inflight.Budget
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is cancelled. Then it closes ln, lets every connection finish
// the requests it has already read (their replies are sent), syncs each
// connection's export if it wrote since its last flush, closes the
// connections and returns nil. It returns an error for invalid Exports or
// when ln fails; open connections are then drained the same way.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	exports, err := resolveExports(s.Exports)
	if err == nil {
		_, err = s.tlsPolicy()
	}
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
	if err == nil {
		_, err = s.tlsPolicy()
	}
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
	tp, err := s.tlsPolicy()
	if err != nil {
		return err
	}
	sess, err := negotiate(ctx, nc, r, exports, tp, log)
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
	c := newConn(sess.conn, sess.r, sess, s.limiter(sess.export), s.payloadTimeout(), log)
	c.observe = s.Observe
	return c.serve(ctx)
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// limiter admits one connection's requests to e: up to MaxInflight at
// once, within a share of half e's payload budget, then within the budget.
// The share keeps a connection whose client stops taking its replies (or
// whose requests wait on a stalled store) from holding the whole budget:
// the export's other connections keep the other half. Half still lets
// one connection reach the budget's purpose, the store parallelism it was
// sized from (Export.MaxBuffered).
func (s *Server) limiter(e *export) *inflight.Limiter {
	budget := s.budget(e.Export)
	share := inflight.NewBudget(max(budget.Size()/2, 1))
	return inflight.NewLimiter(s.maxInflight(), share, budget)
}

func (s *Server) budget(e *Export) *inflight.Budget {
	s.budgetsMu.Lock()
	defer s.budgetsMu.Unlock()
	if b := s.budgets[e]; b != nil {
		return b
	}
	if s.budgets == nil {
		s.budgets = make(map[*Export]*inflight.Budget)
	}
	b := inflight.NewBudget(maxBuffered(e))
	s.budgets[e] = b
	return b
}

func maxBuffered(e *Export) int64 {
	if e.MaxBuffered <= 0 {
		return DefaultMaxBuffered
	}
	return e.MaxBuffered
}

// Buffered reports the payload budget of the export named export (see
// Export.MaxBuffered): the bytes its requests hold now and the budget's
// size; ok is false if there is no such export. It is meant for metrics.
func (s *Server) Buffered(export string) (inUse, size int64, ok bool) {
	for _, e := range s.Exports {
		if e != nil && e.Name == export {
			s.budgetsMu.Lock()
			b := s.budgets[e]
			s.budgetsMu.Unlock()
			if b == nil { // no connection yet
				return 0, maxBuffered(e), true
			}
			return b.InUse(), b.Size(), true
		}
	}
	return 0, 0, false
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
