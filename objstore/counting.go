package objstore

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// Counts are the operations a Counting store has passed on, by kind, and the
// payload bytes moved. Fields are read with Load.
type Counts struct {
	Gets, Puts, Deletes, Stats, Lists atomic.Int64
	Errors                            atomic.Int64
	BytesRead, BytesWritten           atomic.Int64
}

// An Op is a kind of store request, as an Observer is told of it.
type Op uint8

// The kinds of request. DeleteIfMatch is a delete.
const (
	OpGet Op = iota
	OpPut
	OpDelete
	OpStat
	OpList
	// NumOps is the number of kinds, for tables indexed by Op.
	NumOps = iota
)

var opNames = [NumOps]string{"get", "put", "delete", "stat", "list"}

// String is the op's name in lower case: "get", "put", "delete", "stat" or
// "list".
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "unknown"
}

// An Observer is told of each request a store made by CountingObserved has
// passed on, once the request has ended: its kind, how long it took, and
// its error (see Failed). A Get ends when its body is closed, so that its
// duration covers the transfer; a Get that fails ends when it returns, and
// a body's read error other than io.EOF is the Get's error. An Observer is
// called concurrently and on the request's path: it must be cheap.
type Observer func(op Op, d time.Duration, err error)

// Failed reports whether err, from a store request, is a failure: a
// missing object is an answer, not a failure. Counts.Errors counts failures.
func Failed(err error) bool { return err != nil && !errors.Is(err, ErrNotFound) }

// Counting wraps store and counts every call into c: the source of the
// daemon's metrics and of tests that assert how many requests reached a store.
func Counting(store Store, c *Counts) Store { return &counting{next: store, c: c} }

// CountingObserved is Counting that also tells obs of each request's
// duration and outcome. obs nil: Counting.
func CountingObserved(store Store, c *Counts, obs Observer) Store {
	return &counting{next: store, c: c, obs: obs}
}

type counting struct {
	next Store
	c    *Counts
	obs  Observer
}

// start is when a request began, if there is an observer to tell.
func (s *counting) start() time.Time {
	if s.obs == nil {
		return time.Time{}
	}
	return time.Now()
}

// done counts a failure and tells the observer that the request of kind
// op, begun at start, has ended with err.
func (s *counting) done(op Op, start time.Time, err error) error {
	if Failed(err) {
		s.c.Errors.Add(1)
	}
	if s.obs != nil {
		s.obs(op, time.Since(start), err)
	}
	return err
}

func (s *counting) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	s.c.Gets.Add(1)
	start := s.start()
	rc, a, err := s.next.Get(ctx, key, off, n)
	if err != nil {
		return nil, a, s.done(OpGet, start, err)
	}
	return &countingReader{ReadCloser: rc, n: &s.c.BytesRead, obs: s.obs, start: start}, a, nil
}

func (s *counting) Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error) {
	s.c.Puts.Add(1)
	start := s.start()
	a, err := s.next.Put(ctx, key, data, opts)
	if err == nil {
		s.c.BytesWritten.Add(int64(len(data)))
	}
	return a, s.done(OpPut, start, err)
}

func (s *counting) Delete(ctx context.Context, key string) error {
	s.c.Deletes.Add(1)
	start := s.start()
	return s.done(OpDelete, start, s.next.Delete(ctx, key))
}

func (s *counting) DeleteIfMatch(ctx context.Context, key, etag string) error {
	s.c.Deletes.Add(1)
	start := s.start()
	return s.done(OpDelete, start, s.next.DeleteIfMatch(ctx, key, etag))
}

func (s *counting) Stat(ctx context.Context, key string) (Attrs, error) {
	s.c.Stats.Add(1)
	start := s.start()
	a, err := s.next.Stat(ctx, key)
	return a, s.done(OpStat, start, err)
}

func (s *counting) List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	s.c.Lists.Add(1)
	start := s.start()
	return s.done(OpList, start, s.next.List(ctx, prefix, startAfter, fn))
}

func (s *counting) Close() error { return s.next.Close() }

// countingReader counts a Get's body and, with an observer, tells it of
// the Get when the body is first closed.
type countingReader struct {
	io.ReadCloser
	n      *atomic.Int64
	obs    Observer
	start  time.Time
	err    error // the first read error other than io.EOF
	closed bool
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *countingReader) Close() error {
	err := r.ReadCloser.Close()
	if r.obs != nil && !r.closed {
		r.closed = true
		r.obs(OpGet, time.Since(r.start), r.err)
	}
	return err
}

func (s *counting) ListScansAll() bool { return ListScansAll(s.next) }
