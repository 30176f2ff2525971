// Package memstore is an in-process object store: the zero-setup backend for
// tests, benchmarks and throw-away devices. Its contents die with the process.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"maps"
	"slices"
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
}

// New returns an empty store.
func New() *Store { return &Store{objects: make(map[string]*object)} }

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, objstore.Attrs{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, objstore.Attrs{}, objstore.ErrNotFound
	}
	// Objects are immutable once stored (Put replaces the pointer), so the
	// slice can be read without the lock.
	data := o.data
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	data = data[off:]
	if n >= 0 && n < int64(len(data)) {
		data = data[:n]
	}
	return io.NopCloser(bytes.NewReader(data)), cloneAttrs(o.attrs), nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte, opts objstore.PutOptions) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	sum := md5.Sum(data)
	o := &object{
		data: bytes.Clone(data),
		attrs: objstore.Attrs{
			Size:        int64(len(data)),
			ETag:        hex.EncodeToString(sum[:]),
			ModTime:     time.Now(),
			ContentType: opts.ContentType,
			Metadata:    maps.Clone(opts.Metadata),
		},
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
	s.objects[key] = o
	return cloneAttrs(o.attrs), nil
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
