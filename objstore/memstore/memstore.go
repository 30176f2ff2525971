// Package memstore is an in-process object store: the zero-setup backend for
// tests, benchmarks and throw-away devices. Its contents die with the process.
package memstore

import (
	"bytes"
	"context"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/objbacker/objbacker/objstore"
)

type object struct {
	data  []byte
	attrs objstore.Attrs
}

// Store keeps objects in a map guarded by a RWMutex.
type Store struct {
	mu      sync.RWMutex
	objects map[string]*object
	// generation makes ETags: a content hash would cost more CPU than the
	// rest of a Put, and the ETag need only change when the object does.
	generation uint64
}

// New returns an empty store.
func New() *Store { return &Store{objects: make(map[string]*object)} }

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, objstore.Attrs{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objects[key]
	if !ok {
		return nil, objstore.Attrs{}, objstore.ErrNotFound
	}
	data := o.data
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	data = data[off:]
	if n >= 0 && n < int64(len(data)) {
		data = data[:n]
	}
	// Put overwrites objects in place, so the reader gets a snapshot taken
	// under the lock.
	return io.NopCloser(bytes.NewReader(bytes.Clone(data))), cloneAttrs(o.attrs), nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	attrs := objstore.Attrs{
		Size:            int64(len(data)),
		ModTime:         time.Now(),
		ContentType:     opts.ContentType,
		ContentEncoding: opts.ContentEncoding,
		Metadata:        maps.Clone(opts.Metadata),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.objects[key]
	if opts.IfNoneMatch && exists {
		return objstore.Attrs{}, objstore.ErrPreconditionFailed
	}
	if opts.IfMatch != "" {
		if !exists {
			return objstore.Attrs{}, objstore.ErrNotFound
		}
		if old.attrs.ETag != opts.IfMatch {
			return objstore.Attrs{}, objstore.ErrPreconditionFailed
		}
	}
	s.generation++
	attrs.ETag = strconv.FormatUint(s.generation, 16)
	if exists && len(old.data) == len(data) {
		// Rewriting a block is the common case: reuse its memory rather
		// than fault in a fresh allocation for every PUT.
		copy(old.data, data)
		old.attrs = attrs
	} else {
		s.objects[key] = &object{data: bytes.Clone(data), attrs: attrs}
	}
	return cloneAttrs(attrs), nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return objstore.Attrs{}, objstore.ErrNotFound
	}
	return cloneAttrs(o.attrs), nil
}

func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	s.mu.RLock()
	var infos []objstore.ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, objstore.ObjectInfo{Key: k, Size: o.attrs.Size, ETag: o.attrs.ETag})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b objstore.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) Close() error { return nil }

func cloneAttrs(a objstore.Attrs) objstore.Attrs {
	a.Metadata = maps.Clone(a.Metadata)
	return a
}
