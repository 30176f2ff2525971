// Package filestore keeps objects as files under a local directory: the
// daemon's default backend. Key "vol/00000001" is the file dir/vol/00000001
// holding exactly the object's bytes, so blocks can be inspected and copied
// with ordinary tools.
//
// Names starting with '.' belong to the store and are never listed:
// ".tmp-*" are writes in progress (or left by a crash), ".NAME.meta" is
// the JSON sidecar of the data file NAME (see sidecar.go), the root's
// ".lock-NN" are the files conditional puts hold an flock(2) of (lock.go),
// and its ".list-*" the sorted runs of a listing of a large directory,
// unlinked as soon as made (sortednames.go).
// Keys may therefore not have path elements starting with '.', and a key
// cannot also be the leading directory of another key ("a" and "a/b").
package filestore

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/objbacker/objbacker/objstore"
)

var _ objstore.Store = (*Store)(nil)

// lockStripes bounds the memory of per-key locking: keys sharing a stripe
// only serialise against each other, which is rare among 256 stripes.
const lockStripes = 256

// Store is a directory of objects. A conditional put is atomic against
// every put of this process, and against the conditional puts of other
// processes sharing the directory (where flock(2) works between them: local
// file systems, and NFS, where Linux maps it to byte-range locks). An
// unconditional put of another process may still land between its check
// and its commit.
type Store struct {
	root   string
	rootID dirID // of the directory Open found at root
	seed   maphash.Seed
	locks  [lockStripes]sync.RWMutex
}

// dirID names a directory, whatever its path.
type dirID struct{ dev, ino uint64 }

func dirIDOf(fi fs.FileInfo) dirID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return dirID{dev: uint64(st.Dev), ino: st.Ino}
	}
	return dirID{}
}

// Open opens the store in dir, creating the directory if needed. It fails
// when dir is not a directory (wrapping objstore.ErrInvalidURL) or cannot be
// written (wrapping objstore.ErrAccessDenied when permission is refused).
func Open(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, openError(root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, openError(root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: filestore: %s is not a directory", objstore.ErrInvalidURL, root)
	}
	// Probe with a real write so a read-only mount or a foreign-owned
	// directory fails at startup rather than at the first block write.
	f, err := os.CreateTemp(root, tempPattern)
	if err != nil {
		return nil, openError(root, err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return nil, openError(root, err)
	}
	return &Store{root: root, rootID: dirIDOf(fi), seed: maphash.MakeSeed()}, nil
}

// checkRoot fails with objstore.ErrBucketNotFound when the root is no
// longer the directory Open found: removed, or replaced, as a mount point
// is when its file system is unmounted. A cloud store checks its bucket the
// same way: a missing object in a store that is gone is no missing object,
// since a device reads it as zeros and counts its deletion as done, and a
// write there would land beside the store, not in it.
func (s *Store) checkRoot() error {
	fi, err := os.Stat(s.root)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("filestore: directory %s: %w: it was removed", s.root, objstore.ErrBucketNotFound)
	case err != nil:
		return fmt.Errorf("filestore: directory %s: %w", s.root, err)
	case !fi.IsDir() || dirIDOf(fi) != s.rootID:
		return fmt.Errorf("filestore: directory %s: %w: it was replaced (or the file system mounted there was unmounted)", s.root, objstore.ErrBucketNotFound)
	}
	return nil
}

func openError(root string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: filestore: directory %s is not writable: %w", objstore.ErrAccessDenied, root, err)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: filestore: %s is not a directory: %w", objstore.ErrInvalidURL, root, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("filestore: directory %s is not writable: %w", root, err)
	}
	return fmt.Errorf("filestore: opening %s: %w", root, err)
}

// Close releases nothing: every call opens and closes its own files.
func (s *Store) Close() error { return nil }

// path is the data file of a validated key.
func (s *Store) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

func (s *Store) lock(key string) *sync.RWMutex {
	return &s.locks[maphash.String(s.seed, key)%lockStripes]
}
