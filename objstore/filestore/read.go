package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, objstore.Attrs{}, err
	}
	if off < 0 {
		return nil, objstore.Attrs{}, fmt.Errorf("filestore: get %q: negative offset %d", key, off)
	}
	f, a, err := s.open(key)
	if err != nil {
		return nil, objstore.Attrs{}, err
	}
	off = min(off, a.Size)
	if n < 0 || n > a.Size-off {
		n = a.Size - off
	}
	// The descriptor pins this version: a concurrent Put renames a new file
	// over the name and leaves these bytes untouched.
	return &section{SectionReader: io.NewSectionReader(f, off, n), f: f}, a, nil
}

func (s *Store) Stat(ctx context.Context, key string) (objstore.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Attrs{}, err
	}
	f, a, err := s.open(key)
	if err != nil {
		return objstore.Attrs{}, err
	}
	return a, f.Close()
}

type section struct {
	*io.SectionReader
	f *os.File
}

func (r *section) Close() error { return r.f.Close() }

// open opens key's data file and describes it under the key's read lock, so
// that no Put of this process swaps data and sidecar in between.
func (s *Store) open(key string) (*os.File, objstore.Attrs, error) {
	if err := checkKey(key); err != nil {
		return nil, objstore.Attrs{}, err
	}
	path := s.path(key)
	mu := s.lock(key)
	mu.RLock()
	defer mu.RUnlock()
	f, fi, err := openData(path)
	if err != nil {
		return nil, objstore.Attrs{}, err
	}
	if f == nil {
		if err := s.checkRoot(); err != nil {
			return nil, objstore.Attrs{}, fmt.Errorf("filestore: %q: %w", key, err)
		}
		return nil, objstore.Attrs{}, fmt.Errorf("filestore: %q: %w", key, objstore.ErrNotFound)
	}
	r, err := describe(f, fi, sidecarPath(path))
	if err != nil {
		f.Close()
		return nil, objstore.Attrs{}, err
	}
	return f, r.attrs(fi), nil
}

// openData opens the data file at path, or returns a nil file when there is
// no object: nothing there, a parent that is a file, or a directory (the
// leading part of other keys).
func openData(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}
