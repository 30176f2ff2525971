// Package memstore is an in-process object store: the zero-setup backend for
// tests, benchmarks and throw-away devices. Its contents die with the process.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/objbacker/objbacker/internal/slab"
	"github.com/objbacker/objbacker/objstore"
)

type object struct {
	data  []byte
	attrs objstore.Attrs
}

// Store keeps objects in a map guarded by a RWMutex.
//
// Objects of offHeapMin bytes or more, the blocks of a device, live outside
// the Go heap, in one slab arena per object size: a device of some GiB in
// the heap put the next garbage collection as far away, so every small
// allocation of the daemon until then was fresh memory and cost a page
// fault (docs/benchmarks.md).
type Store struct {
	mu      sync.RWMutex
	objects map[string]*object // nil once closed
	arenas  map[int]*slab.Arena
	// generation makes ETags: a content hash would cost more CPU than the
	// rest of a Put, and the ETag need only change when the object does.
	generation uint64
}

const offHeapMin = 64 << 10

// errClosed is what a closed store answers: its memory is gone.
var errClosed = errors.New("memstore: store is closed")

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]*object), arenas: make(map[int]*slab.Arena)}
}

// alloc returns a buffer of n bytes for an object's data.
func (s *Store) alloc(n int) []byte {
	if n < offHeapMin {
		return make([]byte, n)
	}
	a := s.arenas[n]
	if a == nil {
		a = slab.New(n, 1<<62)
		s.arenas[n] = a
	}
	return a.Get()
}

// free gives back the buffer of an object that is gone; only sizes of
// offHeapMin or more have an arena.
func (s *Store) free(data []byte) {
	if a := s.arenas[len(data)]; a != nil {
		a.Put(data)
	}
}

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, objstore.Attrs{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.objects == nil {
		return nil, objstore.Attrs{}, errClosed
	}
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
	if s.objects == nil {
		return objstore.Attrs{}, errClosed
	}
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
		if exists {
			s.free(old.data)
		}
		o := &object{data: s.alloc(len(data)), attrs: attrs}
		copy(o.data, data)
		s.objects[key] = o
	}
	return cloneAttrs(attrs), nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil {
		return errClosed
	}
	if o, ok := s.objects[key]; ok {
		s.free(o.data)
		delete(s.objects, key)
	}
	return nil
}

// DeleteIfMatch compares and deletes under the store's lock: atomic.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil {
		return errClosed
	}
	o, ok := s.objects[key]
	switch {
	case !ok:
		return objstore.ErrNotFound
	case o.attrs.ETag != etag:
		return objstore.ErrPreconditionFailed
	}
	s.free(o.data)
	delete(s.objects, key)
	return nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	closed := s.objects == nil
	s.mu.RUnlock()
	if closed {
		return objstore.Attrs{}, errClosed
	}
	if !ok {
		return objstore.Attrs{}, objstore.ErrNotFound
	}
	return cloneAttrs(o.attrs), nil
}

// List takes a snapshot of the matching entries, sorted, and calls fn
// without holding the lock: fn may use the store.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(objstore.ObjectInfo) error) error {
	s.mu.RLock()
	if s.objects == nil {
		s.mu.RUnlock()
		return errClosed
	}
	var infos []objstore.ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) && k > startAfter {
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

// Close drops every object and gives their memory back.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.arenas {
		a.Release()
	}
	s.objects, s.arenas = nil, nil
	return nil
}

func cloneAttrs(a objstore.Attrs) objstore.Attrs {
	a.Metadata = maps.Clone(a.Metadata)
	return a
}
