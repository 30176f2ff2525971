package objstore

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
)

// Counts are the operations a Counting store has passed on, by kind, and the
// payload bytes moved. Fields are read with Load.
type Counts struct {
	Gets, Puts, Deletes, Stats, Lists atomic.Int64
	Errors                            atomic.Int64
	BytesRead, BytesWritten           atomic.Int64
}

// Counting wraps store and counts every call into c: the source of the
// daemon's metrics and of tests that assert how many requests reached a store.
func Counting(store Store, c *Counts) Store { return &counting{next: store, c: c} }

type counting struct {
	next Store
	c    *Counts
}

func (s *counting) note(err error) error {
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.c.Errors.Add(1)
	}
	return err
}

func (s *counting) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, Attrs, error) {
	s.c.Gets.Add(1)
	rc, a, err := s.next.Get(ctx, key, off, n)
	if err != nil {
		return nil, a, s.note(err)
	}
	return &countingReader{ReadCloser: rc, n: &s.c.BytesRead}, a, nil
}

func (s *counting) Put(ctx context.Context, key string, data []byte, opts PutOptions) (Attrs, error) {
	s.c.Puts.Add(1)
	a, err := s.next.Put(ctx, key, data, opts)
	if err == nil {
		s.c.BytesWritten.Add(int64(len(data)))
	}
	return a, s.note(err)
}

func (s *counting) Delete(ctx context.Context, key string) error {
	s.c.Deletes.Add(1)
	return s.note(s.next.Delete(ctx, key))
}

func (s *counting) DeleteIfMatch(ctx context.Context, key, etag string) error {
	s.c.Deletes.Add(1)
	return s.note(s.next.DeleteIfMatch(ctx, key, etag))
}

func (s *counting) Stat(ctx context.Context, key string) (Attrs, error) {
	s.c.Stats.Add(1)
	a, err := s.next.Stat(ctx, key)
	return a, s.note(err)
}

func (s *counting) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	s.c.Lists.Add(1)
	return s.note(s.next.List(ctx, prefix, fn))
}

func (s *counting) Close() error { return s.next.Close() }

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}
